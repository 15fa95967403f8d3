"""The emulated line: the model on its own, then the real link service running on it
(real Prober rounds, outage tracker, gate, SQLite file, socket and CLI)."""

from __future__ import annotations

import dataclasses
import random
import statistics
import time
from pathlib import Path

import pytest

from appliance import config as config_mod
from appliance import ipc
from appliance.cli import main as cli_main
from appliance.link import emulated
from appliance.link.cli import emulate_request
from appliance.link.emulated import EmulatedLine, LineSettings
from appliance.link.iperf import BackendError
from appliance.link.outage import Layer
from appliance.link.service import LinkService
from appliance.link.throughput import shaped_goodput
from appliance.runtime import init_state
from tests.conftest import write_site_config

ANCHORS = ("198.51.100.1", "203.0.113.1")
T0 = 1_780_000_000.0


class FakeTime:
    """One clock for the line, the service and their sleeps: nothing waits."""

    def __init__(self) -> None:
        self.now = T0
        self.mono = 1000.0

    def wall(self) -> float:
        return self.now

    def clock(self) -> float:
        return self.mono

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.mono += seconds


def make_line(t: FakeTime | None = None, seed: int = 7, **settings: float) -> EmulatedLine:
    t = t or FakeTime()
    return EmulatedLine(anchors=ANCHORS, settings=LineSettings(**settings),
                        rng=random.Random(seed), clock=t.clock, sleep=t.sleep)


def rtts(line: EmulatedLine, target: str, n: int = 2000) -> list[float | None]:
    return [line.echo_rtt(target) for _ in range(n)]


# --- the model ---------------------------------------------------------------------------


def test_healthy_line_latency_jitter_and_loss_are_those_of_a_rural_vdsl_line():
    line = make_line()
    box = rtts(line, line.gateway)
    assert None not in box and max(box) < 0.002  # Ethernet to the box: no loss
    hop = [r for r in rtts(line, line.isp_hop) if r is not None]
    assert 0.012 <= statistics.median(hop) < 0.015
    first = rtts(line, ANCHORS[0], 20000)
    lost = first.count(None) / len(first)
    assert 0.0005 < lost < 0.004  # 0.2 % beyond the box
    answered = [r for r in first if r is not None]
    assert 0.028 <= min(answered) and statistics.median(answered) < 0.031
    jitter = statistics.fmean(abs(a - b) for a, b in zip(answered, answered[1:], strict=False))
    assert 0.0005 < jitter < 0.003
    second = [r for r in rtts(line, ANCHORS[1]) if r is not None]
    assert statistics.median(second) - statistics.median(answered) == pytest.approx(0.004,
                                                                                     abs=0.001)
    assert line.echo_rtt("192.0.2.99") is None  # nothing else on the emulated internet


@pytest.mark.parametrize("fault, gateway, hop, anchors, dns", [
    ("box", False, False, (False, False), False),
    ("access", True, False, (False, False), False),
    ("upstream", True, True, (True, False), True),
    ("dns", True, True, (True, True), False),
])
def test_each_fault_silences_what_it_should(fault, gateway, hop, anchors, dns):
    line = make_line(loss=0)
    line.break_(fault)
    assert (line.echo_rtt(line.gateway) is not None) is gateway
    assert (line.echo_rtt(line.isp_hop) is not None) is hop
    assert tuple(line.echo_rtt(a) is not None for a in ANCHORS) == anchors
    assert (line.dns_time() is not None) is dns
    assert (line.traceroute(ANCHORS[0], line.gateway) is not None) is (fault not in (
        "box", "access"))
    line.repair(fault)
    assert all(line.echo_rtt(t) is not None for t in (line.gateway, line.isp_hop, *ANCHORS))


def test_bufferbloat_follows_the_loaded_direction_and_the_buffer_size():
    line = make_line(loss=0, jitter_ms=0)
    idle = line.echo_rtt(ANCHORS[0])
    line.set_load("download")
    down = [line.echo_rtt(ANCHORS[0]) - idle for _ in range(500)]
    line.set_load("upload")
    up = [line.echo_rtt(ANCHORS[0]) - idle for _ in range(500)]
    # 375 kB at 30 Mbit/s is 100 ms; 32 kB at 1 Mbit/s is 256 ms; the queue is 60-100 % full.
    assert 0.060 <= min(down) and max(down) <= 0.100 + 1e-9
    assert 0.1536 <= min(up) and max(up) <= 0.256 + 1e-9
    assert line.echo_rtt(line.gateway) < 0.002  # the box is on this side of the queue
    line.configure(up_mbps=0.5)  # the same buffer on a slower line: twice the delay
    assert min(line.echo_rtt(ANCHORS[0]) - idle for _ in range(100)) >= 0.307
    line.set_load(None)
    assert line.echo_rtt(ANCHORS[0]) == pytest.approx(idle)


def test_throughput_is_the_line_rate_less_headers_members_and_loss():
    line = make_line()
    truth = shaped_goodput(30e6)
    down = [line.goodput("download") for _ in range(200)]
    # 96-99.5 % of the TCP goodput, less 1 % for 0.2 % loss.
    assert truth * 0.96 * 0.99 <= min(down) and max(down) <= truth * 0.995 * 0.99
    assert shaped_goodput(1e6) * 0.95 <= line.goodput("upload") <= shaped_goodput(1e6)
    line.configure(members_mbps=4)  # 3.4 of it downstream
    assert line.goodput("download") <= shaped_goodput(26.6e6)
    line.configure(members_mbps=0, loss=0.05)
    assert line.goodput("download") <= truth * 0.75


def test_members_traffic_and_tests_move_the_wan_counters():
    t = FakeTime()
    line = make_line(t)
    start = line.wan_bytes()
    t.sleep(10)
    assert line.wan_bytes() == start  # nobody on the line
    line.configure(members_mbps=4)
    t.sleep(10)
    assert line.wan_bytes() - start == 5_000_000
    backend = line.backend(2)
    line.configure(members_mbps=0)
    before = line.wan_bytes()
    measured = backend.measure()
    assert line.wan_bytes() - before == measured.bytes_used
    # 3 s (2 + 1 omitted) per direction at the line rate, less what members took.
    assert 0.9 * 31e6 * 3 / 8 < measured.bytes_used < 31e6 * 3 / 8


def test_backend_reports_progress_and_fails_when_the_line_is_down():
    t = FakeTime()
    line = make_line(t)
    phases = []
    measured = line.backend(4).measure(lambda phase, seconds: phases.append((phase, seconds)))
    assert phases == [("download", 5), ("upload", 5)]
    assert t.mono == pytest.approx(1010.0)  # in real time, not at once
    assert measured.backend == "emulated" and measured.server == "emulated 30/1 Mbit/s line"
    line.break_("access")
    with pytest.raises(BackendError, match="access line is down"):
        line.backend(4).measure()


def test_pinger_and_dns_probe_behave_like_the_real_ones():
    t = FakeTime()
    line = make_line(t, loss=0)
    pinger = line.pinger()
    got = pinger.ping([line.gateway, *ANCHORS], timeout=1.0)
    assert {k: v[:2] for k, v in got.items()} == {k: (1, 1) for k in got}
    assert pinger.bytes == 3 * 2 * 28  # echoes without payload: 20 + 8 IP bytes each
    line.break_("upstream")
    before = t.mono
    got = pinger.ping([line.gateway, *ANCHORS], timeout=1.0)
    assert got[ANCHORS[1]] == (2, 0, None)  # a second echo to the silent target only
    assert got[ANCHORS[0]][:2] == (1, 1)
    assert t.mono - before == pytest.approx(2.0)  # two attempts waited their timeout
    dns = line.dns_probe()
    assert 0.024 <= dns.resolve(line.resolver, "wikipedia.org", 1.0) < 0.03
    assert dns.resolve("192.0.2.53", "wikipedia.org", 1.0) is None  # not the resolver
    line.configure(up_mbps=0.1)
    line.set_load("upload")  # 2.5 s of queue: the answer comes after the timeout
    assert dns.resolve(line.resolver, "wikipedia.org", 1.0) is None


def test_the_box_is_echoed_every_other_round_and_whenever_nothing_beyond_answers():
    from appliance.link.outage import localize
    from appliance.link.probes import Prober, box_works
    from appliance.link.service import to_round

    line = make_line(FakeTime(), loss=0)
    prober = Prober(anchors=ANCHORS, dns_names=("wikipedia.org",), timeout=0.5,
                    gateway=line.gateway, isp_hop=line.isp_hop, resolver=line.resolver,
                    traceroute=line.traceroute, pinger=line.pinger(), dns=line.dns_probe())

    def box(samples):
        return [(s.sent, s.received) for s in samples if s.role == "gateway"]

    healthy = [prober.round() for _ in range(4)]
    assert [box(r) for r in healthy] == [[(1, 1)], [], [(1, 1)], []]
    # A round without the box's echo: the answers from beyond it prove it works.
    assert all(box_works(r) and localize(to_round(0, r)) is None for r in healthy)
    line.break_("access")  # nothing beyond the box answers: the box gets the second echo
    rounds = [prober.round() for _ in range(4)]
    assert [box(r) for r in rounds] == [[(1, 1)], [(1, 1)], [(1, 1)], [(1, 1)]]
    assert all(localize(to_round(0, r)).value == "access" for r in rounds)
    line.repair()
    line.break_("box")
    rounds = [prober.round() for _ in range(4)]
    assert [box(r) for r in rounds] == [[(2, 0)], [(1, 0)], [(2, 0)], [(1, 0)]]
    assert all(localize(to_round(0, r)).value == "lan" for r in rounds)


def test_command_refuses_bad_input_and_applies_nothing():
    line = make_line()
    assert emulated.command(line, {"action": "break", "fault": "modem"})["ok"] is False
    reply = emulated.command(line, {"action": "set", "settings": {"down_mbps": 10, "colour": 1}})
    assert reply["ok"] is False and "colour" in reply["error"]
    assert emulated.command(line, {"action": "set", "settings": {"loss": 2}})["ok"] is False
    assert emulated.command(line, {"action": "set", "settings": {"up_mbps": 0}})["ok"] is False
    assert line.settings == LineSettings()
    reply = emulated.command(line, {"action": "set", "settings": {"down_mbps": 8}})
    assert reply["ok"] and reply["settings"]["down_mbps"] == 8
    reply = emulated.command(line, {"action": "break", "fault": "dns"})
    assert reply["faults"] == ["dns"]
    reply = emulated.command(line, {"action": "reset"})
    assert reply["faults"] == [] and reply["settings"] == dataclasses.asdict(LineSettings())
    assert emulated.command(line, {"action": "jump"})["ok"] is False


def test_cli_arguments_become_socket_requests():
    assert emulate_request("break", ["access"]) == {"action": "break", "fault": "access"}
    assert emulate_request("repair", ["all"]) == {"action": "repair", "fault": "all"}
    assert emulate_request("set", ["down_mbps=12", "loss=0.01"]) == {
        "action": "set", "settings": {"down_mbps": 12.0, "loss": 0.01}}
    assert emulate_request("busy", []) == {"action": "set", "settings": {"members_mbps": 4.0}}
    for action, args in (("break", ["all"]), ("break", []), ("set", ["down_mbps"]),
                         ("set", ["down_mbps=fast"]), ("set", [])):
        with pytest.raises(ValueError):
            emulate_request(action, args)


# --- the link service on the emulated line ---------------------------------------------


@pytest.fixture
def emulated_site(tmp_path: Path) -> config_mod.Config:
    path = write_site_config(tmp_path)
    text = path.read_text().replace('line = "real"', 'line = "emulated"')
    text = text.replace("link_port = 9103", "link_port = 0")
    path.write_text(text)
    cfg = config_mod.load(path)
    init_state(cfg)
    assert cfg.link.line == "emulated"
    return cfg


@pytest.fixture
def on_line(emulated_site):
    made = []

    def make(t: FakeTime | None = None, **settings) -> LinkService:
        t = t or FakeTime()
        line = EmulatedLine(anchors=emulated_site.link.anchors, rng=random.Random(3),
                            settings=LineSettings(**settings), clock=t.clock, sleep=t.sleep)
        service = LinkService(emulated_site, line=line, wall=t.wall, clock=t.clock,
                              sleep=t.sleep, rng=random.Random(3))
        made.append(service)
        return service

    yield make
    for service in made:
        service.stop()


def test_config_selects_the_emulated_line_with_no_raw_socket(emulated_site):
    # Unprivileged: a real Prober would need CAP_NET_RAW for its ICMP socket.
    service = LinkService(emulated_site)
    try:
        assert service.line is not None and service.backend.name == "emulated"
        assert "emulate" in service.handlers()
        samples = service.prober.round()
        assert [s.role for s in samples] == ["gateway", "anchor", "anchor", "dns"]
    finally:
        service.stop()


@pytest.mark.parametrize("fault, cause", [
    ("box", "lan"), ("access", "access"), ("upstream", "upstream"), ("dns", "dns")])
def test_each_fault_is_localized_by_the_service(on_line, fault, cause):
    service = on_line(loss=0)
    for _ in range(3):
        service.step()
    assert service.prober.isp_hop == emulated.EMULATED_ISP_HOP  # found by "traceroute"
    service.line.break_(fault)
    for _ in range(3):
        service.step()
    assert service.tracker.cause.value == cause
    row = service.conn.execute("SELECT cause, end FROM link_outages").fetchone()
    assert (row["cause"], row["end"]) == (cause, None)
    service.line.repair("all")
    for _ in range(3):
        service.step()
    assert service.tracker.cause is None
    assert service.conn.execute("SELECT end FROM link_outages").fetchone()["end"] is not None
    seconds = service.registry.get_sample_value("telecentre_link_outage_seconds_total",
                                                {"cause": cause})
    assert seconds > 0


def test_scheduled_test_is_held_while_members_use_the_line(on_line):
    service = on_line()
    service.step()
    service.line.configure(members_mbps=4)
    result = service.run_test("schedule")
    assert result["result"] == "skipped_busy"
    service.line.configure(members_mbps=0)
    result = service.run_test("schedule")
    assert result["result"] == "ok" and result["backend"] == "emulated"
    # 1448/1514 of the line, 96-99.5 % of that, less 1 % for loss: 0.9090-0.9422.
    assert 0.909 < result["download_ratio"] < 0.9422
    assert 0.909 < result["upload_ratio"] < 0.9422


def test_a_real_time_test_grades_the_bufferbloat_and_is_stored(emulated_site):
    """Real clock: the latency sampler runs while the backend loads the line."""
    service = LinkService(emulated_site)
    try:
        service.backend = service.line.backend(1.5)
        service.step()
        result = service.run_test("admin")
        assert result["result"] == "ok"
        # Download queue 60-100 ms, upload 154-256 ms; the median is between them.
        assert 0.05 < result["added_delay_s"] < 0.26
        assert result["grade"] in ("B", "C", "D")
        assert result["loaded_samples"] >= 15 and result["loaded_lost"] <= 1
        row = service.conn.execute("SELECT backend, grade, bytes FROM link_tests").fetchone()
        assert (row["backend"], row["grade"]) == ("emulated", result["grade"])
        assert row["bytes"] == result["bytes"] > 0
        service.line.configure(down_buffer_kb=3000, up_buffer_kb=100)
        result = service.run_test("admin")
        assert result["grade"] == "F"
        assert service.registry.get_sample_value("telecentre_link_added_delay_seconds") >= 0.4
    finally:
        service.stop()


@pytest.mark.parametrize("buffer_s, all_lost", [(2.0, False), (5.0, True)],
                         ids=["answered-after-1-to-2-s", "beyond-the-timeout"])
def test_a_line_whose_buffers_add_more_than_a_second_grades_f(emulated_site, buffer_s,
                                                             all_lost):
    """Real clock. Queues of 1.2-2 s under load (60-100 % of a 2 s buffer) are timed by
    the sampler's echoes in flight; queues of 3-5 s outlast its 3 s timeout, and the
    unanswered samples count as 3 s. Both are F, with the lost samples counted."""
    service = LinkService(emulated_site)
    try:
        service.backend = service.line.backend(1.5)
        s = service.line.settings
        service.line.configure(down_buffer_kb=buffer_s * s.down_mbps * 1e6 / 8 / 1000,
                               up_buffer_kb=buffer_s * s.up_mbps * 1e6 / 8 / 1000)
        service.step()
        result = service.run_test("admin")
        print(f"\nloaded RTT {result['loaded_rtt_s']}, added {result['added_delay_s']}, "
              f"lost {result.get('loaded_lost')} of {result.get('loaded_samples')}: "
              f"{result['detail']}")
        assert result["result"] == "ok" and result["grade"] == "F"
        assert result["loaded_samples"] >= 15
        if all_lost:
            # All but those sent before the load began or after it ended.
            assert result["loaded_lost"] >= result["loaded_samples"] - 3
            assert result["added_delay_s"] >= 3.0 - 0.1
            assert "unanswered within 3 s" in result["detail"]
        else:
            assert result["loaded_lost"] <= 1
            assert result["loaded_rtt_s"] > 1.0
        row = service.conn.execute("SELECT grade, detail FROM link_tests").fetchone()
        assert row["grade"] == "F"
        assert service.registry.get_sample_value("telecentre_link_added_delay_seconds") > 1.0
    finally:
        service.stop()


def test_emulate_over_the_socket_and_from_the_cli(on_line, capsys):
    service = on_line()
    service.server = ipc.CommandServer(service.config.link_socket, service.handlers()).start()
    path = str(service.config.path)
    assert cli_main(["--config", path, "link", "emulate", "break", "access"]) == 0
    assert "faults: access" in capsys.readouterr().out
    for _ in range(3):
        service.step()
    assert cli_main(["--config", path, "link", "status"]) == 0
    assert "the access line is down" in capsys.readouterr().out
    assert cli_main(["--config", path, "link", "emulate", "set", "down_mbps=12"]) == 0
    assert "down_mbps=12" in capsys.readouterr().out
    assert cli_main(["--config", path, "link", "emulate", "set", "colour=1"]) == 1
    assert "unknown setting" in capsys.readouterr().err
    assert cli_main(["--config", path, "link", "emulate", "reset"]) == 0
    assert ipc.call(service.config.link_socket, "status")["emulated"] is True


def test_emulate_is_refused_on_a_real_line(tmp_path, capsys):
    path = write_site_config(tmp_path)
    assert cli_main(["--config", str(path), "link", "emulate", "status"]) == 2
    assert "real line" in capsys.readouterr().err


# --- our own tests must not make outages (real time, 1 s rounds) ------------------------

# A grade-F line: 0.8 s of queue in each direction when full, 0.48-0.8 s under a test,
# so the 0.3 s probes time out during a test and answer at once after it.
BLOATED = {"down_buffer_kb": 3000.0, "up_buffer_kb": 100.0}


@pytest.fixture
def fast_line(tmp_path: Path):
    """The service on an emulated line in real time: 1 s rounds, 0.3 s probe timeout."""
    path = write_site_config(tmp_path, probe_interval=1, probe_timeout=0.3)
    text = path.read_text().replace('line = "real"', 'line = "emulated"')
    path.write_text(text.replace("link_port = 9103", "link_port = 0"))
    cfg = config_mod.load(path)
    init_state(cfg)
    made = []

    def make(**settings: float) -> LinkService:
        line = EmulatedLine(anchors=cfg.link.anchors, rng=random.Random(5),
                            settings=LineSettings(loss=0, **settings))
        service = LinkService(cfg, line=line, rng=random.Random(5))
        service.backend = line.backend(2.0)  # 3 s of load per direction
        made.append(service)
        service.start(socket=False)
        wait_until(lambda: service.registry.get_sample_value(
            "telecentre_link_probe_rounds_total") >= 3, 10, "three rounds")
        return service

    yield make
    for service in made:
        service.stop()


def wait_until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def test_a_test_on_a_grade_f_line_records_no_outage_and_the_next_test_runs(fast_line):
    service = fast_line(**BLOATED)
    first = service.run_test("admin")
    assert first["result"] == "ok" and first["grade"] == "F"
    assert service.status()["outage"] is None
    second = service.run_test("admin")  # right after the first one
    assert second["result"] == "ok", second  # not "line down (access)"
    rounds_after = service.registry.get_sample_value("telecentre_link_probe_rounds_total")
    wait_until(lambda: service.registry.get_sample_value(
        "telecentre_link_probe_rounds_total") >= rounds_after + 2, 10, "2 rounds after it")
    assert service.status()["outage"] is None
    assert service.conn.execute("SELECT COUNT(*) FROM link_outages").fetchone()[0] == 0
    # The rounds under load are not the line's ordinary RTT and loss: nothing lost on
    # this loss-free line, and no RTT above the unloaded line's in the stored history
    # and the histogram.
    lost, slowest = service.conn.execute(
        "SELECT SUM(sent - received), MAX(rtt_s) FROM link_probes WHERE role != 'dns'"
    ).fetchone()
    assert lost == 0 and slowest < 0.1
    value = service.registry.get_sample_value
    for role in ("isp_hop", "anchor"):
        assert value("telecentre_link_loss_ratio", {"role": role}) == 0
        assert value("telecentre_link_rtt_seconds_bucket", {"role": role, "le": "0.1"}) \
            == value("telecentre_link_rtt_seconds_count", {"role": role}) > 0
    # The latency sampler measured the load, and the probes did run under it.
    assert first["loaded_rtt_s"] > 0.4
    assert service.loaded_rounds >= 6


@pytest.mark.parametrize("settings", [BLOATED, {}], ids=["grade-F", "clean"])
def test_an_outage_that_begins_during_a_test_is_recorded_from_within_it(fast_line, settings):
    service = fast_line(**settings)
    assert service.start_test("admin")
    wait_until(lambda: (service.test_state or {}).get("phase") == "upload", 10, "the upload")
    started_at = service.test_state["started_at"]
    time.sleep(1.0)
    broke_at = time.time()
    service.line.break_("access")
    service.test_thread.join(timeout=20)
    result = service.last_test
    assert result["result"] == "failed" and "during the upload" in result["detail"]
    wait_until(lambda: service.tracker.cause is not None, 10, "the outage")
    assert service.tracker.cause == Layer.ACCESS
    start = service.conn.execute("SELECT start FROM link_outages").fetchone()["start"]
    # Recorded from within the test, and no later than a round after the break: no
    # minutes lost. On the clean line the held rounds date it to the break itself.
    assert started_at - 1.0 <= start <= result["at"]
    assert start <= broke_at + 2.0
    if not settings:
        assert start >= broke_at - 1.0
    service.line.repair("all")
    repaired_at = time.time()
    wait_until(lambda: service.tracker.cause is None, 10, "the line to come back")
    end = service.conn.execute("SELECT end FROM link_outages").fetchone()["end"]
    assert repaired_at - 1.0 <= end <= repaired_at + 2.0
