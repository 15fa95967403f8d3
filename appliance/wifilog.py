"""The Wi-Fi legal log: one row per device session, read, exported, purged.

CPCE L34-1 obliges anyone offering public internet access to keep connection data
(who, which device, which address, when, how much) for one year, and the GDPR obliges
us to delete it after that. Rows are written by the gateway service (it owns
`wifi_sessions`); the panel only reads and exports them; the gateway's loop (and
`telecentre purge`) deletes them. Never URLs or content: the table has no column for
them and nothing here adds one.
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

from appliance.accesslog import _safe

DEFAULT_DAYS = 365
_BATCH = 5000

# Identity as the admin knows it: the member's name and number, the voucher's batch,
# or the guest device's id. Joined at read time so a renamed member reads right.
_SELECT = """
SELECT s.id, s.owner_kind, s.owner_id, s.mac, s.ip, s.started_at, s.ended_at,
       s.end_reason, s.bytes_up, s.bytes_down,
       m.name AS member_name, m.number AS member_number, v.batch AS voucher_batch
FROM wifi_sessions s
LEFT JOIN members m ON s.owner_kind = 'member' AND m.id = s.owner_id
LEFT JOIN vouchers v ON s.owner_kind = 'voucher' AND v.id = s.owner_id
"""


@dataclass(frozen=True)
class Filter:
    """Sessions that overlap [since, until): what a legal request asks for."""

    since: float | None = None
    until: float | None = None

    def where(self) -> tuple[str, list[float]]:
        clauses: list[str] = []
        args: list[float] = []
        if self.since is not None:
            # still open, or ended after the start of the period
            clauses.append("(s.ended_at IS NULL OR s.ended_at >= ?)")
            args.append(self.since)
        if self.until is not None:
            clauses.append("s.started_at < ?")
            args.append(self.until)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


def query(
    conn: sqlite3.Connection, flt: Filter = Filter(), *, before_id: int | None = None,
    limit: int = 100,
) -> list[sqlite3.Row]:
    """Newest first; `before_id` pages back."""
    where, args = flt.where()
    params: list[float | int] = list(args)
    if before_id is not None:
        where = (where + " AND " if where else " WHERE ") + "s.id < ?"
        params.append(before_id)
    return conn.execute(f"{_SELECT}{where} ORDER BY s.id DESC LIMIT ?", (*params, limit)).fetchall()


def identity(row: sqlite3.Row | dict, guest_label: str = "invité") -> str:
    """Who the session belongs to, as the admin knows them (the CSV is French-first)."""
    kind = row["owner_kind"]
    if kind == "member":
        if row["member_name"]:
            return f"{row['member_name']} (n° {row['member_number']})"
        return f"membre #{row['owner_id']}"
    if kind == "voucher":
        return f"ticket #{row['owner_id']} ({row['voucher_batch'] or '?'})"
    return f"{guest_label} #{row['owner_id']}"


def _local(timestamp: float | None, tz: ZoneInfo) -> str:
    if timestamp is None:
        return ""
    return dt.datetime.fromtimestamp(timestamp, tz).strftime("%Y-%m-%d %H:%M:%S")


CSV_HEADER = (
    "type", "identité", "adresse MAC", "adresse IP", "début", "fin", "motif de fin",
    "octets envoyés", "octets reçus",
)


def export_csv(conn: sqlite3.Connection, flt: Filter, tz: ZoneInfo) -> Iterator[str]:
    """The filtered log, oldest first, local time, semicolon-separated, streamed.

    Names come from the members table, which admins type into: every text cell goes
    through `_safe` so a name like `=HYPERLINK(...)` stays text in a spreadsheet.
    """
    where, args = flt.where()
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=";")
    writer.writerow(CSV_HEADER)
    for n, row in enumerate(conn.execute(f"{_SELECT}{where} ORDER BY s.id", args), 1):
        writer.writerow(
            [
                row["owner_kind"],
                _safe(identity(row)),
                _safe(row["mac"]),
                _safe(row["ip"]),
                _local(row["started_at"], tz),
                _local(row["ended_at"], tz),
                _safe(row["end_reason"]),
                int(row["bytes_up"] or 0),
                int(row["bytes_down"] or 0),
            ]
        )
        if n % 500 == 0:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()


def purge(conn: sqlite3.Connection, days: int = DEFAULT_DAYS, *, now: float | None = None) -> int:
    """Delete sessions that ended more than `days` ago; returns how many went.

    Counted from the session's end: a device connected for a week is kept a year after
    it left. Open sessions are never deleted (the gateway still needs them to restore
    its table). Guest devices (a MAC) that no session and no quota refers to any more
    and that were first seen before the cut-off go too: a MAC is personal data.
    """
    cutoff = (time.time() if now is None else now) - days * 86400
    deleted = 0
    while True:  # in batches, so the gateway's writes are never blocked for long
        cur = conn.execute(
            "DELETE FROM wifi_sessions WHERE id IN (SELECT id FROM wifi_sessions"
            " WHERE ended_at IS NOT NULL AND ended_at < ? LIMIT ?)",
            (cutoff, _BATCH),
        )
        deleted += cur.rowcount
        if cur.rowcount < _BATCH:
            break
    conn.execute(
        "DELETE FROM guest_devices WHERE first_seen < ?"
        " AND id NOT IN (SELECT owner_id FROM wifi_sessions WHERE owner_kind = 'guest')"
        " AND id NOT IN (SELECT owner_id FROM wifi_quotas WHERE owner_kind = 'guest')",
        (cutoff,),
    )
    return deleted
