"""When the next scheduled throughput test runs.

The day is cut into windows of `interval` (4 h by default) from local midnight, and
one test runs at a random instant inside each window, never within a few minutes of a
full hour: tests from many sites must not meet on the same speedtest server at the
same second, and the top of the hour is when every cron job on the line fires.
"""

from __future__ import annotations

import datetime as dt
import random
from zoneinfo import ZoneInfo

# No test starts within this many seconds of a full hour (either side).
HOUR_MARGIN = 300.0


def window_bounds(t: float, interval: float, tz: ZoneInfo) -> tuple[float, float]:
    """The schedule window that contains `t`: windows start at local midnight."""
    local = dt.datetime.fromtimestamp(t, tz)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    k = int((t - midnight) // interval)
    start = midnight + k * interval
    return start, start + interval


def near_full_hour(t: float, tz: ZoneInfo, margin: float = HOUR_MARGIN) -> bool:
    """True within `margin` seconds of a local full hour."""
    local = dt.datetime.fromtimestamp(t, tz)
    into_hour = local.minute * 60 + local.second + local.microsecond / 1e6
    return into_hour < margin or into_hour > 3600 - margin


def pick_in_window(
    start: float, interval: float, rng: random.Random, tz: ZoneInfo, margin: float = HOUR_MARGIN
) -> float:
    """A random instant in [start, start + interval), away from full hours."""
    for _ in range(1000):
        t = start + rng.uniform(0, interval)
        if t < start + interval and not near_full_hour(t, tz, margin):
            return t
    raise ValueError(f"no instant away from full hours in a {interval:g} s window")


def next_test_time(
    after: float, interval: float, rng: random.Random, tz: ZoneInfo, margin: float = HOUR_MARGIN
) -> float:
    """The next scheduled test strictly after `after`.

    The window containing `after` gets its random instant; if that instant has passed
    already, the next window's instant is used. After a test, call it with the end of
    that test's window so each window holds one test.
    """
    start, end = window_bounds(after, interval, tz)
    t = pick_in_window(start, interval, rng, tz, margin)
    if t > after:
        return t
    start, _ = window_bounds(end, interval, tz)
    return pick_in_window(start, interval, rng, tz, margin)
