"""The door service end to end on emulated hardware: the real mfrc522 code path,
MockFactory pins, the real SQLite file and the real UNIX socket."""

from __future__ import annotations

import datetime as dt
import sqlite3
import urllib.request

import pytest

from appliance import accesslog, db, ipc, members
from appliance import config as config_mod
from appliance.door.hardware import build_hardware
from appliance.door.service import DoorService, load_site_secret
from appliance.hardware.mfrc522_emulator import MifareClassic1K
from appliance.runtime import init_state, serve_metrics
from tests.conftest import require_tool, write_site_config

UID7 = bytes.fromhex("04A1B2C3D4E5F6")
UID7_SAME_PREFIX = bytes.fromhex("04A1B2FFEEDDCC")
UID4 = bytes.fromhex("DEADBEEF")

# A Wednesday, 10:00 in Paris.
WEDNESDAY_10H = dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC).timestamp()
SUNDAY_10H = dt.datetime(2026, 11, 29, 9, 0, tzinfo=dt.UTC).timestamp()


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def make_service(tmp_path):
    started: list[DoorService] = []

    def make(*, wall: float = WEDNESDAY_10H, socket: bool = False, **door) -> DoorService:
        cfg = config_mod.load(write_site_config(tmp_path, **door))
        init_state(cfg)
        clock = FakeClock()
        service = DoorService(
            cfg, build_hardware(cfg), site_secret=load_site_secret(cfg.secret_path),
            clock=clock, wall=lambda: wall,
        )
        service.fake_clock = clock  # type: ignore[attr-defined]
        service.hw.reader.open()
        if socket:
            service.server = ipc.CommandServer(cfg.door_socket, service.handlers()).start()
        started.append(service)
        return service

    yield make
    for service in started:
        service.stop()


def add_member(service: DoorService, name: str = "Jeanne Dupont", plan: str = "resident",
               **extra) -> int:
    clean = members.validate_member({"name": name, "plan": plan, **extra}, service.config.plans)
    return members.add_member(service.conn, clean)


def events(service: DoorService) -> list[sqlite3.Row]:
    return list(reversed(accesslog.query(service.conn, limit=1000)))


def lock_pin(service: DoorService) -> bool:
    return bool(service.hw.pin(service.config.pins.lock).state)


def tap(service: DoorService, card: MifareClassic1K, polls: int = 5) -> None:
    """Present the card, poll until the service has acted, take the card away."""
    before = service.conn.execute("SELECT COALESCE(MAX(id), 0) FROM access_events").fetchone()[0]
    service.hw.chip.present(card)
    for _ in range(polls):
        service.step()
        last = service.conn.execute("SELECT COALESCE(MAX(id), 0) FROM access_events").fetchone()
        if last[0] > before:
            break
    service.hw.chip.remove(card)
    for _ in range(3):
        service.step()


def enroll(service: DoorService, member_id: int, card: MifareClassic1K) -> None:
    assert service.cmd_enroll({"member_id": member_id, "actor": "admin"})["ok"]
    tap(service, card)
    assert service.enrollment is None, "the card was not bound"


def test_enroll_then_tap_opens_the_door_token_mode(make_service):
    service = make_service()
    member_id = add_member(service)
    card = MifareClassic1K(UID7)
    enroll(service, member_id, card)
    (badge,) = members.member_badges(service.conn, member_id)
    assert badge["mode"] == "token"
    # The sector now answers only to the diversified key: the token is on the card.
    assert card.key(1, "A") != b"\xff" * 6
    assert not lock_pin(service)

    tap(service, card)
    assert lock_pin(service), "relay not energized after a granted badge"
    last = events(service)[-1]
    assert (last["result"], last["reason"], last["member_id"]) == (
        "granted", "granted_always", member_id)
    assert last["badge_ref"] == badge["ref"]
    # The pulse ends: locked again.
    service.fake_clock.now += service.config.door.unlock_seconds + 0.1
    service.step()
    assert not lock_pin(service)


def test_uid_clone_is_refused_in_token_mode(make_service):
    service = make_service()
    member_id = add_member(service)
    enroll(service, member_id, MifareClassic1K(UID7))
    tap(service, MifareClassic1K(UID7))  # same UID, blank sectors
    assert not lock_pin(service)
    assert events(service)[-1]["reason"] == "denied_bad_token"


def test_uid_only_mode_is_an_explicit_opt_in(make_service):
    service = make_service(card_mode="uid-only")
    member_id = add_member(service)
    card = MifareClassic1K(UID4)
    enroll(service, member_id, card)
    assert card.key(1, "A") == b"\xff" * 6  # nothing written to the card
    tap(service, MifareClassic1K(UID4))
    assert lock_pin(service)
    assert events(service)[-1]["reason"] == "granted_always"


def test_seven_byte_cards_sharing_a_prefix_are_distinct_badges(make_service):
    service = make_service()
    jeanne = add_member(service, "Jeanne")
    paul = add_member(service, "Paul")
    enroll(service, jeanne, MifareClassic1K(UID7))
    other = MifareClassic1K(UID7_SAME_PREFIX)
    tap(service, other)
    assert events(service)[-1]["reason"] == "denied_unknown_card"
    enroll(service, paul, other)
    tap(service, other)
    assert events(service)[-1]["member_id"] == paul


def test_schedule_decides_and_every_decision_is_logged(make_service):
    service = make_service(wall=SUNDAY_10H)
    member_id = add_member(service, plan="coworking")
    card = MifareClassic1K(UID4)
    enroll(service, member_id, card)
    tap(service, card)
    assert not lock_pin(service)
    assert events(service)[-1]["reason"] == "denied_outside_schedule"
    members.set_suspended(service.conn, member_id, True, "test")
    tap(service, card)
    assert events(service)[-1]["reason"] == "denied_suspended"


def test_card_held_on_the_reader_counts_once(make_service):
    service = make_service()
    member_id = add_member(service)
    card = MifareClassic1K(UID4)
    enroll(service, member_id, card)
    n = len(events(service))
    service.hw.chip.present(card)
    for _ in range(20):
        service.step()
    assert len(events(service)) == n + 1


def test_revoked_badge_is_refused(make_service):
    service = make_service()
    member_id = add_member(service)
    card = MifareClassic1K(UID4)
    enroll(service, member_id, card)
    (badge,) = members.member_badges(service.conn, member_id)
    members.revoke_badge(service.conn, badge["id"], "admin")
    tap(service, card)
    assert events(service)[-1]["reason"] == "denied_revoked"
    assert not lock_pin(service)


def test_unknown_cards_are_rate_limited(make_service):
    service = make_service()
    for i in range(12):
        tap(service, MifareClassic1K(bytes([0x10, 0x20, 0x30, i])))
        service.fake_clock.now += 1
    reasons = [e["reason"] for e in events(service)]
    assert reasons == ["denied_unknown_card"] * 5 + ["denied_rate_limited"]
    # After the lockout, unknown cards are logged again.
    service.fake_clock.now += service.config.door.unknown_card_lockout_seconds
    tap(service, MifareClassic1K(UID4))
    assert events(service)[-1]["reason"] == "denied_unknown_card"
    unknown = events(service)[0]
    assert unknown["badge_ref"].startswith("?") and "10203000" not in unknown["badge_ref"].lower()


def test_enrollment_expires(make_service):
    service = make_service()
    member_id = add_member(service)
    service.cmd_enroll({"member_id": member_id, "actor": "admin"})
    service.fake_clock.now += service.config.door.enrollment_seconds + 1
    service.step()
    assert service.enrollment is None
    tap(service, MifareClassic1K(UID4))
    assert events(service)[-1]["reason"] == "denied_unknown_card"


def test_remote_unlock_over_the_socket_is_logged_with_the_admin(make_service):
    service = make_service(socket=True)
    reply = ipc.call(service.config.door_socket, "unlock", actor="marie")
    assert reply["ok"] and lock_pin(service)
    last = events(service)[-1]
    assert (last["kind"], last["reason"], last["actor"]) == ("remote", "granted_remote", "marie")
    status = ipc.call(service.config.door_socket, "status")
    assert status["state"] == "unlocked" and status["locked"] is False
    with pytest.raises(ipc.IpcError, match="actor"):
        ipc.call(service.config.door_socket, "unlock")
    with pytest.raises(ipc.IpcError, match="unknown command"):
        ipc.call(service.config.door_socket, "format_disk")


def test_the_door_decides_while_the_database_cannot_be_written(make_service, monkeypatch):
    service = make_service()
    member_id = add_member(service)
    card = MifareClassic1K(UID4)
    enroll(service, member_id, card)
    real_record = accesslog.record

    def broken(*_a, **_k):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(accesslog, "record", broken)
    service.hw.chip.present(card)
    service.step()
    assert lock_pin(service), "the door must not depend on the database being writable"
    assert len(service._unsaved) == 1
    service.hw.chip.remove(card)
    monkeypatch.setattr(accesslog, "record", real_record)
    service.step()
    assert not service._unsaved
    assert events(service)[-1]["reason"] == "granted_always"


def test_reader_fault_recovers_and_metrics_pass_promtool(make_service):
    promtool = require_tool("promtool")
    service = make_service()
    member_id = add_member(service, "Secret Name", email="secret@example.org")
    card = MifareClassic1K(UID7)
    enroll(service, member_id, card)
    tap(service, card)
    tap(service, MifareClassic1K(UID7))  # clone: denied
    server = serve_metrics(service.registry, "127.0.0.1", 0)
    try:
        body = urllib.request.urlopen(
            f"http://127.0.0.1:{server.server_port}/metrics", timeout=5).read().decode()
    finally:
        server.shutdown()
    assert 'telecentre_door_decisions_total{reason="granted_always",result="granted"} 1.0' in body
    assert 'telecentre_door_decisions_total{reason="denied_bad_token",result="denied"} 1.0' in body
    assert "telecentre_door_reader_up 1.0" in body
    for personal in ("Secret", "secret@", UID7.hex(), UID7.hex().upper(), "B0000"):
        assert personal not in body
    import subprocess

    result = subprocess.run([promtool, "check", "metrics"], input=body, text=True,
                            capture_output=True, timeout=30)
    assert result.returncode == 0 and result.stdout.strip() == "" and result.stderr.strip() == "", (
        result.stdout + result.stderr)


def test_access_log_durable_across_reopen(make_service):
    service = make_service()
    add_member(service)
    tap(service, MifareClassic1K(UID4))
    path = service.config.db_path
    other = db.connect(path, readonly=True)
    assert other.execute("SELECT reason FROM access_events").fetchone()[0] == "denied_unknown_card"
    other.close()


def test_enrolling_a_card_that_already_belongs_to_someone_says_so(make_service):
    service = make_service()
    jeanne = add_member(service, "Jeanne")
    paul = add_member(service, "Paul")
    card = MifareClassic1K(UID4)
    enroll(service, jeanne, card)
    assert service.cmd_enroll({"member_id": paul, "actor": "admin"})["ok"]
    tap(service, card)
    reasons = [e["reason"] for e in events(service)[-2:]]
    assert reasons == ["enrollment_card_taken", "granted_always"]
    assert service.enrollment is not None  # still waiting for Paul's card
    assert members.member_badges(service.conn, paul) == []
