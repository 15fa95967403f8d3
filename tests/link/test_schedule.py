"""The randomized throughput-test schedule, with an injected clock and RNG."""

from __future__ import annotations

import datetime as dt
import random
from zoneinfo import ZoneInfo

import pytest

from appliance.link.schedule import (
    near_full_hour,
    next_test_time,
    pick_in_window,
    window_bounds,
)

PARIS = ZoneInfo("Europe/Paris")
H = 3600.0


def local(y, mo, d, h=0, mi=0, s=0, tz=PARIS) -> float:
    return dt.datetime(y, mo, d, h, mi, s, tzinfo=tz).timestamp()


def test_windows_start_at_local_midnight():
    t = local(2026, 3, 10, 9, 30)
    assert window_bounds(t, 4 * H, PARIS) == (local(2026, 3, 10, 8), local(2026, 3, 10, 12))
    assert window_bounds(local(2026, 3, 10), 4 * H, PARIS)[0] == local(2026, 3, 10)


@pytest.mark.parametrize("seed", range(200))
def test_picks_stay_in_the_window_and_away_from_full_hours(seed):
    rng = random.Random(seed)
    start = local(2026, 6, 1, 4)
    t = pick_in_window(start, 4 * H, rng, PARIS)
    assert start <= t < start + 4 * H
    minute = dt.datetime.fromtimestamp(t, PARIS).minute
    assert 5 <= minute < 55, minute


def test_near_full_hour():
    assert near_full_hour(local(2026, 1, 1, 10, 0, 0), PARIS)
    assert near_full_hour(local(2026, 1, 1, 10, 4, 59), PARIS)
    assert near_full_hour(local(2026, 1, 1, 10, 55, 1), PARIS)
    assert not near_full_hour(local(2026, 1, 1, 10, 5, 0), PARIS)
    assert not near_full_hour(local(2026, 1, 1, 10, 30), PARIS)


def test_one_test_per_window_over_a_month_and_spread_out():
    rng = random.Random(42)
    t = local(2026, 3, 1)
    times = []
    nxt = next_test_time(t, 4 * H, rng, PARIS)
    while nxt < local(2026, 4, 1):
        times.append(nxt)
        _start, end = window_bounds(nxt, 4 * H, PARIS)
        nxt = next_test_time(end, 4 * H, rng, PARIS)
    # March 2026 has 31 days; the switch to summer time (29 March) shortens one day.
    assert 185 <= len(times) <= 186
    windows = [window_bounds(x, 4 * H, PARIS)[0] for x in times]
    assert len(set(windows)) == len(windows)
    offsets = {round((x - w) / H) for x, w in zip(times, windows, strict=True)}
    assert offsets >= {0, 1, 2, 3}, "picks must spread over the whole window"
    assert not any(near_full_hour(x, PARIS) for x in times)


def test_a_pick_already_past_moves_to_the_next_window():
    now = local(2026, 5, 5, 11, 58)
    for seed in range(50):
        t = next_test_time(now, 4 * H, random.Random(seed), PARIS)
        assert t > now
        assert t < local(2026, 5, 5, 16)


def test_the_rng_is_the_only_source_of_randomness():
    now = local(2026, 5, 5, 9)
    a = next_test_time(now, 4 * H, random.Random(7), PARIS)
    b = next_test_time(now, 4 * H, random.Random(7), PARIS)
    c = next_test_time(now, 4 * H, random.Random(8), PARIS)
    assert a == b != c


@pytest.mark.parametrize("hours", [1, 2, 3, 6, 8, 12, 24])
def test_other_intervals(hours):
    rng = random.Random(hours)
    start = local(2026, 8, 1)
    for _ in range(50):
        t = pick_in_window(start, hours * H, rng, PARIS)
        assert start <= t < start + hours * H and not near_full_hour(t, PARIS)
