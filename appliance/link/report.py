"""The monthly ISP report: what the association sends the ISP about one site's line.

A plain function over the link tables for one local calendar month; the panel renders
it as a page, a printable page and CSV. Only completed tests count toward speeds
(skipped and failed tests measure nothing about the ISP), and only outages beyond the
box (access, upstream, DNS) count against the ISP's availability: a box switched off
at the telecentre is not the ISP's fault, so it is shown but kept apart.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import statistics
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from appliance.link.throughput import GRADES, WORST_GRADE

CAUSES = ("lan", "access", "upstream", "dns")
ISP_CAUSES = ("access", "upstream", "dns")
GRADE_NAMES = tuple(name for _, name in GRADES) + (WORST_GRADE,)
WORST_HOURS = 3


@dataclass
class MonthlyReport:
    """Figures for one month; rates in bit/s, shares 0-1, None when nothing was measured."""

    month: str
    start: float
    end: float
    contract_down_bps: float
    contract_up_bps: float
    tests: int = 0
    median_down_bps: float | None = None
    median_up_bps: float | None = None
    down_share_80: float | None = None
    down_share_95: float | None = None
    up_share_80: float | None = None
    up_share_95: float | None = None
    availability: float | None = None
    outage_minutes: dict[str, float] = field(default_factory=dict)
    worst_hours: list[tuple[int, float]] = field(default_factory=list)
    grades: dict[str, int] = field(default_factory=dict)


def month_range(month: str, tz: ZoneInfo) -> tuple[float, float]:
    """'2026-03' -> (start, end) of that local calendar month; ValueError if malformed."""
    year, mon = (int(x) for x in month.split("-"))
    start = dt.datetime(year, mon, 1, tzinfo=tz)
    end = dt.datetime(year + (mon == 12), mon % 12 + 1, 1, tzinfo=tz)
    return start.timestamp(), end.timestamp()


def _share(values: list[float], contract: float, level: float) -> float | None:
    if not values or contract <= 0:
        return None
    return sum(1 for v in values if v >= level * contract) / len(values)


def monthly_report(conn: sqlite3.Connection, month: str, tz: ZoneInfo, contract_down_bps: float,
                   contract_up_bps: float, now: float) -> MonthlyReport:
    """The report for `month` ('YYYY-MM'); a month in progress is counted up to `now`."""
    start, end = month_range(month, tz)
    until = min(end, now)
    rep = MonthlyReport(month, start, end, contract_down_bps, contract_up_bps)
    rows = conn.execute(
        "SELECT at, download_bps, upload_bps, grade FROM link_tests"
        " WHERE result = 'ok' AND at >= ? AND at < ? ORDER BY at", (start, end)
    ).fetchall()
    rep.tests = len(rows)
    downs = [r[1] for r in rows if r[1] is not None]
    ups = [r[2] for r in rows if r[2] is not None]
    rep.median_down_bps = statistics.median(downs) if downs else None
    rep.median_up_bps = statistics.median(ups) if ups else None
    rep.down_share_80 = _share(downs, contract_down_bps, 0.80)
    rep.down_share_95 = _share(downs, contract_down_bps, 0.95)
    rep.up_share_80 = _share(ups, contract_up_bps, 0.80)
    rep.up_share_95 = _share(ups, contract_up_bps, 0.95)
    rep.grades = {name: 0 for name in GRADE_NAMES}
    for r in rows:
        if r[3] in rep.grades:
            rep.grades[r[3]] += 1
    by_hour: dict[int, list[float]] = {}
    for r in rows:
        if r[1] is not None:
            by_hour.setdefault(dt.datetime.fromtimestamp(r[0], tz).hour, []).append(r[1])
    ranked = sorted((statistics.median(v), h) for h, v in by_hour.items())
    rep.worst_hours = [(h, m) for m, h in ranked[:WORST_HOURS]]
    # Outages clipped to the month (one that began last month counts from the 1st).
    rep.outage_minutes = {cause: 0.0 for cause in CAUSES}
    for cause, o_start, o_end in conn.execute(
        "SELECT cause, start, COALESCE(end, ?) FROM link_outages"
        " WHERE start < ? AND COALESCE(end, ?) > ?", (until, until, until, start)
    ):
        seconds = max(0.0, min(o_end, until) - max(o_start, start))
        if cause in rep.outage_minutes:
            rep.outage_minutes[cause] += seconds / 60
    if until > start:
        isp_down = sum(rep.outage_minutes[c] for c in ISP_CAUSES) * 60
        rep.availability = max(0.0, 1 - isp_down / (until - start))
    return rep
