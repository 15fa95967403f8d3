"""Panel accounts: admins (full rights) and staff (read-only).

Passwords are hashed with scrypt (Werkzeug's default, memory-hard) so a stolen
database does not give away the passwords.
"""

from __future__ import annotations

import secrets
import sqlite3
import time

from werkzeug.security import check_password_hash, generate_password_hash

from appliance.passwords import dummy_check

MIN_PASSWORD = 10


class AccountError(ValueError):
    """An account that cannot be created as asked."""


def generate_password() -> str:
    """A password an admin can type from a printout: 4 groups of 4 letters and digits."""
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    return "-".join("".join(secrets.choice(alphabet) for _ in range(4)) for _ in range(4))


def create_admin(
    conn: sqlite3.Connection,
    username: str,
    password: str,
    *,
    role: str = "admin",
    display_name: str | None = None,
    language: str = "fr",
) -> int:
    username = username.strip()
    if not username or len(username) > 40 or not all(c.isalnum() or c in "._-" for c in username):
        raise AccountError("username: letters, digits, '.', '_' and '-' only (40 at most)")
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"password: at least {MIN_PASSWORD} characters")
    if role not in ("admin", "staff"):
        raise AccountError("role: admin or staff")
    if conn.execute("SELECT 1 FROM admins WHERE username = ?", (username,)).fetchone():
        raise AccountError(f"username: {username!r} already exists")
    cur = conn.execute(
        "INSERT INTO admins (username, password_hash, role, display_name, language, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (
            username,
            generate_password_hash(password),
            role,
            display_name or username,
            language,
            time.time(),
        ),
    )
    return int(cur.lastrowid)


def set_password_hash(conn: sqlite3.Connection, username: str, password_hash: str) -> None:
    """Store a hash made elsewhere (the first-boot file can carry one, not the password)."""
    method = password_hash.split("$", 1)[0]
    if password_hash.count("$") != 2 or not method.startswith(("scrypt:", "pbkdf2:")):
        raise AccountError("password hash: expected scrypt:…$salt$hash or pbkdf2:…$salt$hash")
    cur = conn.execute(
        "UPDATE admins SET password_hash = ? WHERE username = ?", (password_hash, username)
    )
    if cur.rowcount != 1:
        raise AccountError(f"username: no account {username!r}")


def set_password(conn: sqlite3.Connection, username: str, password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"password: at least {MIN_PASSWORD} characters")
    cur = conn.execute(
        "UPDATE admins SET password_hash = ? WHERE username = ?",
        (generate_password_hash(password), username),
    )
    if cur.rowcount != 1:
        raise AccountError(f"username: no account {username!r}")


def authenticate(conn: sqlite3.Connection, username: str, password: str) -> sqlite3.Row | None:
    """The account if the password is right, else None (same cost either way)."""
    row = conn.execute("SELECT * FROM admins WHERE username = ?", (username.strip(),)).fetchone()
    if row is None:
        dummy_check(password)  # a wrong username takes as long as a wrong password
        return None
    if not check_password_hash(row["password_hash"], password):
        return None
    conn.execute("UPDATE admins SET last_login_at = ? WHERE id = ?", (time.time(), row["id"]))
    return row


def count_admins(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT COUNT(*) FROM admins").fetchone()[0]
