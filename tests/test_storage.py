from __future__ import annotations

import csv
import io
import sqlite3
import time

import pytest

from appliance import accesslog, admins, db, members


@pytest.fixture
def conn(tmp_path):
    c = db.open_db(tmp_path / "t.db")
    yield c
    c.close()


def test_wal_full_sync_and_version(tmp_path, conn):
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA user_version").fetchone()[0] == db.SCHEMA_VERSION
    # Migrating again is a no-op, and a newer schema is refused.
    assert db.migrate(conn) == db.SCHEMA_VERSION
    conn.execute(f"PRAGMA user_version = {db.SCHEMA_VERSION + 1}")
    with pytest.raises(db.SchemaTooNew):
        db.migrate(conn)


def test_event_visible_to_a_second_connection_once_recorded(tmp_path, conn):
    event_id = accesslog.record(conn, kind="badge", result="granted", reason="granted_schedule")
    other = db.connect(tmp_path / "t.db", readonly=True)
    assert other.execute("SELECT id FROM access_events").fetchone()[0] == event_id


def test_member_validation_messages_in_both_languages():
    with pytest.raises(members.InvalidInput) as err:
        members.validate_member(
            {"name": "", "email": "x@", "plan": "gold", "valid_from": "2026-13-01",
             "valid_until": "2026-01-01", "phone": "<script>"},
            {"coworking": object()},
        )
    errors = err.value.errors
    assert set(errors) == {"name", "email", "plan", "valid_from", "phone"}
    assert all(set(m) == {"fr", "en"} for m in errors.values())


def test_member_crud_and_badges(conn):
    plans = {"coworking": object()}
    clean = members.validate_member(
        {"name": "  Jeanne   Dupont ", "email": "jeanne@example.org", "plan": "coworking",
         "valid_until": "2027-01-31"}, plans)
    mid = members.add_member(conn, clean)
    row = members.get_member(conn, mid)
    assert row["name"] == "Jeanne Dupont" and row["number"] == "M0001"
    with pytest.raises(members.InvalidInput):
        members.add_member(conn, {**clean, "number": "M0001"})
    secret = b"s" * 32
    uid_h = members.uid_hash(secret, bytes.fromhex("04A1B2C3D4E5F6"))
    assert "04a1b2" not in uid_h  # the UID itself is never stored
    badge_id, ref = members.insert_badge(conn, member_id=mid, uid_h=uid_h, mode="token",
                                         token_h="t", by="admin")
    match = members.badge_for_uid(conn, uid_h)
    assert (match.badge_id, match.ref, match.revoked) == (badge_id, ref, False)
    assert match.holder.plan == "coworking" and str(match.holder.valid_until) == "2027-01-31"
    # Re-enrolling the same card revokes the old badge and keeps one live badge.
    badge2, _ = members.insert_badge(conn, member_id=mid, uid_h=uid_h, mode="token",
                                     token_h="t2", by="admin")
    assert members.badge_for_uid(conn, uid_h).badge_id == badge2
    assert members.revoke_badge(conn, badge2, "admin")
    assert members.badge_for_uid(conn, uid_h).revoked
    members.set_suspended(conn, mid, True, "cotisation impayée")
    assert members.badge_for_uid(conn, uid_h).holder.suspended
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO badges (member_id, uid_hash, ref, mode, enrolled_at)"
                     " VALUES (9999, 'x', 'B9', 'token', 0)")


def test_access_log_filter_csv_and_purge(conn):
    now = time.time()
    old = now - 91 * 86400
    accesslog.record(conn, at=old, kind="badge", result="granted", reason="granted_schedule",
                     member_name="Ancien")
    accesslog.record(conn, at=now, kind="badge", result="denied", reason="denied_unknown_card",
                     badge_ref="?abcd1234")
    accesslog.record(conn, at=now, kind="badge", result="granted", reason="granted_always",
                     member_name="=HYPERLINK(\"http://x\")")
    assert [r["result"] for r in accesslog.query(conn, accesslog.Filter(result="denied"))] == [
        "denied"]
    first = accesslog.query(conn)[-1]["id"]
    assert len(accesslog.query(conn, after_id=first)) == 2
    from zoneinfo import ZoneInfo
    text = "".join(accesslog.export_csv(conn, accesslog.Filter(since=now - 10),
                                        ZoneInfo("Europe/Paris")))
    rows = list(csv.reader(io.StringIO(text), delimiter=";"))
    assert rows[0][0] == "date" and len(rows) == 3
    assert rows[2][6].startswith("'=")  # formula neutralised
    assert accesslog.purge(conn, 90, now=now) == 1
    assert conn.execute("SELECT COUNT(*) FROM access_events").fetchone()[0] == 2


def test_admin_passwords_are_hashed(conn):
    admins.create_admin(conn, "marie", "correct horse battery")
    stored = conn.execute("SELECT password_hash FROM admins").fetchone()[0]
    assert stored.startswith("scrypt:") and "correct" not in stored
    assert admins.authenticate(conn, "marie", "correct horse battery")["username"] == "marie"
    assert admins.authenticate(conn, "marie", "wrong password!") is None
    assert admins.authenticate(conn, "nobody", "correct horse battery") is None
    with pytest.raises(admins.AccountError):
        admins.create_admin(conn, "bob", "short")
    with pytest.raises(admins.AccountError):
        admins.create_admin(conn, "marie", "another long one")
    assert len(admins.generate_password()) == 19
