"""Bufferbloat grade, ratio to the contract, the monthly budget."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from appliance.link.probes import echo_stream
from appliance.link.throughput import (
    added_delay,
    budget_allows,
    contract_ratio,
    grade,
    month_bounds,
    shaped_goodput,
)


@pytest.mark.parametrize(
    "ms,expected",
    [(0, "A+"), (4.999, "A+"), (5, "A"), (29.9, "A"), (30, "B"), (59.9, "B"), (60, "C"),
     (199.9, "C"), (200, "D"), (399.9, "D"), (400, "F"), (5000, "F")],
)
def test_grade_boundaries(ms, expected):
    assert grade(ms / 1000) == expected


def test_added_delay_uses_medians_and_never_goes_negative():
    assert added_delay([0.010, 0.011, 0.5], [0.060, 0.070, 0.080]) == pytest.approx(0.059)
    assert added_delay([0.020], [0.010]) == 0.0
    assert added_delay([], [0.1]) is None and added_delay([0.1], []) is None


def test_contract_ratio():
    assert contract_ratio(24e6, 30e6) == pytest.approx(0.8)
    assert contract_ratio(None, 30e6) is None
    assert contract_ratio(1e6, 0) is None


def test_shaped_goodput_of_a_30_mbit_line():
    assert shaped_goodput(30e6) == pytest.approx(28.69e6, rel=1e-3)


def test_month_bounds_local_time():
    paris = ZoneInfo("Europe/Paris")
    t = dt.datetime(2026, 2, 28, 23, 30, tzinfo=paris).timestamp()
    start, end = month_bounds(t, paris)
    assert start == dt.datetime(2026, 2, 1, tzinfo=paris).timestamp()
    assert end == dt.datetime(2026, 3, 1, tzinfo=paris).timestamp()
    dec = dt.datetime(2026, 12, 31, 12, tzinfo=paris).timestamp()
    assert month_bounds(dec, paris)[1] == dt.datetime(2027, 1, 1, tzinfo=paris).timestamp()


def test_budget():
    gb = 2_000_000_000
    assert budget_allows(0, 40_000_000, gb)
    assert budget_allows(gb - 40_000_000, 40_000_000, gb)
    assert not budget_allows(gb - 39_999_999, 40_000_000, gb)
    assert not budget_allows(gb, 0, gb)  # spent: stop, even without an estimate
    assert not budget_allows(gb + 1, 0, gb)


def test_samples_unanswered_under_load_count_as_the_timeout():
    idle = [0.030] * 5
    # Three of five loaded samples lost: the median is the timeout, not the fast two.
    assert added_delay(idle, [0.040, 0.041], lost=3, timeout=3.0) == pytest.approx(2.97)
    assert grade(added_delay(idle, [0.040, 0.041], lost=3, timeout=3.0)) == "F"
    # Everything lost under load: still graded, from the timeout.
    assert added_delay(idle, [], lost=10, timeout=3.0) == pytest.approx(2.97)
    # One stray loss among many answers does not move the median.
    assert added_delay(idle, [0.040] * 20, lost=1, timeout=3.0) == pytest.approx(0.010)
    # A target that answered no idle sample does not grade the line.
    assert added_delay([], [], lost=10, timeout=3.0) is None
    assert added_delay([], [0.5], lost=10, timeout=3.0) is None


class ScriptedPinger:
    """Echo answers after `rtt(n)` seconds (None: never), on a fake clock."""

    def __init__(self, rtt):
        self.rtt, self.now, self.due, self.sent = rtt, 0.0, {}, 0

    def clock(self):
        return self.now

    def send(self, target):
        self.sent += 1
        rtt = self.rtt(self.sent)
        if rtt is not None:
            self.due[self.sent] = (self.now + rtt, rtt)
        return self.sent

    def replies(self, wait):
        first = min((at for at, _ in self.due.values()), default=self.now + wait)
        self.now += max(0.0, min(wait, first - self.now))
        got = [(k, rtt) for k, (at, rtt) in self.due.items() if at <= self.now + 1e-9]
        for k, _ in got:
            del self.due[k]
        return got


def test_echo_stream_keeps_echoes_in_flight_so_slow_answers_are_timed():
    pinger = ScriptedPinger(lambda n: 2.0)  # 2 s of queue: ten echoes in flight
    out = echo_stream(pinger, "t", every=0.2, timeout=3.0, clock=pinger.clock,
                      stop=lambda: pinger.now >= 4.0)
    assert out.sent == 20 and out.lost == 0
    assert out.rtts == [pytest.approx(2.0)] * 20
    # Sent every 0.2 s whatever the answers; the last answers are waited for.
    assert pinger.now == pytest.approx(3.8 + 2.0)


def test_echo_stream_counts_echoes_unanswered_at_the_timeout_as_lost():
    pinger = ScriptedPinger(lambda n: None if n % 2 else 0.05)
    out = echo_stream(pinger, "t", every=0.2, timeout=3.0, clock=pinger.clock, count=6)
    assert (out.sent, out.lost, len(out.rtts)) == (6, 3, 3)
    assert pinger.now == pytest.approx(0.8 + 3.0)  # the last lost one, waited for in full
