"""The cross-traffic gate and the /proc/net/dev reader, on fixture files and fake clocks."""

from __future__ import annotations

from pathlib import Path

from appliance.link.gate import read_net_dev, wait_for_quiet, wan_bytes_reader

NET_DEV = """\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:  123456     100    0    0    0     0          0         0   123456     100    0    0    0     0       0          0
  eth0: 9000000   12000    0    0    0     0          0         0  1000000    8000    0    0    0     0       0          0
wlan0:      10       1    0    0    0     0          0         0       20       2    0    0    0     0       0          0
"""  # noqa: E501 (the real file's layout, long lines included)


class World:
    """A fake clock and a WAN counter that grows at a scripted rate per second."""

    def __init__(self, rates: list[float]) -> None:
        self.now = 0.0
        self.total = 0
        self.rates = rates

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        second = int(self.now)
        rate = self.rates[second] if second < len(self.rates) else self.rates[-1]
        self.now += seconds
        self.total += int(rate * seconds)

    def read(self) -> int:
        return self.total


def gate(world: World):
    return wait_for_quiet(world.read, clock=world.clock, sleep=world.sleep)


def test_read_net_dev(tmp_path: Path):
    path = tmp_path / "dev"
    path.write_text(NET_DEV)
    assert read_net_dev(path) == {
        "lo": (123456, 123456), "eth0": (9000000, 1000000), "wlan0": (10, 20)}
    assert wan_bytes_reader("eth0", path)() == 10_000_000
    assert wait_for_quiet(wan_bytes_reader("eth9", path), sleep=lambda s: None).reason \
        .startswith("no WAN counters")


def test_quiet_line_passes_after_one_quiet_window():
    world = World([1000.0])
    result = gate(world)
    assert result.passed and result.waited == 5.0 and result.peak_rate == 1000.0


def test_busy_line_waits_for_five_quiet_seconds():
    # A download for 12 s, then quiet: the test starts at 12 + 5 s.
    world = World([200_000.0] * 12 + [2_000.0])
    result = gate(world)
    assert result.passed and result.waited == 17.0 and result.peak_rate == 200_000.0


def test_up_plus_down_over_the_threshold_counts_as_busy():
    world = World([25_001.0])
    assert not gate(world).passed
    world = World([25_000.0])
    assert gate(world).passed


def test_line_busy_for_thirty_seconds_is_skipped():
    world = World([100_000.0])
    result = gate(world)
    assert not result.passed and result.reason == "line busy" and result.waited == 30.0


def test_short_lulls_do_not_open_the_gate():
    # Bursts every 4 s (a video call's pattern): never 5 quiet seconds.
    world = World(([0.0] * 3 + [80_000.0]) * 20)
    assert not gate(world).passed


def test_last_chance_quiet_window_inside_thirty_seconds():
    world = World([90_000.0] * 25 + [0.0])
    result = gate(world)
    assert result.passed and result.waited == 30.0


def test_counter_reset_is_not_quiet(tmp_path):
    values = iter([10_000_000, 10, 20, 30, 40, 50, 60, 70])
    now = [0.0]

    def sleep(s):
        now[0] += s

    result = wait_for_quiet(lambda: next(values), clock=lambda: now[0], sleep=sleep)
    assert result.passed and result.waited == 6.0
