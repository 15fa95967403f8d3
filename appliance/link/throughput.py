"""Throughput results: bufferbloat grade, ratio to the contract, the monthly data budget.

Plain functions over plain numbers; the backends (`iperf`, speedtest) measure, the
service decides and stores.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

# Upper bounds (exclusive) of added delay under load, in seconds. Bufferbloat is what
# breaks video calls: beyond ~60 ms of added delay calls stutter, beyond 400 ms they fail.
GRADES: tuple[tuple[float, str], ...] = (
    (0.005, "A+"),
    (0.030, "A"),
    (0.060, "B"),
    (0.200, "C"),
    (0.400, "D"),
)
WORST_GRADE = "F"

# TCP payload in a full-size Ethernet frame: 1500 MTU - 20 IP - 20 TCP - 12 timestamps
# = 1448 bytes of the 1514 the shaper counts (14 bytes of Ethernet header).
TCP_PAYLOAD_PER_FRAME = 1448 / 1514


def grade(added_delay: float) -> str:
    """The bufferbloat grade for an added delay under load (seconds)."""
    for bound, name in GRADES:
        if added_delay < bound:
            return name
    return WORST_GRADE


def added_delay(
    idle_rtts: Sequence[float], loaded_rtts: Sequence[float], *, lost: int = 0,
    timeout: float = 0.0,
) -> float | None:
    """Median RTT under load minus median idle RTT (seconds, never negative).

    Medians, because one lost-then-retransmitted probe must not decide the grade.
    `lost` samples under load went unanswered within `timeout`: each counts as
    `timeout` (a lower bound of its delay), so a line whose queue holds more than the
    timeout grades F instead of being graded from its few fast answers. None when the
    target answered no idle sample (it says nothing about this line), or when nothing
    was sampled under load (the grade is unknown, not A+).
    """
    loaded = [*loaded_rtts, *([timeout] * lost)]
    if not idle_rtts or not loaded:
        return None
    return max(0.0, statistics.median(loaded) - statistics.median(idle_rtts))


def contract_ratio(measured_bps: float | None, contracted_bps: float) -> float | None:
    """Measured over contracted rate (1.0 = what the ISP sells); None without a contract."""
    if measured_bps is None or contracted_bps <= 0:
        return None
    return measured_bps / contracted_bps


def shaped_goodput(line_bps: float) -> float:
    """TCP payload rate through a shaper counting full Ethernet frames at `line_bps`."""
    return line_bps * TCP_PAYLOAD_PER_FRAME


def month_bounds(t: float, tz: ZoneInfo) -> tuple[float, float]:
    """Start and end of the local calendar month containing `t` (the budget period)."""
    local = dt.datetime.fromtimestamp(t, tz)
    start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    nxt = (start + dt.timedelta(days=32)).replace(day=1)
    return start.timestamp(), nxt.timestamp()


def budget_allows(used: int, estimate: int, budget: int) -> bool:
    """May a scheduled test run: the month's bytes plus this test's stay within budget.

    `estimate` is what a test usually costs (the last test's bytes), so the budget is
    not overshot by a whole test at the end of the month.
    """
    return used < budget and used + max(0, estimate) <= budget


@dataclass
class Measurement:
    """What a backend measured in one test. Rates in bits per second."""

    backend: str
    server: str
    download_bps: float | None = None
    upload_bps: float | None = None
    bytes_used: int = 0
    detail: str = ""
    extra: dict[str, object] = field(default_factory=dict)
