"""Members and their badges: validation and storage, shared by the panel and the CLI.

The database never holds a badge's UID: only an HMAC of it under the site secret
(`uid_hash`), so a copy of the database does not let anyone clone a card.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from appliance.door.policy import Holder

EMAIL_RE = re.compile(r"^[^@\s<>\"']{1,64}@[^@\s<>\"']{1,255}\.[^@\s<>\"'.]{2,}$")
PHONE_RE = re.compile(r"^[0-9 +().-]{6,25}$")
NUMBER_RE = re.compile(r"^[A-Za-z0-9-]{1,20}$")


class InvalidInput(ValueError):
    """Form data that cannot be stored; `errors` maps a field to {"fr": ..., "en": ...}."""

    def __init__(self, errors: dict[str, dict[str, str]]) -> None:
        super().__init__("; ".join(f"{k}: {v['en']}" for k, v in errors.items()))
        self.errors = errors


def _msg(fr: str, en: str) -> dict[str, str]:
    return {"fr": fr, "en": en}


def _date(value: str | None, field: str, errors: dict) -> str | None:
    value = (value or "").strip()
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        errors[field] = _msg(
            "Date invalide : attendu AAAA-MM-JJ (ex. 2026-09-01).",
            "Invalid date: expected YYYY-MM-DD (e.g. 2026-09-01).",
        )
        return None


def validate_member(data: Mapping[str, Any], plans: Mapping[str, Any]) -> dict[str, Any]:
    """Check member fields from a form or the CLI; returns clean values or raises InvalidInput."""
    errors: dict[str, dict[str, str]] = {}
    clean: dict[str, Any] = {}

    name = " ".join(str(data.get("name") or "").split())
    if not name:
        errors["name"] = _msg("Le nom est obligatoire.", "The name is required.")
    elif len(name) > 120 or any(ord(c) < 32 for c in name):
        errors["name"] = _msg(
            "Nom trop long ou caractères invalides (120 au plus).",
            "Name too long or invalid characters (120 at most).",
        )
    clean["name"] = name

    patterns = {
        "email": (
            EMAIL_RE,
            _msg(
                "Adresse e-mail invalide (ex. prenom.nom@exemple.fr).",
                "Invalid e-mail address (e.g. first.last@example.org).",
            ),
        ),
        "phone": (
            PHONE_RE,
            _msg(
                "Numéro de téléphone invalide (chiffres, espaces, +).",
                "Invalid phone number (digits, spaces, +).",
            ),
        ),
        "number": (
            NUMBER_RE,
            _msg(
                "Numéro d'adhérent : lettres, chiffres et tirets (20 au plus).",
                "Member number: letters, digits and dashes (20 at most).",
            ),
        ),
    }
    for field, (pattern, message) in patterns.items():
        value = str(data.get(field) or "").strip()
        if value and not pattern.match(value):
            errors[field] = message
        clean[field] = value or None

    role = str(data.get("role") or "member")
    if role not in ("member", "admin"):
        errors["role"] = _msg("Rôle inconnu.", "Unknown role.")
    clean["role"] = role

    plan = str(data.get("plan") or "").strip() or None
    if plan is not None and plan not in plans:
        errors["plan"] = _msg(
            "Forfait inconnu : choisissez-en un dans la liste.",
            "Unknown plan: choose one from the list.",
        )
    clean["plan"] = plan

    clean["valid_from"] = _date(data.get("valid_from"), "valid_from", errors)
    clean["valid_until"] = _date(data.get("valid_until"), "valid_until", errors)
    if (
        clean["valid_from"]
        and clean["valid_until"]
        and clean["valid_until"] < clean["valid_from"]
        and "valid_until" not in errors
    ):
        errors["valid_until"] = _msg(
            "La fin de validité doit suivre le début.",
            "The end of validity must come after its start.",
        )

    notes = str(data.get("notes") or "").strip()
    if len(notes) > 2000:
        errors["notes"] = _msg("Notes trop longues (2000 au plus).", "Notes too long (2000 max).")
    clean["notes"] = notes or None

    if errors:
        raise InvalidInput(errors)
    return clean


def _next_number(conn: sqlite3.Connection) -> str:
    row = conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM members").fetchone()
    n = row[0]
    while True:
        candidate = f"M{n:04d}"
        if not conn.execute("SELECT 1 FROM members WHERE number = ?", (candidate,)).fetchone():
            return candidate
        n += 1


def add_member(
    conn: sqlite3.Connection, clean: Mapping[str, Any], *, now: float | None = None
) -> int:
    """Insert a validated member; returns its id."""
    now = time.time() if now is None else now
    number = clean.get("number") or _next_number(conn)
    if conn.execute("SELECT 1 FROM members WHERE number = ?", (number,)).fetchone():
        raise InvalidInput(
            {"number": _msg("Ce numéro d'adhérent existe déjà.", "This member number exists.")}
        )
    cur = conn.execute(
        "INSERT INTO members (number, name, email, phone, role, plan, valid_from, valid_until,"
        " notes, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            number,
            clean["name"],
            clean.get("email"),
            clean.get("phone"),
            clean.get("role", "member"),
            clean.get("plan"),
            clean.get("valid_from"),
            clean.get("valid_until"),
            clean.get("notes"),
            now,
            now,
        ),
    )
    return int(cur.lastrowid)


def update_member(
    conn: sqlite3.Connection, member_id: int, clean: Mapping[str, Any], *, now: float | None = None
) -> None:
    """Replace a member's editable fields with validated values."""
    now = time.time() if now is None else now
    number = clean.get("number")
    if number:
        other = conn.execute(
            "SELECT id FROM members WHERE number = ? AND id != ?", (number, member_id)
        ).fetchone()
        if other:
            raise InvalidInput(
                {"number": _msg("Ce numéro d'adhérent existe déjà.", "This member number exists.")}
            )
    conn.execute(
        "UPDATE members SET number = COALESCE(?, number), name = ?, email = ?, phone = ?,"
        " role = ?, plan = ?, valid_from = ?, valid_until = ?, notes = ?, updated_at = ?"
        " WHERE id = ?",
        (
            number,
            clean["name"],
            clean.get("email"),
            clean.get("phone"),
            clean.get("role", "member"),
            clean.get("plan"),
            clean.get("valid_from"),
            clean.get("valid_until"),
            clean.get("notes"),
            now,
            member_id,
        ),
    )


def set_suspended(
    conn: sqlite3.Connection, member_id: int, suspended: bool, reason: str | None = None
) -> None:
    conn.execute(
        "UPDATE members SET suspended = ?, suspended_reason = ?, updated_at = ? WHERE id = ?",
        (int(suspended), (reason or None) if suspended else None, time.time(), member_id),
    )


def set_active(conn: sqlite3.Connection, member_id: int, active: bool) -> None:
    """Archive (False) or restore (True) a member; archiving revokes their live badges."""
    now = time.time()
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "UPDATE members SET active = ?, updated_at = ? WHERE id = ?",
            (int(active), now, member_id),
        )
        if not active:
            conn.execute(
                "UPDATE badges SET revoked_at = ?, revoked_by = 'archivage'"
                " WHERE member_id = ? AND revoked_at IS NULL",
                (now, member_id),
            )
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def get_member(conn: sqlite3.Connection, member_id: int) -> sqlite3.Row | None:
    return conn.execute("SELECT * FROM members WHERE id = ?", (member_id,)).fetchone()


def find_member(conn: sqlite3.Connection, ref: str) -> sqlite3.Row | None:
    """A member by number, e-mail or id (for the CLI)."""
    row = conn.execute(
        "SELECT * FROM members WHERE number = ? OR email = ? COLLATE NOCASE", (ref, ref)
    ).fetchone()
    if row is None and ref.isdigit():
        row = get_member(conn, int(ref))
    return row


def list_members(
    conn: sqlite3.Connection, search: str = "", *, limit: int = 100, offset: int = 0
) -> list[sqlite3.Row]:
    """Members matching a search on name, number or e-mail, with their live badge count."""
    like = f"%{search.strip()}%"
    return conn.execute(
        "SELECT m.*, (SELECT COUNT(*) FROM badges b WHERE b.member_id = m.id"
        " AND b.revoked_at IS NULL) AS badge_count FROM members m"
        " WHERE m.active = 1 AND (? = '%%' OR m.name LIKE ? OR m.number LIKE ? OR m.email LIKE ?)"
        " ORDER BY m.name COLLATE NOCASE LIMIT ? OFFSET ?",
        (like, like, like, like, limit, offset),
    ).fetchall()


def count_members(conn: sqlite3.Connection, search: str = "") -> int:
    like = f"%{search.strip()}%"
    return conn.execute(
        "SELECT COUNT(*) FROM members m WHERE m.active = 1 AND"
        " (? = '%%' OR m.name LIKE ? OR m.number LIKE ? OR m.email LIKE ?)",
        (like, like, like, like),
    ).fetchone()[0]


def member_badges(conn: sqlite3.Connection, member_id: int) -> list[sqlite3.Row]:
    return conn.execute(
        "SELECT id, ref, mode, label, enrolled_at, enrolled_by, revoked_at, revoked_by"
        " FROM badges WHERE member_id = ? ORDER BY enrolled_at DESC",
        (member_id,),
    ).fetchall()


def revoke_badge(
    conn: sqlite3.Connection, badge_id: int, by: str, *, now: float | None = None
) -> bool:
    cur = conn.execute(
        "UPDATE badges SET revoked_at = ?, revoked_by = ? WHERE id = ? AND revoked_at IS NULL",
        (time.time() if now is None else now, by, badge_id),
    )
    return cur.rowcount == 1


# --- badge identity, used by the door ------------------------------------------------


def uid_hash(site_secret: bytes, uid: bytes) -> str:
    """The stored identity of a card: HMAC of its UID under the site secret."""
    return hmac.new(site_secret, b"telecentre-uid\x00" + uid, hashlib.sha256).hexdigest()


def token_hash(token: bytes) -> str:
    return hashlib.sha256(b"telecentre-token\x00" + token).hexdigest()


def unknown_ref(uid_h: str) -> str:
    """A reference for an unknown card in the access log: stable, not the UID."""
    return "?" + uid_h[:8]


@dataclass(frozen=True)
class BadgeMatch:
    """A badge found for a card, with what the door needs to decide."""

    badge_id: int
    ref: str
    mode: str
    token_hash: str | None
    revoked: bool
    member_name: str
    holder: Holder


def _holder(row: sqlite3.Row) -> Holder:
    def d(value: str | None) -> dt.date | None:
        return dt.date.fromisoformat(value) if value else None

    return Holder(
        member_id=row["member_id"],
        active=bool(row["active"]),
        suspended=bool(row["suspended"]),
        role=row["role"],
        plan=row["plan"],
        valid_from=d(row["valid_from"]),
        valid_until=d(row["valid_until"]),
    )


def badge_for_uid(conn: sqlite3.Connection, uid_h: str) -> BadgeMatch | None:
    """The live badge for a card, else its most recent revoked one, else None."""
    row = conn.execute(
        "SELECT b.id AS badge_id, b.ref, b.mode, b.token_hash, b.revoked_at, m.id AS member_id,"
        " m.name, m.active, m.suspended, m.role, m.plan, m.valid_from, m.valid_until"
        " FROM badges b JOIN members m ON m.id = b.member_id WHERE b.uid_hash = ?"
        " ORDER BY b.revoked_at IS NULL DESC, b.enrolled_at DESC LIMIT 1",
        (uid_h,),
    ).fetchone()
    if row is None:
        return None
    return BadgeMatch(
        badge_id=row["badge_id"],
        ref=row["ref"],
        mode=row["mode"],
        token_hash=row["token_hash"],
        revoked=row["revoked_at"] is not None,
        member_name=row["name"],
        holder=_holder(row),
    )


def insert_badge(
    conn: sqlite3.Connection,
    *,
    member_id: int,
    uid_h: str,
    mode: str,
    token_h: str | None,
    by: str | None,
    now: float | None = None,
) -> tuple[int, str]:
    """Bind a card to a member (revoking any earlier live badge of the same card)."""
    now = time.time() if now is None else now
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "UPDATE badges SET revoked_at = ?, revoked_by = 'réenrôlement' WHERE uid_hash = ?"
            " AND revoked_at IS NULL",
            (now, uid_h),
        )
        cur = conn.execute(
            "INSERT INTO badges (member_id, uid_hash, ref, mode, token_hash, enrolled_at,"
            " enrolled_by) VALUES (?, ?, '', ?, ?, ?, ?)",
            (member_id, uid_h, mode, token_h, now, by),
        )
        badge_id = int(cur.lastrowid)
        ref = f"B{badge_id:05d}"
        conn.execute("UPDATE badges SET ref = ? WHERE id = ?", (ref, badge_id))
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return badge_id, ref
