"""The link service's tables: raw probes (30 days), hourly aggregates and tests (2 years).

Everything is written locally first, so nothing is lost while the line is down; the
central view gets its totals from cumulative counters, the ISP report from here.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

from appliance import db
from appliance.link.probes import Sample

RAW_DAYS = 30
AGGREGATE_DAYS = 730
HOUR = 3600.0

TEST_COLUMNS = (
    "at", "trigger", "result", "backend", "server", "download_bps", "upload_bps",
    "download_ratio", "upload_ratio", "idle_rtt_s", "loaded_rtt_s", "added_delay_s",
    "grade", "bytes", "detail",
)


def record_round(conn: sqlite3.Connection, at: float, samples: Iterable[Sample]) -> None:
    """One round of probes, in one transaction (one fsync per round on the SD card)."""
    with db.transaction(conn):
        conn.executemany(
            "INSERT INTO link_probes (at, role, target, sent, received, rtt_s)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [(at, s.role, s.target, s.sent, s.received, s.rtt) for s in samples],
        )


def open_outage(conn: sqlite3.Connection, cause: str, start: float) -> int:
    cur = conn.execute("INSERT INTO link_outages (cause, start) VALUES (?, ?)", (cause, start))
    return int(cur.lastrowid or 0)


def close_outage(conn: sqlite3.Connection, outage_id: int, end: float) -> None:
    conn.execute("UPDATE link_outages SET end = ? WHERE id = ?", (end, outage_id))


def close_dangling_outages(conn: sqlite3.Connection) -> int:
    """Outages left open by a stop or a crash end at the last probe round before it.

    After a restart nothing is known of the time the service was away, so the outage
    is not stretched over it; if the line is still down, a new outage starts.
    """
    cur = conn.execute(
        "UPDATE link_outages SET end = MAX(start, COALESCE("
        " (SELECT MAX(at) FROM link_probes WHERE at >= link_outages.start), start))"
        " WHERE end IS NULL"
    )
    return cur.rowcount


def outages(conn: sqlite3.Connection, since: float = 0.0, limit: int = 100) -> list[sqlite3.Row]:
    return conn.execute(
        "SELECT id, cause, start, end FROM link_outages WHERE COALESCE(end, start) >= ?"
        " ORDER BY start DESC LIMIT ?",
        (since, limit),
    ).fetchall()


def record_test(conn: sqlite3.Connection, **fields: Any) -> int:
    unknown = set(fields) - set(TEST_COLUMNS)
    if unknown:
        raise ValueError(f"unknown test fields: {sorted(unknown)}")
    columns = [c for c in TEST_COLUMNS if c in fields]
    cur = conn.execute(
        f"INSERT INTO link_tests ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
        [fields[c] for c in columns],
    )
    return int(cur.lastrowid or 0)


def tests(conn: sqlite3.Connection, limit: int = 50) -> list[sqlite3.Row]:
    return conn.execute("SELECT * FROM link_tests ORDER BY at DESC LIMIT ?", (limit,)).fetchall()


def bytes_between(conn: sqlite3.Connection, start: float, end: float) -> int:
    """Bytes used by throughput tests in [start, end): the data budget's meter."""
    row = conn.execute(
        "SELECT COALESCE(SUM(bytes), 0) FROM link_tests WHERE at >= ? AND at < ?", (start, end)
    ).fetchone()
    return int(row[0])


def last_test_bytes(conn: sqlite3.Connection) -> int:
    """What the last completed test cost: the estimate for the next one."""
    row = conn.execute(
        "SELECT bytes FROM link_tests WHERE result = 'ok' ORDER BY at DESC LIMIT 1"
    ).fetchone()
    return int(row[0]) if row else 0


def last_test(conn: sqlite3.Connection, *, ok: bool = False) -> dict[str, Any] | None:
    """The latest test row (the latest completed one with `ok`), as a dict, or None."""
    where = " WHERE result = 'ok'" if ok else ""
    row = conn.execute(
        f"SELECT {', '.join(TEST_COLUMNS)} FROM link_tests{where} ORDER BY at DESC, id DESC"
        " LIMIT 1"
    ).fetchone()
    return dict(zip(TEST_COLUMNS, row, strict=True)) if row else None


BELOW_HALF = 0.5


def below_half_in_a_row(conn: sqlite3.Connection, direction: str) -> int:
    """Completed tests since the last one at or over half the contract, in `direction`.

    Only completed tests with a ratio in that direction count: a skipped or failed test
    measured nothing, so it neither counts nor resets the run.
    """
    if direction not in ("download", "upload"):
        raise ValueError(direction)
    ratio = f"{direction}_ratio"
    row = conn.execute(
        f"SELECT COUNT(*) FROM link_tests WHERE result = 'ok' AND {ratio} < ?"
        f" AND at > COALESCE((SELECT MAX(at) FROM link_tests WHERE result = 'ok'"
        f" AND {ratio} >= ?), -1)",
        (BELOW_HALF, BELOW_HALF),
    ).fetchone()
    return int(row[0])


def outage_at_last_stop(conn: sqlite3.Connection) -> dict[str, Any] | None:
    """The outage that was still going on when the previous run stopped (cause, start).

    Such an outage was closed at the last probe round (on stop, or by
    `close_dangling_outages` after a crash), so its end is the last round; an outage that
    really ended is followed by the good rounds that ended it. None if the line was up,
    or nothing was ever probed.
    """
    row = conn.execute(
        "SELECT cause, start FROM link_outages"
        " WHERE end IS NOT NULL AND end >= (SELECT MAX(at) FROM link_probes)"
        " ORDER BY start DESC LIMIT 1"
    ).fetchone()
    return {"cause": str(row[0]), "start": float(row[1])} if row else None


def cause_at_last_stop(conn: sqlite3.Connection) -> str | None:
    """The cause of `outage_at_last_stop`, or None."""
    outage = outage_at_last_stop(conn)
    return outage["cause"] if outage else None


def last_probe_at(conn: sqlite3.Connection) -> float | None:
    """When the last stored probe round left, or None if nothing was ever probed."""
    row = conn.execute("SELECT MAX(at) FROM link_probes").fetchone()
    return float(row[0]) if row and row[0] is not None else None


def has_probes(conn: sqlite3.Connection) -> bool:
    return last_probe_at(conn) is not None


def aggregate_hours(conn: sqlite3.Connection, until: float) -> int:
    """Fold raw probes of every whole hour before `until` into link_hourly.

    Idempotent (INSERT OR REPLACE of complete hours), so a crash between two runs or
    a clock step only redoes work; starts after the last hour already folded.
    """
    last = conn.execute("SELECT MAX(hour) FROM link_hourly").fetchone()[0]
    start = (last + HOUR) if last is not None else 0.0
    end = (until // HOUR) * HOUR
    if end <= start:
        return 0
    with db.transaction(conn):
        cur = conn.execute(
            "INSERT OR REPLACE INTO link_hourly"
            " (hour, role, target, sent, received, rtt_min_s, rtt_avg_s, rtt_max_s)"
            " SELECT CAST(at / 3600 AS INTEGER) * 3600.0 AS h, role, target,"
            " SUM(sent), SUM(received), MIN(rtt_s), AVG(rtt_s), MAX(rtt_s)"
            " FROM link_probes WHERE at >= ? AND at < ? GROUP BY h, role, target",
            (start, end),
        )
    return cur.rowcount


def purge(conn: sqlite3.Connection, now: float) -> tuple[int, int]:
    """Retention: raw probes after 30 days; aggregates, tests and outages after 2 years."""
    raw_cut = now - RAW_DAYS * 86400
    old_cut = now - AGGREGATE_DAYS * 86400
    with db.transaction(conn):
        raw = conn.execute("DELETE FROM link_probes WHERE at < ?", (raw_cut,)).rowcount
        old = conn.execute("DELETE FROM link_hourly WHERE hour < ?", (old_cut,)).rowcount
        old += conn.execute("DELETE FROM link_tests WHERE at < ?", (old_cut,)).rowcount
        old += conn.execute(
            "DELETE FROM link_outages WHERE end IS NOT NULL AND end < ?", (old_cut,)
        ).rowcount
    return raw, old
