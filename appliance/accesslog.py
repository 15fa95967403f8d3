"""The access log: every door decision and alarm, durable, filterable, exportable, purged.

Rows are written by the door service in autocommit mode with synchronous=FULL,
so an event that opened the door is on disk before the lock moves.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from zoneinfo import ZoneInfo

COLUMNS = (
    "id",
    "at",
    "kind",
    "result",
    "reason",
    "badge_id",
    "badge_ref",
    "member_id",
    "member_name",
    "actor",
    "detail",
)


def record(
    conn: sqlite3.Connection,
    *,
    kind: str,
    result: str,
    reason: str,
    at: float | None = None,
    badge_id: int | None = None,
    badge_ref: str | None = None,
    member_id: int | None = None,
    member_name: str | None = None,
    actor: str | None = None,
    detail: str | None = None,
) -> int:
    """Append one event; returns its id once it is committed."""
    cur = conn.execute(
        "INSERT INTO access_events (at, kind, result, reason, badge_id, badge_ref, member_id,"
        " member_name, actor, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            time.time() if at is None else at,
            kind,
            result,
            reason,
            badge_id,
            badge_ref,
            member_id,
            member_name,
            actor,
            detail,
        ),
    )
    return int(cur.lastrowid)


@dataclass(frozen=True)
class Filter:
    """What the panel's access-log page filters on."""

    since: float | None = None
    until: float | None = None
    result: str | None = None
    kind: str | None = None
    reason: str | None = None
    member_id: int | None = None
    text: str | None = None

    def where(self) -> tuple[str, list]:
        clauses, args = [], []
        if self.since is not None:
            clauses.append("at >= ?")
            args.append(self.since)
        if self.until is not None:
            clauses.append("at < ?")
            args.append(self.until)
        for column in ("result", "kind", "reason", "member_id"):
            value = getattr(self, column)
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        if self.text:
            clauses.append("(member_name LIKE ? OR badge_ref LIKE ? OR actor LIKE ?)")
            like = f"%{self.text}%"
            args += [like, like, like]
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


def query(
    conn: sqlite3.Connection,
    flt: Filter = Filter(),
    *,
    after_id: int | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> list[sqlite3.Row]:
    """Newest first; after_id gives only newer rows (live updates), before_id pages back."""
    where, args = flt.where()
    extra = []
    if after_id is not None:
        extra.append("id > ?")
        args.append(after_id)
    if before_id is not None:
        extra.append("id < ?")
        args.append(before_id)
    if extra:
        where = (where + " AND " if where else " WHERE ") + " AND ".join(extra)
    return conn.execute(
        f"SELECT {', '.join(COLUMNS)} FROM access_events{where} ORDER BY id DESC LIMIT ?",
        (*args, limit),
    ).fetchall()


def export_csv(conn: sqlite3.Connection, flt: Filter, tz: ZoneInfo) -> Iterator[str]:
    """CSV of the filtered log, oldest first, local time, streamed in chunks.

    Semicolon-separated: what a spreadsheet set to French expects.
    """
    where, args = flt.where()
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=";")
    writer.writerow(
        ["date", "heure", "type", "résultat", "motif", "badge", "adhérent", "par", "détail"]
    )
    cur = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM access_events{where} ORDER BY id", args)
    for n, row in enumerate(cur, 1):
        local = dt.datetime.fromtimestamp(row["at"], tz)
        writer.writerow(
            [
                local.date().isoformat(),
                local.strftime("%H:%M:%S"),
                row["kind"],
                row["result"],
                row["reason"],
                row["badge_ref"] or "",
                _safe(row["member_name"]),
                _safe(row["actor"]),
                _safe(row["detail"]),
            ]
        )
        if n % 500 == 0:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()


def _safe(value: str | None) -> str:
    """Neutralise spreadsheet formulas in user-entered text (CSV injection)."""
    value = value or ""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def purge(conn: sqlite3.Connection, days: int, *, now: float | None = None) -> int:
    """Delete events older than `days` (retention); returns how many went."""
    cutoff = (time.time() if now is None else now) - days * 86400
    deleted = 0
    while True:  # in batches, so the door is never blocked for long
        cur = conn.execute(
            "DELETE FROM access_events WHERE id IN"
            " (SELECT id FROM access_events WHERE at < ? LIMIT 5000)",
            (cutoff,),
        )
        deleted += cur.rowcount
        if cur.rowcount < 5000:
            return deleted
