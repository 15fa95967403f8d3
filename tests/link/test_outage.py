"""Outage localization and hysteresis, over every combination of probe results."""

from __future__ import annotations

import itertools

import pytest

from appliance.link.outage import (
    Hysteresis,
    Layer,
    OutageTracker,
    ProbeRound,
    localize,
    observe,
    replay,
)

OK = dict(gateway=True, isp_hop=True, anchors=(True, True), dns=True)


def rnd(at: float, **kw) -> ProbeRound:
    return ProbeRound(at=at, **{**OK, **kw})


def expected_cause(gateway, hop, anchors, dns) -> Layer | None:
    """The issue's rules, written independently of the code under test."""
    if not gateway:
        return Layer.LAN
    if hop is not True and not any(anchors):
        if hop is None and not anchors:
            return None  # nothing beyond the box to judge by
        return Layer.ACCESS
    if anchors and not all(anchors):
        return Layer.UPSTREAM
    if dns is False:
        return Layer.DNS
    return None


@pytest.mark.parametrize(
    "gateway,hop,anchors,dns",
    list(
        itertools.product(
            (True, False),
            (True, False, None),
            ((), (True,), (False,), (True, True), (True, False), (False, False),
             (True, True, False)),
            (True, False, None),
        )
    ),
)
def test_localize_every_combination(gateway, hop, anchors, dns):
    r = ProbeRound(at=0, gateway=gateway, isp_hop=hop, anchors=anchors, dns=dns)
    assert localize(r) == expected_cause(gateway, hop, anchors, dns)


def test_named_causes():
    assert localize(rnd(0, gateway=False, isp_hop=False, anchors=(False, False), dns=False)) \
        == Layer.LAN
    # The box answers, nothing beyond it does: the access line.
    assert localize(rnd(0, isp_hop=False, anchors=(False, False), dns=False)) == Layer.ACCESS
    # The ISP hop does not answer pings but anchors do: not an outage (hops often
    # rate-limit ICMP).
    assert localize(rnd(0, isp_hop=False)) is None
    # Beyond the ISP: some anchors fail.
    assert localize(rnd(0, anchors=(True, False))) == Layer.UPSTREAM
    assert localize(rnd(0, anchors=(False, False))) == Layer.UPSTREAM
    # Names fail while addresses answer.
    assert localize(rnd(0, dns=False)) == Layer.DNS
    assert localize(rnd(0)) is None


def test_layers_above_a_failure_are_not_judged():
    assert observe(rnd(0, gateway=False)) == {
        Layer.LAN: False, Layer.ACCESS: None, Layer.UPSTREAM: None, Layer.DNS: None}
    assert observe(rnd(0, isp_hop=False, anchors=(False, False)))[Layer.DNS] is None


@pytest.mark.parametrize("down_after,up_after", [(1, 1), (3, 3), (2, 5)])
def test_hysteresis_thresholds(down_after, up_after):
    h = Hysteresis(down_after, up_after)
    for i in range(down_after - 1):
        assert h.observe(False, i) is None and h.up
    assert h.observe(False, down_after - 1) == 0 and not h.up
    for i in range(up_after - 1):
        assert h.observe(True, 100 + i) is None and not h.up
    assert h.observe(True, 100 + up_after - 1) == 100 and h.up


def test_hysteresis_streak_broken_by_good_round_or_unjudged_round():
    h = Hysteresis(3, 3)
    h.observe(False, 0)
    h.observe(False, 1)
    h.observe(True, 2)
    h.observe(False, 3)
    h.observe(False, 4)
    assert h.up
    h.observe(None, 5)
    h.observe(False, 6)
    h.observe(False, 7)
    assert h.up
    assert h.observe(False, 8) == 6 and not h.up


def test_two_lost_rounds_are_no_outage():
    rounds = [rnd(t) for t in range(0, 50, 10)]
    rounds[2] = rnd(20, anchors=(False, False), isp_hop=False)
    rounds[3] = rnd(30, anchors=(False, False), isp_hop=False)
    outages, seconds = replay(rounds)
    assert outages == [] and seconds == {}


def scenario(spec: list[tuple[int, dict]], step: int = 10) -> list[ProbeRound]:
    """Rounds every `step` s: (count, overrides) pairs."""
    rounds, t = [], 0
    for count, kw in spec:
        for _ in range(count):
            rounds.append(rnd(t, **kw))
            t += step
    return rounds


@pytest.mark.parametrize(
    "fault,cause",
    [
        ({"gateway": False, "isp_hop": False, "anchors": (False, False), "dns": False}, "lan"),
        ({"isp_hop": False, "anchors": (False, False), "dns": False}, "access"),
        ({"anchors": (True, False)}, "upstream"),
        ({"dns": False}, "dns"),
    ],
)
def test_outage_dated_from_first_failure_to_first_good_round(fault, cause):
    # Good until 50, failing 50..110 (7 rounds), good from 120.
    rounds = scenario([(5, {}), (7, fault), (6, {})])
    outages, seconds = replay(rounds)
    assert [(o.cause, o.start, o.end) for o in outages] == [(Layer(cause), 50, 120)]
    assert seconds == {Layer(cause): 70}


def test_seconds_are_counted_while_the_outage_lasts_and_never_beyond():
    tracker = OutageTracker()
    total = 0.0
    for r in scenario([(2, {}), (10, {"dns": False})]):
        _changes, counted = tracker.update(r)
        total += counted.get(Layer.DNS, 0.0)
    # Down from 20; the last round (110) failed, so at least 90 s are certain.
    assert tracker.cause == Layer.DNS and total == 90
    assert not tracker.is_up(Layer.DNS) and tracker.is_up(Layer.UPSTREAM)
    # Two good rounds: not yet back, and not counted past the first good one.
    for t in (120, 130):
        _changes, counted = tracker.update(rnd(t))
        total += counted.get(Layer.DNS, 0.0)
    assert tracker.cause == Layer.DNS and total == 100
    changes, counted = tracker.update(rnd(140))
    total += counted.get(Layer.DNS, 0.0)
    assert [(c.cause, c.start, c.end) for c in changes] == [(Layer.DNS, 20, 120)]
    assert total == 100 and tracker.cause is None


def test_box_outage_during_a_dns_outage_takes_over_then_hands_back():
    rounds = scenario([
        (2, {}),
        (5, {"dns": False}),                                        # 20..60 dns
        (5, {"gateway": False, "isp_hop": False, "anchors": (False, False),
             "dns": False}),                                        # 70..110 box
        (4, {"dns": False}),                                        # 120..150 dns again
        (4, {}),                                                    # 160.. good
    ])
    outages, seconds = replay(rounds)
    assert [(o.cause.value, o.start, o.end) for o in outages] == [
        ("dns", 20, 70), ("lan", 70, 120), ("dns", 120, 160)]
    assert seconds == {Layer.DNS: 90, Layer.LAN: 50}


def test_access_outage_hides_a_dead_upstream_and_dns():
    rounds = scenario([(3, {}), (6, {"isp_hop": False, "anchors": (False, False),
                                     "dns": False}), (3, {})])
    outages, seconds = replay(rounds)
    assert [(o.cause, o.start, o.end) for o in outages] == [(Layer.ACCESS, 30, 90)]
    assert set(seconds) == {Layer.ACCESS}


def test_an_outage_still_going_is_reported_open():
    outages, seconds = replay(scenario([(1, {}), (4, {"anchors": (False, True)})]))
    assert [(o.cause, o.start, o.end) for o in outages] == [(Layer.UPSTREAM, 10, None)]
    assert seconds == {Layer.UPSTREAM: 30}


def test_is_up_follows_the_layers_below():
    tracker = OutageTracker(1, 1)
    tracker.update(rnd(0, gateway=False))
    assert [tracker.is_up(layer) for layer in Layer] == [False] * 4
    tracker.update(rnd(10, dns=False))
    assert [tracker.is_up(layer) for layer in Layer] == [True, True, True, False]


# --- rounds under our own throughput test's load ------------------------------------------

ACCESS_DOWN = {"isp_hop": False, "anchors": (False, False), "dns": False}


def run_with_test(before: list[dict], during: list[dict], after: list[dict], *,
                  completed: bool | None, test_end: float | None = None):
    """Rounds every 10 s: `before` judged, `during` held under a test's load, `after` judged.

    `completed` is how the test ended (None: its end was never reported). Returns the
    outages (open last) and the counted seconds, as `replay`.
    """
    tracker = OutageTracker()
    outages, seconds, t = [], {}, 0.0

    def feed(r: ProbeRound) -> None:
        changes, counted = tracker.update(r)
        outages.extend(c for c in changes if c.end is not None)
        for cause, secs in counted.items():
            seconds[cause] = seconds.get(cause, 0.0) + secs

    for kw in before:
        feed(rnd(t, **kw))
        t += 10
    for kw in during:
        tracker.hold(rnd(t, **kw))
        t += 10
    if completed is not None:
        tracker.test_over(t - 5 if test_end is None else test_end, completed=completed)
    for kw in after:
        feed(rnd(t, **kw))
        t += 10
    if tracker.current is not None:
        outages.append(tracker.current)
    return [(o.cause, o.start, o.end) for o in outages], seconds


def test_failures_under_our_own_load_are_no_outage_when_the_line_is_fine_after():
    # A grade-F line: every round during the test times out; the line is fine after it.
    for completed in (True, False, None):
        outages, seconds = run_with_test([{}] * 3, [ACCESS_DOWN] * 6, [{}] * 5,
                                         completed=completed)
        assert outages == [] and seconds == {}, completed


def test_held_rounds_break_a_streak_from_before_the_test():
    # Two failed rounds before a test the line carried to its end, one failed after:
    # not three in a row, since the line worked during the test.
    outages, _ = run_with_test([{}, ACCESS_DOWN, ACCESS_DOWN], [{}] * 3,
                               [ACCESS_DOWN, {}, {}], completed=True)
    assert outages == []
    outages, _ = run_with_test([{}, ACCESS_DOWN, ACCESS_DOWN], [ACCESS_DOWN] * 3,
                               [ACCESS_DOWN, {}, {}], completed=True)
    assert outages == []


def test_an_outage_that_began_during_a_failed_test_is_dated_from_its_first_failure():
    # Held at 30..80: fine at 30 and 40, failing from 50; the test failed (the line broke
    # under it); the line is still down after it (90, 100).
    during = [{}, {}] + [ACCESS_DOWN] * 4
    outages, seconds = run_with_test([{}] * 3, during, [ACCESS_DOWN] * 2 + [{}] * 3,
                                     completed=False)
    assert outages == [(Layer.ACCESS, 50, 110)]
    assert seconds == {Layer.ACCESS: 60}
    # An unreported end is no better than a failed test.
    outages, _ = run_with_test([{}] * 3, during, [ACCESS_DOWN] * 2 + [{}] * 3, completed=None)
    assert outages == [(Layer.ACCESS, 50, 110)]
    # One failed round after the test is enough: the held ones and the failed test
    # count with it. The same round alone, with the test completed, is no outage.
    outages, _ = run_with_test([{}] * 3, during, [ACCESS_DOWN] + [{}] * 3, completed=False)
    assert outages == [(Layer.ACCESS, 50, 100)]
    outages, _ = run_with_test([{}] * 3, during, [ACCESS_DOWN] + [{}] * 3, completed=True)
    assert outages == []


def test_a_failed_test_on_a_bloated_line_then_a_dead_line_starts_at_the_tests_start():
    # Every held round failed (bloat, then the real break): the start is the first one,
    # no later than the test's end, and nothing is lost.
    outages, _ = run_with_test([{}] * 3, [ACCESS_DOWN] * 4, [ACCESS_DOWN] * 3,
                               completed=False, test_end=65)
    assert outages == [(Layer.ACCESS, 30, None)]


def test_after_a_completed_test_an_outage_starts_no_later_than_the_tests_end():
    # The test ran to its end at 65: the line carried it until then. Held rounds failed
    # (bloat), and the line is dead from right after the test: down_after judged rounds
    # are needed, and the outage is dated from the test's end.
    outages, seconds = run_with_test([{}] * 3, [ACCESS_DOWN] * 4,
                                     [ACCESS_DOWN] * 4 + [{}] * 3, completed=True,
                                     test_end=65)
    assert outages == [(Layer.ACCESS, 65, 110)]
    assert seconds == {Layer.ACCESS: 45}
    # Held rounds that answered: the outage starts with the first judged failure.
    outages, _ = run_with_test([{}] * 3, [{}] * 4, [ACCESS_DOWN] * 4 + [{}] * 3,
                               completed=True, test_end=65)
    assert outages == [(Layer.ACCESS, 70, 110)]


def test_a_box_outage_during_a_failed_test_is_localized_and_dated():
    box = {"gateway": False, **ACCESS_DOWN}
    outages, _ = run_with_test([{}] * 3, [ACCESS_DOWN, ACCESS_DOWN, box, box], [box] * 3,
                               completed=False)
    assert outages == [(Layer.LAN, 50, None)]
