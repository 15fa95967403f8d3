"""The monthly ISP report, on a real SQLite file with hand-made tests and outages."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from appliance import db
from appliance.link import store
from appliance.link.report import month_range, monthly_report

PARIS = ZoneInfo("Europe/Paris")


def at(day: int, hour: int, minute: int = 0, month: int = 3) -> float:
    return dt.datetime(2026, month, day, hour, minute, tzinfo=PARIS).timestamp()


@pytest.fixture
def conn(tmp_path):
    c = db.open_db(tmp_path / "t.db")
    yield c
    c.close()


def test_month_range_is_local_and_rejects_garbage():
    start, end = month_range("2026-03", PARIS)
    assert start == at(1, 0) and end == dt.datetime(2026, 4, 1, tzinfo=PARIS).timestamp()
    # March has the DST change: 31 days minus one hour
    assert end - start == 31 * 86400 - 3600
    assert month_range("2026-12", PARIS)[1] == dt.datetime(2027, 1, 1, tzinfo=PARIS).timestamp()
    for bad in ("2026", "2026-13", "march", "2026-03-01"):
        with pytest.raises(ValueError):
            month_range(bad, PARIS)


def test_report_figures(conn):
    tests = [  # (day, hour, down Mbit/s, up Mbit/s, grade)
        (2, 9, 29.0, 0.97, "B"), (3, 9, 24.0, 0.90, "C"), (4, 21, 12.0, 0.50, "F"),
        (5, 21, 15.0, 0.60, "D"), (6, 14, 28.6, 0.99, "A"),
    ]
    for day, hour, down, up, grade in tests:
        store.record_test(conn, at=at(day, hour), trigger="schedule", result="ok",
                          backend="iperf3", download_bps=down * 1e6, upload_bps=up * 1e6,
                          grade=grade, bytes=1)
    # not counted: skipped and failed tests, and tests of another month
    store.record_test(conn, at=at(7, 10), trigger="schedule", result="skipped_busy",
                      backend="iperf3")
    store.record_test(conn, at=at(8, 10), trigger="admin", result="failed", backend="iperf3")
    store.record_test(conn, at=at(28, 10, month=2), trigger="schedule", result="ok",
                      backend="iperf3", download_bps=1e6, upload_bps=1e5, grade="F", bytes=1)
    # outages: 60 min access, 30 min dns, 45 min lan (box: not the ISP's), and one that
    # began in February and ends at 00:10 on the 1st (10 minutes count)
    for cause, start, minutes in (("access", at(10, 8), 60), ("dns", at(11, 8), 30),
                                  ("lan", at(12, 8), 45), ("upstream", at(1, 0) - 3600, 70)):
        oid = store.open_outage(conn, cause, start)
        store.close_outage(conn, oid, start + minutes * 60)
    rep = monthly_report(conn, "2026-03", PARIS, 30e6, 1e6, now=at(1, 0, month=5))
    assert rep.tests == 5
    assert rep.median_down_bps == 24e6 and rep.median_up_bps == 0.90e6
    assert rep.down_share_80 == pytest.approx(3 / 5)   # 29, 24, 28.6 >= 24
    assert rep.down_share_95 == pytest.approx(2 / 5)   # 29, 28.6 >= 28.5
    assert rep.up_share_80 == pytest.approx(3 / 5) and rep.up_share_95 == pytest.approx(2 / 5)
    assert rep.outage_minutes == pytest.approx({"lan": 45, "access": 60, "upstream": 10,
                                                "dns": 30})
    month_seconds = 31 * 86400 - 3600
    assert rep.availability == pytest.approx(1 - (60 + 10 + 30) * 60 / month_seconds)
    assert rep.worst_hours == [(21, 13.5e6), (9, 26.5e6), (14, 28.6e6)]
    assert rep.grades == {"A+": 0, "A": 1, "B": 1, "C": 1, "D": 1, "F": 1}


def test_month_in_progress_and_open_outage(conn):
    oid = store.open_outage(conn, "access", at(2, 10))
    assert oid
    rep = monthly_report(conn, "2026-03", PARIS, 30e6, 1e6, now=at(2, 12))
    assert rep.outage_minutes["access"] == pytest.approx(120)
    # counted up to now: 1 day 12 h elapsed, 2 h of it down
    assert rep.availability == pytest.approx(1 - 2 / 36)
    assert rep.tests == 0 and rep.median_down_bps is None and rep.down_share_80 is None
    future = monthly_report(conn, "2026-04", PARIS, 30e6, 1e6, now=at(2, 12))
    assert future.availability is None
