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
    # 2: line monitor (the link service's tables). Times are UNIX seconds, rates bits
    # per second, RTTs seconds. Raw probes are kept 30 days, the rest 2 years.
    """
    CREATE TABLE link_probes (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('gateway', 'isp_hop', 'anchor', 'dns')),
        target TEXT NOT NULL,
        sent INTEGER NOT NULL,
        received INTEGER NOT NULL,
        rtt_s REAL
    );
    CREATE INDEX link_probes_at ON link_probes (at);

    CREATE TABLE link_hourly (
        hour REAL NOT NULL,
        role TEXT NOT NULL,
        target TEXT NOT NULL,
        sent INTEGER NOT NULL,
        received INTEGER NOT NULL,
        rtt_min_s REAL,
        rtt_avg_s REAL,
        rtt_max_s REAL,
        PRIMARY KEY (hour, role, target)
    );

    CREATE TABLE link_tests (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        trigger TEXT NOT NULL CHECK (trigger IN ('schedule', 'admin')),
        result TEXT NOT NULL
            CHECK (result IN ('ok', 'failed', 'skipped_busy', 'skipped_budget')),
        backend TEXT NOT NULL,
        server TEXT,
        download_bps REAL,
        upload_bps REAL,
        download_ratio REAL,
        upload_ratio REAL,
        idle_rtt_s REAL,
        loaded_rtt_s REAL,
        added_delay_s REAL,
        grade TEXT,
        bytes INTEGER NOT NULL DEFAULT 0,
        detail TEXT
    );
    CREATE INDEX link_tests_at ON link_tests (at);

    CREATE TABLE link_outages (
        id INTEGER PRIMARY KEY,
        cause TEXT NOT NULL CHECK (cause IN ('lan', 'access', 'upstream', 'dns')),
        start REAL NOT NULL,
        end REAL
    );
    CREATE INDEX link_outages_start ON link_outages (start);
    """,
    # 3: Wi-Fi gateway (the gateway service's tables)
    """
    -- One row per quota owner for the current local day: restored (nft `used`) after
    -- a restart, reset at midnight. owner_id is a member id, a voucher id or a
    -- guest_devices id according to owner_kind.
    CREATE TABLE wifi_quotas (
        owner_kind TEXT NOT NULL CHECK (owner_kind IN ('member', 'voucher', 'guest')),
        owner_id INTEGER NOT NULL,
        day TEXT NOT NULL,
        limit_bytes INTEGER NOT NULL,
        used_bytes INTEGER NOT NULL DEFAULT 0,
        base_bytes INTEGER NOT NULL DEFAULT 0,
        policy TEXT NOT NULL CHECK (policy IN ('block', 'throttle')),
        updated_at REAL NOT NULL,
        PRIMARY KEY (owner_kind, owner_id)
    );

    -- A guest's quota belongs to the device: one id per MAC seen at the portal.
    CREATE TABLE guest_devices (
        id INTEGER PRIMARY KEY,
        mac TEXT NOT NULL UNIQUE,
        first_seen REAL NOT NULL
    );

    CREATE TABLE vouchers (
        id INTEGER PRIMARY KEY,
        batch TEXT NOT NULL,
        code_hash TEXT NOT NULL UNIQUE,
        quota_bytes INTEGER NOT NULL,
        max_devices INTEGER NOT NULL DEFAULT 1,
        valid_until REAL,
        created_at REAL NOT NULL,
        created_by TEXT,
        first_used_at REAL,
        revoked_at REAL
    );

    -- The legal log (CPCE L34-1, kept one year): one row per device session; never
    -- URLs or content.
    CREATE TABLE wifi_sessions (
        id INTEGER PRIMARY KEY,
        owner_kind TEXT NOT NULL CHECK (owner_kind IN ('member', 'voucher', 'guest')),
        owner_id INTEGER NOT NULL,
        mac TEXT NOT NULL,
        ip TEXT NOT NULL,
        started_at REAL NOT NULL,
        ended_at REAL,
        end_reason TEXT,
        bytes_up INTEGER NOT NULL DEFAULT 0,
        bytes_down INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX wifi_sessions_started ON wifi_sessions (started_at);
    CREATE INDEX wifi_sessions_open ON wifi_sessions (mac) WHERE ended_at IS NULL;
    """,
    # 4: the captive portal's member login. A member signs in on the Wi-Fi with their
    # e-mail or member number and a Wi-Fi password or PIN, stored only as a hash.
    """
    ALTER TABLE members ADD COLUMN portal_secret_hash TEXT;
    ALTER TABLE members ADD COLUMN portal_secret_set_at REAL;
    CREATE INDEX members_email ON members (email COLLATE NOCASE);
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
