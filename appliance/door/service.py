"""The door service: reader loop, access decisions, the access log, commands, metrics.

It decides from what is already on the box (the SQLite file, the config), in
milliseconds, and never waits on the network or on the web service. The event
that opens the door is committed (synchronous=FULL) before the lock moves; if
the database cannot be written the door still decides and keeps the events in
memory until it can.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from appliance import accesslog, db, members
from appliance.config import Config
from appliance.door import cards
from appliance.door.controller import Door, DoorEvent
from appliance.door.hardware import DoorHardware
from appliance.door.policy import Decision, Reason, decide
from appliance.door.reader import CardRead
from appliance.ipc import CommandServer
from appliance.sdnotify import notify

log = logging.getLogger(__name__)


def load_site_secret(path: Path) -> bytes:
    """The site secret that keys card tokens and UID hashes (created by `telecentre init`)."""
    try:
        secret = path.read_bytes()
    except FileNotFoundError:
        raise RuntimeError(f"{path}: no site secret; run `telecentre init` first") from None
    if len(secret) < 32:
        raise RuntimeError(f"{path}: the site secret is too short (expected 32 bytes)")
    return secret


def create_site_secret(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secrets.token_bytes(32))


class DoorMetrics:
    """The door's Prometheus metrics: about the site, never about a person."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.decisions = Counter(
            "telecentre_door_decisions",
            "Access decisions by result and reason.",
            ["result", "reason"],
            registry=registry,
        )
        self.open = Gauge("telecentre_door_open", "1 while the door is open.", registry=registry)
        self.locked = Gauge(
            "telecentre_door_locked", "1 while the lock is locked.", registry=registry
        )
        self.alarms = Counter(
            "telecentre_door_alarms", "Door alarms raised, by kind.", ["kind"], registry=registry
        )
        self.alarm_active = Gauge(
            "telecentre_door_alarm_active",
            "1 while an alarm of this kind is active.",
            ["kind"],
            registry=registry,
        )
        self.reader_up = Gauge(
            "telecentre_door_reader_up", "1 while the badge reader answers.", registry=registry
        )
        self.reader_errors = Counter(
            "telecentre_door_reader_errors",
            "Reader errors (garbled transfers, CRC errors, chip not answering).",
            registry=registry,
        )
        self.decision_seconds = Histogram(
            "telecentre_door_decision_seconds",
            "Time from the card being read to the lock being driven.",
            buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0),
            registry=registry,
        )
        self.events_unsaved = Gauge(
            "telecentre_door_events_unsaved",
            "Access events waiting for the database to be writable.",
            registry=registry,
        )
        self.enrollments = Counter(
            "telecentre_door_enrollments", "Badges enrolled.", registry=registry
        )
        for kind in ("held_open", "forced_open"):
            self.alarm_active.labels(kind)
            self.alarms.labels(kind)


@dataclass
class Enrollment:
    member_id: int
    member_name: str
    actor: str
    expires_at: float


class UnknownCardLimiter:
    """After `limit` unknown cards in a minute, ignore unknown cards for `lockout` seconds."""

    def __init__(self, limit: int, lockout: float) -> None:
        self.limit = limit
        self.lockout = lockout
        self.recent: deque[float] = deque()
        self.until = 0.0

    def allow(self, now: float) -> tuple[bool, bool]:
        """(logged, just_tripped): whether to log this unknown tap, whether it tripped now."""
        if now < self.until:
            return False, False
        while self.recent and self.recent[0] <= now - 60:
            self.recent.popleft()
        self.recent.append(now)
        if len(self.recent) > self.limit:
            self.until = now + self.lockout
            self.recent.clear()
            return False, True
        return True, False


class DoorService:
    """Runs the door: one loop polls the reader and ticks the door's timers."""

    def __init__(
        self,
        config: Config,
        hardware: DoorHardware,
        *,
        site_secret: bytes,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.hw = hardware
        self.secret = site_secret
        self.clock = clock
        self.wall = wall
        self.registry = registry or CollectorRegistry()
        self.metrics = DoorMetrics(self.registry)
        self.conn = db.open_db(config.db_path)
        self._db_lock = threading.Lock()
        self._unsaved: deque[dict[str, Any]] = deque(maxlen=10000)
        self._state_lock = threading.RLock()
        self.enrollment: Enrollment | None = None
        self.last_enrolled: dict[str, Any] | None = None
        self.limiter = UnknownCardLimiter(
            config.door.unknown_card_limit, config.door.unknown_card_lockout_seconds
        )
        self.door = Door(
            hardware.lock,
            hardware.contact,
            hardware.exit_button,
            hardware.leds,
            hardware.buzzer,
            unlock_seconds=config.door.unlock_seconds,
            held_open_seconds=config.door.held_open_seconds,
            clock=clock,
            on_event=self._on_door_event,
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.server: CommandServer | None = None
        self.last_loop = clock()
        self.loops = 0
        self._last_watchdog = 0.0
        self._last_purge = 0.0
        self._pending_exit = False
        self._update_gauges()

    # --- lifecycle ------------------------------------------------------------------

    def start(self, *, socket: bool = True) -> DoorService:
        self.hw.reader.open()
        if socket:
            self.server = CommandServer(self.config.door_socket, self.handlers()).start()
        self._thread = threading.Thread(target=self.run, name="door-loop", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.server is not None:
            self.server.stop()
        self.door.close()
        self.hw.close()
        self._flush_unsaved()
        self.conn.close()

    def run(self) -> None:
        interval = self.config.reader.poll_interval
        while not self._stop.is_set():
            started = self.clock()
            try:
                self.step()
            except Exception:  # the loop must outlive any single bad read
                log.exception("door loop step failed")
            self.last_loop = self.clock()
            self.loops += 1
            self._stop.wait(max(0.0, interval - (self.last_loop - started)))

    def healthy(self) -> bool:
        """For the watchdog: the loop turns and the reader answers."""
        loop_ok = self.clock() - self.last_loop < max(2.0, 20 * self.config.reader.poll_interval)
        return loop_ok and self.hw.reader.reader_up

    def step(self) -> None:
        """One turn of the loop: timers, one reader poll, housekeeping."""
        self.door.tick()
        errors_before = self.hw.reader.errors
        card = self.hw.reader.poll()
        new_errors = self.hw.reader.errors - errors_before
        if new_errors > 0:
            self.metrics.reader_errors.inc(new_errors)
        self.metrics.reader_up.set(1 if self.hw.reader.reader_up else 0)
        if card is not None:
            try:
                self.on_card(card)
            finally:
                self.hw.reader.release()
        with self._state_lock:
            if self.enrollment and self.clock() >= self.enrollment.expires_at:
                self._log_event(
                    kind="enroll",
                    result="info",
                    reason="enrollment_expired",
                    member_id=self.enrollment.member_id,
                    member_name=self.enrollment.member_name,
                    actor=self.enrollment.actor,
                )
                self.enrollment = None
        if self._unsaved:
            self._flush_unsaved()
        now = self.wall()
        if now - self._last_purge > 3600:
            self._last_purge = now
            self._purge(now)
        if self.healthy() and self.clock() - self._last_watchdog >= 1.0:
            self._last_watchdog = self.clock()
            notify("WATCHDOG=1")

    # --- cards ----------------------------------------------------------------------

    def on_card(self, card: CardRead) -> Decision | None:
        """Decide for a card that has just been read, log it, then drive the door."""
        t0 = time.perf_counter()
        uid_h = members.uid_hash(self.secret, card.uid)
        with self._db_lock:
            match = members.badge_for_uid(self.conn, uid_h)
        with self._state_lock:
            enrolling = self.enrollment
        if enrolling is not None and (match is None or match.revoked):
            self._enroll(card, uid_h, enrolling)
            return None
        if enrolling is not None and match is not None:
            # Tell the admin waiting at the reader why nothing was bound; the card's
            # owner still gets their normal decision below.
            self._log_event(
                kind="enroll",
                result="info",
                reason="enrollment_card_taken",
                badge_id=match.badge_id,
                badge_ref=match.ref,
                member_id=match.holder.member_id,
                member_name=match.member_name,
                actor=enrolling.actor,
                detail="this card already belongs to a member; revoke it first",
            )

        if match is None:
            logged, tripped = self.limiter.allow(self.clock())
            if tripped:
                self._log_event(
                    kind="badge",
                    result="denied",
                    reason=Reason.DENIED_RATE_LIMITED,
                    detail="unknown cards ignored for "
                    f"{self.config.door.unknown_card_lockout_seconds:g} s",
                )
                self.metrics.decisions.labels("denied", Reason.DENIED_RATE_LIMITED).inc()
            if not logged:
                return None
            decision = Decision(False, Reason.DENIED_UNKNOWN_CARD)
            self._decided(decision, t0, badge_ref=members.unknown_ref(uid_h))
            return decision

        if match.revoked:
            decision = Decision(False, Reason.DENIED_REVOKED)
        elif not self._token_ok(card, match):
            decision = Decision(False, Reason.DENIED_BAD_TOKEN)
        else:
            decision = decide(
                match.holder,
                plans=self.config.plans,
                closures=self.config.closures,
                now=dt.datetime.fromtimestamp(self.wall(), dt.UTC),
                tz=self.config.tz,
            )
        self._decided(
            decision,
            t0,
            badge_id=match.badge_id,
            badge_ref=match.ref,
            member_id=match.holder.member_id,
            member_name=match.member_name,
        )
        return decision

    def _token_ok(self, card: CardRead, match: members.BadgeMatch) -> bool:
        if match.mode == "uid-only":
            # A badge enrolled without a token opens only while the site allows it.
            return self.config.door.card_mode == "uid-only"
        token = cards.read_token(self.hw.reader, card, self.secret)
        return token is not None and members.token_hash(token) == match.token_hash

    def _decided(self, decision: Decision, t0: float, **fields: Any) -> None:
        result = "granted" if decision.granted else "denied"
        # Durable first: a power cut must never lose a decision that opened the door.
        self._log_event(kind="badge", result=result, reason=decision.reason, **fields)
        if decision.granted:
            self.door.grant("badge")
        else:
            self.door.deny()
        self.metrics.decision_seconds.observe(time.perf_counter() - t0)
        self.metrics.decisions.labels(result, decision.reason).inc()

    def _enroll(self, card: CardRead, uid_h: str, enrolling: Enrollment) -> None:
        mode = self.config.door.card_mode
        token_h = None
        if mode == "token":
            token = secrets.token_bytes(16)
            if not cards.write_token(self.hw.reader, card, self.secret, token):
                # Keep the enrollment open: the member can tap again.
                self._log_event(
                    kind="enroll",
                    result="info",
                    reason="enrollment_write_failed",
                    member_id=enrolling.member_id,
                    member_name=enrolling.member_name,
                    actor=enrolling.actor,
                    detail="the card could not be written; tap it again",
                )
                self.door.deny()
                return
            token_h = members.token_hash(token)
        try:
            with self._db_lock:
                badge_id, ref = members.insert_badge(
                    self.conn,
                    member_id=enrolling.member_id,
                    uid_h=uid_h,
                    mode=mode,
                    token_h=token_h,
                    by=enrolling.actor,
                    now=self.wall(),
                )
        except sqlite3.Error:
            log.exception("enrollment could not be stored")
            self.door.deny()
            return
        with self._state_lock:
            self.enrollment = None
            self.last_enrolled = {
                "member_id": enrolling.member_id,
                "badge_ref": ref,
                "at": self.wall(),
            }
        self._log_event(
            kind="enroll",
            result="info",
            reason=Reason.ENROLLED,
            badge_id=badge_id,
            badge_ref=ref,
            member_id=enrolling.member_id,
            member_name=enrolling.member_name,
            actor=enrolling.actor,
        )
        self.metrics.enrollments.inc()
        self.hw.leds.granted()
        # Who enrolled it is in the access log; ordinary logs carry no names.
        log.info("badge %s enrolled for member #%d", ref, enrolling.member_id)

    # --- the access log -------------------------------------------------------------

    def _log_event(self, **fields: Any) -> None:
        fields.setdefault("at", self.wall())
        fields["reason"] = str(fields["reason"])
        try:
            with self._db_lock:
                accesslog.record(self.conn, **fields)
        except sqlite3.Error as exc:
            # The door goes on; the event waits in memory for the disk to come back.
            log.error("access event not saved yet (%s); kept in memory", exc)
            self._unsaved.append(fields)
            self.metrics.events_unsaved.set(len(self._unsaved))

    def _flush_unsaved(self) -> None:
        while self._unsaved:
            fields = self._unsaved[0]
            try:
                with self._db_lock:
                    accesslog.record(self.conn, **fields)
            except sqlite3.Error:
                return
            self._unsaved.popleft()
            self.metrics.events_unsaved.set(len(self._unsaved))

    def _purge(self, now: float) -> None:
        try:
            with self._db_lock:
                n = accesslog.purge(self.conn, self.config.access_log_days, now=now)
            if n:
                log.info(
                    "retention: deleted %d access events older than %d days",
                    n,
                    self.config.access_log_days,
                )
        except sqlite3.Error as exc:
            log.warning("retention purge failed: %s", exc)

    # --- the door's own events ------------------------------------------------------

    def _on_door_event(self, event: DoorEvent) -> None:
        kind = event.kind
        if kind == "alarm":
            self.metrics.alarms.labels(event.detail).inc()
            self._log_event(kind="alarm", result="alarm", reason=f"alarm_{event.detail}")
            log.warning("door alarm: %s", event.detail)
        elif kind == "alarm_cleared":
            self._log_event(kind="alarm", result="info", reason=f"alarm_cleared_{event.detail}")
        elif kind == "exit_request":
            self._log_event(kind="exit", result="granted", reason=Reason.GRANTED_EXIT)
            self.metrics.decisions.labels("granted", Reason.GRANTED_EXIT).inc()
        self._update_gauges()

    def _update_gauges(self) -> None:
        self.metrics.open.set(1 if self.door.is_open else 0)
        self.metrics.locked.set(1 if self.door.is_locked else 0)
        active = {str(a) for a in self.door.alarms}
        for kind in ("held_open", "forced_open"):
            self.metrics.alarm_active.labels(kind).set(1 if kind in active else 0)

    # --- commands over the UNIX socket ---------------------------------------------

    def handlers(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        handlers = {
            "status": self.cmd_status,
            "unlock": self.cmd_unlock,
            "enroll": self.cmd_enroll,
            "enroll_cancel": self.cmd_enroll_cancel,
        }
        if self.hw.emulated:
            handlers["emulate"] = self.cmd_emulate
        return handlers

    def cmd_status(self, _req: dict[str, Any]) -> dict[str, Any]:
        with self._state_lock:
            enrollment = None
            if self.enrollment is not None:
                enrollment = {
                    "member_id": self.enrollment.member_id,
                    "member_name": self.enrollment.member_name,
                    "expires_in": max(0.0, self.enrollment.expires_at - self.clock()),
                }
            last = self.last_enrolled
        return {
            "ok": True,
            "state": str(self.door.state),
            "locked": self.door.is_locked,
            "open": self.door.is_open,
            "alarms": sorted(str(a) for a in self.door.alarms),
            "reader_up": self.hw.reader.reader_up,
            "card_mode": self.config.door.card_mode,
            "emulated": self.hw.emulated,
            "enrollment": enrollment,
            "last_enrolled": last,
            "unsaved_events": len(self._unsaved),
        }

    def cmd_unlock(self, req: dict[str, Any]) -> dict[str, Any]:
        actor = _text(req.get("actor"), "actor")
        self._log_event(kind="remote", result="granted", reason=Reason.GRANTED_REMOTE, actor=actor)
        self.door.grant("remote")
        self.metrics.decisions.labels("granted", Reason.GRANTED_REMOTE).inc()
        log.info("remote unlock (the access log says by whom)")
        return {"ok": True}

    def cmd_enroll(self, req: dict[str, Any]) -> dict[str, Any]:
        actor = _text(req.get("actor"), "actor")
        member_id = req.get("member_id")
        if not isinstance(member_id, int):
            return {"ok": False, "error": "member_id: expected a member number"}
        with self._db_lock:
            member = members.get_member(self.conn, member_id)
        if member is None or not member["active"]:
            return {"ok": False, "error": f"no active member #{member_id}"}
        seconds = self.config.door.enrollment_seconds
        with self._state_lock:
            self.enrollment = Enrollment(member_id, member["name"], actor, self.clock() + seconds)
        self._log_event(
            kind="enroll",
            result="info",
            reason="enrollment_started",
            member_id=member_id,
            member_name=member["name"],
            actor=actor,
        )
        return {"ok": True, "expires_in": seconds}

    def cmd_enroll_cancel(self, _req: dict[str, Any]) -> dict[str, Any]:
        with self._state_lock:
            self.enrollment = None
        return {"ok": True}

    def cmd_emulate(self, req: dict[str, Any]) -> dict[str, Any]:
        """Drive the emulated hardware (demo and tests only)."""
        from appliance.hardware.mfrc522_emulator import MifareClassic1K

        action = req.get("action")
        pins = self.config.pins
        if action in ("tap", "clone", "present"):
            uid = _uid(req.get("uid"))
            with self.hw._field_lock:
                if action == "clone":
                    card = MifareClassic1K(uid)  # same UID, blank sectors
                else:
                    card = self.hw.cards.setdefault(uid.hex().upper(), MifareClassic1K(uid))
                self.hw.chip.present(card)
            if action != "present":
                hold = float(req.get("hold", 0.6))
                threading.Timer(hold, self._remove_card, args=(card,)).start()
            return {"ok": True}
        if action == "remove":
            self.hw.chip.remove()
            return {"ok": True}
        if action in ("open", "close"):
            pin = self.hw.pin(pins.door_contact)
            pin.drive_high() if action == "open" else pin.drive_low()
            return {"ok": True}
        if action == "exit":
            pin = self.hw.pin(pins.exit_button)
            pin.drive_low()
            threading.Timer(0.2, pin.drive_high).start()
            return {"ok": True}
        if action == "board":
            return {"ok": True, "pins": self.hw.board.levels() if self.hw.board else {}}
        return {
            "ok": False,
            "error": "action: expected tap, clone, present, remove, open, close, exit or board",
        }

    def _remove_card(self, card: Any) -> None:
        with self.hw._field_lock:
            self.hw.chip.remove(card)


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 80:
        raise ValueError(f"{name}: expected a short text")
    return value.strip()


def _uid(value: Any) -> bytes:
    """A card UID from hex text: 4, 7 or 10 bytes."""
    if not isinstance(value, str):
        raise ValueError("uid: expected hex text such as 04A1B2C3D4E5F6")
    text = value.replace(":", "").replace(" ", "")
    try:
        uid = bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"uid: {value!r} is not hexadecimal (expected e.g. 04A1B2C3)") from None
    if len(uid) not in (4, 7):
        raise ValueError(f"uid: {len(uid)} bytes; expected 4 or 7 (8 or 14 hex digits)")
    return uid
