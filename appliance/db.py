"""SQLite storage: one WAL database under the state directory, versioned migrations.

Each service writes its own tables (the door: access_events and the badges it
enrolls; the web service: members, admins, badge revocations). Concurrency is
SQLite's: WAL lets the panel read while the door writes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Each entry migrates from version i to i+1. Never edit a released entry: add one.
MIGRATIONS: list[str] = [
    # 1: members, badges, access log, admins
    """
    CREATE TABLE members (
        id INTEGER PRIMARY KEY,
        number TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        email TEXT,
        phone TEXT,
        role TEXT NOT NULL DEFAULT 'member' CHECK (role IN ('member', 'admin')),
        plan TEXT,
        valid_from TEXT,
        valid_until TEXT,
        suspended INTEGER NOT NULL DEFAULT 0,
        suspended_reason TEXT,
        active INTEGER NOT NULL DEFAULT 1,
        notes TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX members_name ON members (name COLLATE NOCASE);

    CREATE TABLE badges (
        id INTEGER PRIMARY KEY,
        member_id INTEGER NOT NULL REFERENCES members (id),
        uid_hash TEXT NOT NULL,
        ref TEXT NOT NULL UNIQUE,
        mode TEXT NOT NULL CHECK (mode IN ('token', 'uid-only')),
        token_hash TEXT,
        label TEXT,
        enrolled_at REAL NOT NULL,
        enrolled_by TEXT,
        revoked_at REAL,
        revoked_by TEXT
    );
    CREATE UNIQUE INDEX badges_live_uid ON badges (uid_hash) WHERE revoked_at IS NULL;
    CREATE INDEX badges_uid ON badges (uid_hash);
    CREATE INDEX badges_member ON badges (member_id);

    CREATE TABLE access_events (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        kind TEXT NOT NULL,
        result TEXT NOT NULL CHECK (result IN ('granted', 'denied', 'info', 'alarm')),
        reason TEXT NOT NULL,
        badge_id INTEGER,
        badge_ref TEXT,
        member_id INTEGER,
        member_name TEXT,
        actor TEXT,
        detail TEXT
    );
    CREATE INDEX access_events_at ON access_events (at);
    CREATE INDEX access_events_member ON access_events (member_id, at);

    CREATE TABLE admins (
        id INTEGER PRIMARY KEY,
        username TEXT NOT NULL UNIQUE COLLATE NOCASE,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL DEFAULT 'admin' CHECK (role IN ('admin', 'staff')),
        display_name TEXT,
        language TEXT NOT NULL DEFAULT 'fr',
        created_at REAL NOT NULL,
        last_login_at REAL
    );
    """,
    # 2: line monitor (the link service's tables)
    """
    SELECT 1;
    """,
    # 3: Wi-Fi gateway (the gateway service's tables)
    """
    SELECT 1;
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)


class SchemaTooNew(RuntimeError):
    """The database was written by a newer version of the appliance."""


def connect(
    path: Path | str, *, readonly: bool = False, timeout: float = 5.0
) -> sqlite3.Connection:
    """Open the database with the settings every service uses.

    WAL so readers never block the door's writes; synchronous=FULL so a commit
    that the door made before energizing the lock survives a power cut.
    """
    if readonly:
        conn = sqlite3.connect(
            f"file:{path}?mode=ro",
            uri=True,
            timeout=timeout,
            check_same_thread=False,
            isolation_level=None,
        )
    else:
        # Autocommit: every write is its own durable transaction unless
        # transaction() groups several.
        conn = sqlite3.connect(
            str(path), timeout=timeout, check_same_thread=False, isolation_level=None
        )
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
    if not readonly:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
    return conn


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to date; returns the version reached."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"database schema version {version} is newer than this software "
            f"({SCHEMA_VERSION}); update the appliance."
        )
    for target in range(version, SCHEMA_VERSION):
        conn.executescript(
            "BEGIN;\n" + MIGRATIONS[target] + f"\nPRAGMA user_version = {target + 1};\nCOMMIT;"
        )
    return SCHEMA_VERSION


def open_db(path: Path | str) -> sqlite3.Connection:
    """Open (creating if needed) and migrate the database."""
    conn = connect(path)
    migrate(conn)
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """An explicit write transaction (BEGIN IMMEDIATE: no late lock upgrade)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    else:
        conn.execute("COMMIT")
