"""Who may use the Wi-Fi: members' portal secrets (password or PIN) and voucher codes.

Shared by the portal (checking), the panel and the CLI (setting). Secrets are stored
only as hashes: a member's Wi-Fi secret with scrypt (Werkzeug's default), a voucher
code as SHA-256 (codes are random with about 60 bits, so a fast hash is enough and a
lookup by hash is possible). What a failed attempt costs an attacker is the portal's
rate limit, not the hash.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import sqlite3
import time
from dataclasses import dataclass

from werkzeug.security import check_password_hash, generate_password_hash

from appliance.members import EMAIL_RE, NUMBER_RE
from appliance.passwords import dummy_check

# A new PIN has at least 6 digits (10**6 guesses against the portal's per-member lockout).
# PINs of 4 or 5 digits set before this rule keep working: only setting one is refused.
PIN_DIGITS = (6, 12)
PASSWORD_CHARS = (8, 128)
MAX_IDENTIFIER = 254

# No 0/O, 1/I/L: codes are read off paper and typed on a phone.
VOUCHER_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
VOUCHER_LENGTH = 12  # 31**12 ≈ 2**59
MAX_VOUCHER_INPUT = 40


class SecretRejected(ValueError):
    """A Wi-Fi secret that cannot be set, with what to do, in French and English."""

    def __init__(self, fr: str, en: str) -> None:
        super().__init__(en)
        self.messages = {"fr": fr, "en": en}


def check_secret(secret: str) -> None:
    """A PIN of 6 to 12 digits, or a password of 8 to 128 characters."""
    if secret.isdigit():
        lo, hi = PIN_DIGITS
        if not lo <= len(secret) <= hi:
            raise SecretRejected(
                f"Un code PIN compte de {lo} à {hi} chiffres : un code plus court se devine "
                "trop facilement.",
                f"A PIN has {lo} to {hi} digits: a shorter one is too easy to guess.",
            )
        return
    lo, hi = PASSWORD_CHARS
    if not lo <= len(secret) <= hi or any(ord(c) < 32 for c in secret):
        raise SecretRejected(
            f"Un mot de passe compte de {lo} à {hi} caractères imprimables.",
            f"A password has {lo} to {hi} printable characters.",
        )


def set_portal_secret(conn: sqlite3.Connection, member_id: int, secret: str) -> None:
    check_secret(secret)
    cur = conn.execute(
        "UPDATE members SET portal_secret_hash = ?, portal_secret_set_at = ? WHERE id = ?",
        (generate_password_hash(secret), time.time(), member_id),
    )
    if cur.rowcount != 1:
        raise ValueError(f"no member #{member_id}")


def find_member_id(conn: sqlite3.Connection, identifier: str) -> int | None:
    """The active member an identifier (e-mail or member number) names, without any secret.

    For the portal's per-member lockout, which must hold whichever identifier was typed.
    """
    identifier = identifier.strip()[:MAX_IDENTIFIER]
    row = _find_member(conn, identifier) if identifier else None
    return int(row["id"]) if row is not None else None


@dataclass(frozen=True)
class MemberLogin:
    """The outcome of a member's portal login: `member_id` only when `result` is "ok"."""

    result: str  # "ok", "bad_credentials", "not_allowed"
    member_id: int | None = None


def _find_member(conn: sqlite3.Connection, identifier: str) -> sqlite3.Row | None:
    if "@" in identifier:
        if not EMAIL_RE.match(identifier):
            return None
        rows = conn.execute(
            "SELECT * FROM members WHERE email = ? COLLATE NOCASE AND active = 1", (identifier,)
        ).fetchall()
    else:
        if not NUMBER_RE.match(identifier):
            return None
        rows = conn.execute(
            "SELECT * FROM members WHERE number = ? COLLATE NOCASE AND active = 1", (identifier,)
        ).fetchall()
    # Two live members sharing an e-mail: refuse rather than guess whose quota it is.
    return rows[0] if len(rows) == 1 else None


def authenticate_member(
    conn: sqlite3.Connection, identifier: str, secret: str, today: dt.date
) -> MemberLogin:
    """Check a member's identifier (e-mail or member number) and Wi-Fi secret.

    "not_allowed" (suspended, not yet or no longer valid) is only ever said after the
    secret was right, so the portal never tells a stranger whether a member exists.
    """
    identifier = identifier.strip()[:MAX_IDENTIFIER]
    row = _find_member(conn, identifier) if identifier else None
    stored = row["portal_secret_hash"] if row is not None else None
    if not stored:
        dummy_check(secret)  # same cost for an unknown identifier as for a wrong secret
        return MemberLogin("bad_credentials")
    if not check_password_hash(stored, secret):
        return MemberLogin("bad_credentials")
    day = today.isoformat()
    if (
        row["suspended"]
        or (row["valid_from"] and row["valid_from"] > day)
        or (row["valid_until"] and row["valid_until"] < day)
    ):
        return MemberLogin("not_allowed", int(row["id"]))
    return MemberLogin("ok", int(row["id"]))


# --- vouchers -----------------------------------------------------------------------------


def generate_voucher_code() -> str:
    """A code to print: 12 characters in three groups, about 59 bits of randomness."""
    raw = "".join(secrets.choice(VOUCHER_ALPHABET) for _ in range(VOUCHER_LENGTH))
    return "-".join(raw[i : i + 4] for i in range(0, VOUCHER_LENGTH, 4))


def normalize_voucher_code(text: str) -> str | None:
    """What the guest typed, without spaces, dashes or case; None if it cannot be a code."""
    if len(text) > MAX_VOUCHER_INPUT:
        return None
    code = "".join(c for c in text.upper() if c not in " -\t")
    if len(code) != VOUCHER_LENGTH or any(c not in VOUCHER_ALPHABET for c in code):
        return None
    return code


def voucher_hash(code: str) -> str:
    return hashlib.sha256(b"telecentre-voucher:" + code.encode()).hexdigest()


def create_voucher(
    conn: sqlite3.Connection,
    *,
    batch: str,
    quota_bytes: int,
    max_devices: int = 1,
    valid_until: float | None = None,
    created_by: str | None = None,
) -> tuple[int, str]:
    """Store one voucher; returns its id and its code (shown once, never stored)."""
    if quota_bytes <= 0 or max_devices <= 0:
        raise ValueError("a voucher needs a positive quota and at least one device")
    code = generate_voucher_code()
    cur = conn.execute(
        "INSERT INTO vouchers (batch, code_hash, quota_bytes, max_devices, valid_until, "
        "created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            batch,
            voucher_hash(normalize_voucher_code(code) or ""),
            quota_bytes,
            max_devices,
            valid_until,
            time.time(),
            created_by,
        ),
    )
    return int(cur.lastrowid), code


def find_voucher(conn: sqlite3.Connection, text: str, now: float) -> int | None:
    """The id of a live voucher matching what the guest typed, else None."""
    code = normalize_voucher_code(text)
    if code is None:
        return None
    row = conn.execute(
        "SELECT id, valid_until, revoked_at FROM vouchers WHERE code_hash = ?",
        (voucher_hash(code),),
    ).fetchone()
    if row is None or row["revoked_at"] is not None:
        return None
    if row["valid_until"] is not None and row["valid_until"] <= now:
        return None
    return int(row["id"])
