"""The door: a lock, a contact, an exit button, LEDs and a buzzer composed into one device,
and the state machine that ties them together.

    LOCKED --grant--> UNLOCKED --contact opens--> OPEN --held_open_seconds--> HELD_OPEN
       ^                  |                         |                             |
       +---pulse ends-----+   <---contact closes----+-----------------------------+

The lock is unlocked for a pulse of `unlock_seconds`, cut short as soon as the door has opened
and closed again. If the pulse ends while the door is still open, the lock is relocked anyway
(a strike latches when the door closes) and the door stays OPEN. A door that opens with no
pulse running, and no exit-button press in the last `unlock_seconds`, raises a forced-open
alarm. Both alarms clear when the door closes.

Time only moves in `Door.tick()`, which the door service calls every poll (~50 ms) with the
injected clock; tests pass a fake clock and call `tick()` themselves.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from appliance.door.devices import Buzzer, DoorContact, ExitButton, Lock, StatusLeds

log = logging.getLogger(__name__)


class DoorState(StrEnum):
    LOCKED = "locked"
    UNLOCKED = "unlocked"
    OPEN = "open"
    HELD_OPEN = "held_open"


class Alarm(StrEnum):
    HELD_OPEN = "held_open"
    FORCED_OPEN = "forced_open"


@dataclass(frozen=True)
class DoorEvent:
    """Something that happened at the door.

    kind is one of "unlocked" (detail: the grant's source), "opened", "closed", "relocked"
    (detail: "timeout", "closed" or "close"), "alarm" and "alarm_cleared" (detail: the
    alarm), "exit_request" or "denied". `at` is the door's clock (monotonic seconds).
    """

    kind: str
    at: float
    detail: str = ""


class Door:
    """The door as one device.

    Owns its parts: :meth:`close` locks the door and closes every part. The contact's and the
    exit button's callbacks (which gpiozero may run on its own thread) and the service's calls
    to :meth:`grant`, :meth:`deny` and :meth:`tick` are serialized by one reentrant lock.

    `on_event` is called for every event, in order, *after* the state lock is released, so a
    slow or failing logger never holds up the door (its exceptions are logged and dropped). When
    two threads produce events at once, the thread already delivering events delivers the
    other thread's too; `on_event` may call back into the door.
    """

    def __init__(
        self,
        lock: Lock,
        contact: DoorContact,
        exit_button: ExitButton | None = None,
        leds: StatusLeds | None = None,
        buzzer: Buzzer | None = None,
        *,
        unlock_seconds: float = 5.0,
        held_open_seconds: float = 60.0,
        relock_on_close: bool = True,
        clock: Callable[[], float] = time.monotonic,
        on_event: Callable[[DoorEvent], None] | None = None,
    ) -> None:
        if unlock_seconds <= 0:
            raise ValueError(f"unlock_seconds must be positive, not {unlock_seconds!r}")
        if held_open_seconds <= 0:
            raise ValueError(f"held_open_seconds must be positive, not {held_open_seconds!r}")
        self.lock = lock
        self.contact = contact
        self.exit_button = exit_button
        self.leds = leds
        self.buzzer = buzzer
        self.unlock_seconds = float(unlock_seconds)
        self.held_open_seconds = float(held_open_seconds)
        self.relock_on_close = relock_on_close
        self._clock = clock
        self._on_event = on_event

        self._mutex = threading.RLock()
        self._pending: deque[DoorEvent] = deque()
        self._delivering = threading.Lock()
        self._closed = False
        self._unlock_until: float | None = None  # end of the running pulse, if any
        self._opened_in_pulse = False
        self._last_exit_at: float | None = None
        self._alarms: set[Alarm] = set()

        with self._mutex:
            lock.lock()
            # A door found open at start-up is not treated as forced: we did not see it open.
            # Its held-open time counts from now.
            self._open = contact.is_open
            self._open_since: float | None = clock() if self._open else None
            contact.when_opened = self._contact_opened
            contact.when_closed = self._contact_closed
            if exit_button is not None:
                exit_button.when_pressed = self._exit_pressed

    # -- what the service calls --------------------------------------------------------------

    def grant(self, source: str = "badge") -> None:
        """Unlock for `unlock_seconds` (or until the door has opened and closed), green LED and
        a beep. `source` is "badge", "remote" or "exit" and ends up in the event's detail; an
        "exit" grant also excuses the door opening from inside by its handle. A grant while the
        pulse runs restarts it from now."""
        with self._mutex:
            self._check_open()
            self._grant(source, self._clock())
        self._deliver()

    def deny(self) -> None:
        """Red LED and two beeps; nothing else changes. During an alarm the alarm's red LED and
        buzzer carry on and the denial is only reported as an event."""
        with self._mutex:
            self._check_open()
            self._emit("denied", self._clock())
            if not self._alarms:
                if self.leds is not None:
                    self.leds.denied()
                if self.buzzer is not None:
                    self.buzzer.denied()
        self._deliver()

    def tick(self) -> None:
        """Apply the transitions that depend on time: end of the pulse, held-open alarm."""
        with self._mutex:
            if self._closed:
                return
            now = self._clock()
            if self._unlock_until is not None and now >= self._unlock_until:
                self._relock(now, "timeout")
            if (
                self._open_since is not None
                and Alarm.HELD_OPEN not in self._alarms
                and now - self._open_since >= self.held_open_seconds
            ):
                self._raise(Alarm.HELD_OPEN, now)
        self._deliver()

    def close(self) -> None:
        """Lock the door, stop the feedback and close every part. Idempotent."""
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            if self._unlock_until is not None:
                self._relock(self._clock(), "close")
            self.lock.lock()
        self._deliver()
        # Outside the state lock: closing an input may wait for a callback thread that is
        # itself waiting for the state lock.
        for part in (self.exit_button, self.contact, self.leds, self.buzzer, self.lock):
            if part is None:
                continue
            try:
                part.close()
            except Exception:
                log.exception("closing %r failed", part)

    # -- what the door reports ---------------------------------------------------------------

    @property
    def state(self) -> DoorState:
        with self._mutex:
            if self._open:
                if Alarm.HELD_OPEN in self._alarms:
                    return DoorState.HELD_OPEN
                return DoorState.OPEN
            return DoorState.LOCKED if self._unlock_until is None else DoorState.UNLOCKED

    @property
    def alarms(self) -> frozenset[Alarm]:
        with self._mutex:
            return frozenset(self._alarms)

    @property
    def is_open(self) -> bool:
        with self._mutex:
            return self._open

    @property
    def is_locked(self) -> bool:
        """False only while a pulse runs (the lock device follows; it stays locked once the
        door is closed)."""
        with self._mutex:
            return self._unlock_until is None

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Door:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- device callbacks --------------------------------------------------------------------

    def _contact_opened(self) -> None:
        with self._mutex:
            if self._closed or self._open:
                return
            now = self._clock()
            self._open = True
            self._open_since = now
            pulse = self._unlock_until is not None
            if pulse:
                self._opened_in_pulse = True
            self._emit("opened", now)
            # Some doors open from inside by a mechanical handle, with the exit button only
            # there to tell us: a recent press excuses the opening even after a relock.
            exit_recent = (
                self._last_exit_at is not None
                and now - self._last_exit_at <= self.unlock_seconds
            )
            if not pulse and not exit_recent:
                self._raise(Alarm.FORCED_OPEN, now)
        self._deliver()

    def _contact_closed(self) -> None:
        with self._mutex:
            if self._closed or not self._open:
                return
            now = self._clock()
            self._open = False
            self._open_since = None
            self._emit("closed", now)
            if self._unlock_until is not None and self._opened_in_pulse and self.relock_on_close:
                self._relock(now, "closed")
            for alarm in sorted(self._alarms):
                self._emit("alarm_cleared", now, alarm.value)
            if self._alarms:
                self._alarms.clear()
                if self.leds is not None:
                    self.leds.clear()
                if self.buzzer is not None:
                    self.buzzer.clear()
        self._deliver()

    def _exit_pressed(self) -> None:
        with self._mutex:
            if self._closed:
                return
            now = self._clock()
            self._emit("exit_request", now)
            self._grant("exit", now)
        self._deliver()

    # -- helpers (call with the state lock held) ---------------------------------------------

    def _check_open(self) -> None:
        """Refuse to drive a closed door."""
        if self._closed:
            raise RuntimeError("the door is closed")

    def _grant(self, source: str, now: float) -> None:
        """Start or restart the pulse, with the feedback."""
        if source == "exit":
            self._last_exit_at = now
        self._unlock_until = now + self.unlock_seconds
        # A grant while the door stands open relocks when it closes, like any other.
        self._opened_in_pulse = self._open
        self.lock.unlock()
        self._emit("unlocked", now, source)
        if self.leds is not None:
            self.leds.granted()
        if self.buzzer is not None and not self._alarms:
            self.buzzer.granted()

    def _relock(self, now: float, why: str) -> None:
        """End the pulse."""
        self._unlock_until = None
        self._opened_in_pulse = False
        self.lock.lock()
        self._emit("relocked", now, why)

    def _raise(self, alarm: Alarm, now: float) -> None:
        """Raise an alarm; the LEDs and buzzer start on the first one."""
        first = not self._alarms
        self._alarms.add(alarm)
        self._emit("alarm", now, alarm.value)
        if first:
            if self.leds is not None:
                self.leds.alarm()
            if self.buzzer is not None:
                self.buzzer.alarm()

    def _emit(self, kind: str, at: float, detail: str = "") -> None:
        """Queue an event for delivery once the state lock is released."""
        self._pending.append(DoorEvent(kind, at, detail))

    # -- event delivery (without the state lock) ---------------------------------------------

    def _deliver(self) -> None:
        """Hand queued events to on_event, in order, unless another call is already doing so."""
        while self._pending:
            if not self._delivering.acquire(blocking=False):
                # Another thread, or this one further up the stack (on_event called back
                # into the door), is delivering and will pick these events up.
                return
            try:
                while True:
                    try:
                        event = self._pending.popleft()
                    except IndexError:
                        break
                    if self._on_event is None:
                        continue
                    try:
                        self._on_event(event)
                    except Exception:
                        log.exception("door event handler failed on %r", event)
            finally:
                self._delivering.release()
