"""The door's state machine, on gpiozero's MockFactory pins with a fake clock.

MockPin calls input callbacks synchronously from drive_low()/drive_high(), so opening the door
in a test runs the door's handler before the next line; time only moves when the test advances
the fake clock and calls tick(). Only the LED and buzzer patterns run on threads: those
assertions wait for the pin, with a deadline.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
from gpiozero.pins.mock import MockFactory

from appliance.door.controller import Alarm, Door, DoorEvent, DoorState
from appliance.door.devices import Buzzer, DoorContact, ExitButton, Lock, StatusLeds

LOCK, CONTACT, EXIT, GREEN, RED, BUZZER = 17, 27, 22, 5, 6, 13


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Rig:
    """A door on mock pins, the hands that open it, and what it reported."""

    def __init__(self, *, feedback: bool = True, **door_kwargs) -> None:
        self.factory = MockFactory()
        self.clock = FakeClock()
        self.events: list[DoorEvent] = []
        f = self.factory
        self.lock = Lock(LOCK, pin_factory=f)
        self.contact = DoorContact(CONTACT, pin_factory=f)
        f.pin(CONTACT).drive_low()  # the door starts closed
        self.exit_button = ExitButton(EXIT, pin_factory=f)
        self.leds = StatusLeds(GREEN, RED, pin_factory=f)
        self.buzzer = Buzzer(BUZZER, pin_factory=f)
        door_kwargs.setdefault("on_event", self.events.append)
        self.door = Door(self.lock, self.contact, self.exit_button,
                         self.leds if feedback else None, self.buzzer if feedback else None,
                         clock=self.clock, **door_kwargs)

    def pin(self, number: int):
        return self.factory.pin(number)

    def open_door(self) -> None:
        self.pin(CONTACT).drive_high()

    def close_door(self) -> None:
        self.pin(CONTACT).drive_low()

    def press_exit(self) -> None:
        self.pin(EXIT).drive_low()
        self.pin(EXIT).drive_high()

    def later(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.door.tick()

    @property
    def relay_unlocked(self) -> bool:
        # Active-high strike (the default): high = energized = unlocked.
        return bool(self.pin(LOCK).state)

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]

    def take(self) -> list[tuple[str, str]]:
        out = [(e.kind, e.detail) for e in self.events]
        self.events.clear()
        return out


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = Rig()
    yield r
    r.door.close()


def wait_until(predicate: Callable[[], bool], timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


def test_starts_locked_and_closed(rig: Rig) -> None:
    assert rig.door.state is DoorState.LOCKED
    assert rig.door.is_locked and not rig.door.is_open
    assert not rig.relay_unlocked
    assert rig.door.alarms == frozenset()
    assert rig.events == []


def test_grant_pulses_and_relocks_on_timeout(rig: Rig) -> None:
    rig.door.grant()
    assert rig.door.state is DoorState.UNLOCKED
    assert rig.relay_unlocked
    assert rig.take() == [("unlocked", "badge")]
    rig.later(4.9)
    assert rig.door.state is DoorState.UNLOCKED
    assert rig.events == []
    rig.later(0.1)
    assert rig.door.state is DoorState.LOCKED
    assert not rig.relay_unlocked
    assert rig.take() == [("relocked", "timeout")]
    rig.later(10)
    assert rig.events == []


def test_events_carry_the_clock(rig: Rig) -> None:
    rig.door.grant("remote")
    rig.later(5)
    assert [(e.kind, e.at, e.detail) for e in rig.events] == [
        ("unlocked", 1000.0, "remote"),
        ("relocked", 1005.0, "timeout"),
    ]


def test_relocks_as_soon_as_the_door_closes_after_opening(rig: Rig) -> None:
    rig.door.grant()
    rig.later(1)
    rig.open_door()
    assert rig.door.state is DoorState.OPEN
    assert rig.relay_unlocked
    rig.later(1)
    rig.close_door()  # no tick needed
    assert rig.door.state is DoorState.LOCKED
    assert not rig.relay_unlocked
    assert rig.take() == [
        ("unlocked", "badge"), ("opened", ""), ("closed", ""), ("relocked", "closed"),
    ]
    rig.later(10)
    assert rig.events == []
    assert rig.door.alarms == frozenset()


def test_without_relock_on_close_the_pulse_runs_its_time() -> None:
    r = Rig(relock_on_close=False)
    try:
        r.door.grant()
        r.open_door()
        r.close_door()
        assert r.door.state is DoorState.UNLOCKED
        r.later(5)
        assert r.door.state is DoorState.LOCKED
        assert r.kinds() == ["unlocked", "opened", "closed", "relocked"]
    finally:
        r.door.close()


def test_pulse_ending_while_open_relocks_and_stays_open(rig: Rig) -> None:
    rig.door.grant()
    rig.open_door()
    rig.later(5)
    assert not rig.relay_unlocked  # the strike latches when the door closes
    assert rig.door.is_locked
    assert rig.door.state is DoorState.OPEN
    assert rig.door.alarms == frozenset()
    rig.close_door()
    assert rig.door.state is DoorState.LOCKED
    assert rig.take() == [
        ("unlocked", "badge"), ("opened", ""), ("relocked", "timeout"), ("closed", ""),
    ]


def test_held_open_alarm_after_the_configured_time_and_cleared_on_close() -> None:
    r = Rig(held_open_seconds=30)
    try:
        r.door.grant()
        r.open_door()
        r.later(29.9)
        assert r.door.alarms == frozenset()
        assert r.door.state is DoorState.OPEN
        r.later(0.1)
        assert r.door.alarms == {Alarm.HELD_OPEN}
        assert r.door.state is DoorState.HELD_OPEN
        r.later(100)  # raised once
        assert r.kinds().count("alarm") == 1
        assert wait_until(lambda: r.pin(RED).state)
        assert wait_until(lambda: r.pin(BUZZER).state)
        r.close_door()
        assert r.door.alarms == frozenset()
        assert r.door.state is DoorState.LOCKED
        assert r.take() == [
            ("unlocked", "badge"), ("opened", ""), ("relocked", "timeout"),
            ("alarm", "held_open"), ("closed", ""), ("alarm_cleared", "held_open"),
        ]
        assert not r.pin(RED).state and not r.pin(BUZZER).state
    finally:
        r.door.close()


def test_held_open_timer_restarts_with_each_opening() -> None:
    r = Rig(held_open_seconds=30)
    try:
        r.door.grant()
        r.open_door()
        r.later(20)
        r.close_door()
        r.door.grant()
        r.open_door()
        r.later(20)
        assert r.door.alarms == frozenset()
    finally:
        r.door.close()


def test_forced_open_when_opened_without_a_grant(rig: Rig) -> None:
    rig.open_door()
    assert rig.door.alarms == {Alarm.FORCED_OPEN}
    assert rig.door.state is DoorState.OPEN
    assert rig.take() == [("opened", ""), ("alarm", "forced_open")]
    assert wait_until(lambda: rig.pin(RED).state)
    assert wait_until(lambda: rig.pin(BUZZER).state)
    rig.close_door()
    assert rig.door.alarms == frozenset()
    assert rig.door.state is DoorState.LOCKED
    assert rig.take() == [("closed", ""), ("alarm_cleared", "forced_open")]
    assert not rig.pin(RED).state and not rig.pin(BUZZER).state


def test_forced_open_after_the_pulse_has_ended(rig: Rig) -> None:
    rig.door.grant()
    rig.later(5)
    rig.open_door()
    assert rig.door.alarms == {Alarm.FORCED_OPEN}


def test_forced_and_held_open_both_clear_on_close() -> None:
    r = Rig(held_open_seconds=10)
    try:
        r.open_door()
        r.later(10)
        assert r.door.alarms == {Alarm.FORCED_OPEN, Alarm.HELD_OPEN}
        assert r.door.state is DoorState.HELD_OPEN
        r.close_door()
        assert r.door.alarms == frozenset()
        assert sorted(e.detail for e in r.events if e.kind == "alarm_cleared") == [
            "forced_open", "held_open",
        ]
    finally:
        r.door.close()


def test_exit_button_opens_and_suppresses_the_forced_alarm(rig: Rig) -> None:
    rig.press_exit()
    assert rig.door.state is DoorState.UNLOCKED
    assert rig.relay_unlocked
    rig.later(1)
    rig.open_door()
    rig.close_door()
    assert rig.door.alarms == frozenset()
    assert rig.take() == [
        ("exit_request", ""), ("unlocked", "exit"), ("opened", ""), ("closed", ""),
        ("relocked", "closed"),
    ]


def test_exit_press_excuses_a_handle_opening_after_the_relock(rig: Rig) -> None:
    rig.press_exit()
    rig.open_door()
    rig.close_door()  # relocked
    rig.later(2)
    rig.open_door()  # opened again from inside, by the handle
    assert rig.door.alarms == frozenset()
    rig.close_door()
    rig.later(3.1)  # now more than unlock_seconds after the press
    rig.open_door()
    assert rig.door.alarms == {Alarm.FORCED_OPEN}


def test_a_badge_grant_does_not_excuse_an_opening_after_the_relock(rig: Rig) -> None:
    rig.door.grant()
    rig.open_door()
    rig.close_door()
    rig.later(1)
    rig.open_door()
    assert rig.door.alarms == {Alarm.FORCED_OPEN}


def test_grant_during_unlock_extends_the_pulse(rig: Rig) -> None:
    rig.door.grant()
    rig.later(4)
    rig.door.grant("remote")
    rig.later(4)  # 8 s after the first grant, 4 after the second
    assert rig.door.state is DoorState.UNLOCKED
    rig.later(0.9)
    assert rig.door.state is DoorState.UNLOCKED
    rig.later(0.1)
    assert rig.door.state is DoorState.LOCKED
    assert rig.take() == [("unlocked", "badge"), ("unlocked", "remote"), ("relocked", "timeout")]


def test_grant_while_open_relocks_when_the_door_closes(rig: Rig) -> None:
    rig.open_door()
    rig.close_door()
    rig.take()
    rig.door.grant()
    rig.open_door()
    rig.later(5)
    rig.door.grant()  # someone badges while the door stands open
    assert rig.relay_unlocked
    rig.close_door()
    assert rig.door.state is DoorState.LOCKED


def test_deny_changes_nothing_but_feedback(rig: Rig) -> None:
    red = rig.pin(RED)
    buzzer = rig.pin(BUZZER)
    red.clear_states()
    buzzer.clear_states()
    rig.door.deny()
    assert rig.door.state is DoorState.LOCKED
    assert not rig.relay_unlocked
    assert rig.take() == [("denied", "")]
    assert wait_until(lambda: [s.state for s in red.states] == [False] + [True, False] * 3)
    assert wait_until(lambda: [s.state for s in buzzer.states] == [False] + [True, False] * 2)
    assert not rig.pin(GREEN).state


def test_grant_lights_green_and_beeps(rig: Rig) -> None:
    buzzer = rig.pin(BUZZER)
    buzzer.clear_states()
    rig.door.grant()
    assert wait_until(lambda: rig.pin(GREEN).state)
    assert wait_until(lambda: [s.state for s in buzzer.states] == [False, True, False])
    assert not rig.pin(RED).state


def test_alarm_feedback_is_not_interrupted_by_a_denial(rig: Rig) -> None:
    rig.open_door()
    red = rig.pin(RED)
    assert wait_until(lambda: red.state)
    rig.door.deny()
    # Still blinking past the denial pattern's three blinks (1.2 s).
    red.clear_states()
    assert wait_until(lambda: [s.state for s in red.states].count(True) >= 4, timeout=3)
    assert rig.door.alarms == {Alarm.FORCED_OPEN}


def test_door_open_at_start_is_not_forced() -> None:
    factory = MockFactory()
    clock = FakeClock()
    events: list[DoorEvent] = []
    contact = DoorContact(CONTACT, pin_factory=factory)  # pulled up: open
    door = Door(Lock(LOCK, pin_factory=factory), contact, None, None, None,
                held_open_seconds=60, clock=clock, on_event=events.append)
    try:
        assert door.state is DoorState.OPEN
        assert door.alarms == frozenset()
        clock.advance(60)
        door.tick()
        assert door.alarms == {Alarm.HELD_OPEN}
        factory.pin(CONTACT).drive_low()
        assert door.state is DoorState.LOCKED
        assert [e.kind for e in events] == ["alarm", "closed", "alarm_cleared"]
    finally:
        door.close()


def test_works_without_exit_button_leds_or_buzzer() -> None:
    factory = MockFactory()
    clock = FakeClock()
    contact = DoorContact(CONTACT, pin_factory=factory)
    factory.pin(CONTACT).drive_low()
    with Door(Lock(LOCK, pin_factory=factory), contact, clock=clock) as door:
        door.grant()
        door.deny()
        factory.pin(CONTACT).drive_high()
        factory.pin(CONTACT).drive_low()
        assert door.state is DoorState.LOCKED
        factory.pin(CONTACT).drive_high()
        assert door.alarms == {Alarm.FORCED_OPEN}
    assert door.closed


def test_close_relocks_and_releases_the_devices(rig: Rig) -> None:
    rig.door.grant()
    rig.take()
    rig.door.close()
    assert not rig.relay_unlocked
    assert rig.take() == [("relocked", "close")]
    for device in (rig.lock, rig.contact, rig.exit_button, rig.leds, rig.buzzer):
        assert device.closed
    # Released: the pins can be claimed again, and the door no longer reacts.
    lock = Lock(LOCK, pin_factory=rig.factory)
    contact = DoorContact(CONTACT, pin_factory=rig.factory)
    rig.pin(CONTACT).drive_high()
    rig.door.tick()
    assert rig.events == []
    with pytest.raises(RuntimeError):
        rig.door.grant()
    rig.door.close()  # idempotent
    lock.close()
    contact.close()


def test_on_event_runs_outside_the_state_lock() -> None:
    seen: list[bool] = []
    r: Rig

    def on_event(event: DoorEvent) -> None:
        # Another thread can read the door while the handler runs: the lock is not held.
        t = threading.Thread(target=lambda: seen.append(r.door.state is not None))
        t.start()
        t.join(timeout=1)
        seen.append(not t.is_alive())

    r = Rig(on_event=on_event)
    try:
        r.door.grant()
        r.open_door()
        assert seen and all(seen)
    finally:
        r.door.close()


def test_a_failing_on_event_does_not_break_the_door(caplog: pytest.LogCaptureFixture) -> None:
    def on_event(event: DoorEvent) -> None:
        raise OSError("disk full")

    r = Rig(on_event=on_event)
    try:
        r.door.grant()
        r.later(5)
        assert r.door.state is DoorState.LOCKED
        assert "disk full" in caplog.text
    finally:
        r.door.close()


def test_on_event_may_call_back_into_the_door_and_order_is_kept() -> None:
    events: list[tuple[str, str]] = []
    r: Rig

    def on_event(event: DoorEvent) -> None:
        events.append((event.kind, event.detail))
        if event.kind == "denied":
            r.door.grant("remote")  # e.g. an admin overriding from the panel

    r = Rig(on_event=on_event)
    try:
        r.door.deny()
        r.later(0.1)
        assert events == [("denied", ""), ("unlocked", "remote")]
        assert r.door.state is DoorState.UNLOCKED
    finally:
        r.door.close()


def test_concurrent_callers_keep_the_door_consistent() -> None:
    """Badges, ticks and the contact's thread all at once; every event is delivered once."""
    events: list[DoorEvent] = []
    lock = threading.Lock()

    def on_event(event: DoorEvent) -> None:
        with lock:
            events.append(event)

    # Without LEDs and buzzer: restarting their blink threads would dominate the run.
    r = Rig(on_event=on_event, held_open_seconds=1000, feedback=False)
    stop = threading.Event()

    def badges() -> None:
        while not stop.wait(0.0005):
            r.door.grant()

    def ticks() -> None:
        while not stop.wait(0.0005):
            r.later(0.5)

    threads = [threading.Thread(target=badges), threading.Thread(target=ticks)]
    try:
        for t in threads:
            t.start()
        for _ in range(200):
            r.open_door()
            r.close_door()
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=5)
    assert r.door.state in (DoorState.LOCKED, DoorState.UNLOCKED)
    kinds = [e.kind for e in events]
    assert kinds.count("opened") == kinds.count("closed") == 200
    r.door.close()
    assert r.door.is_locked


def test_rejects_nonsense_times(rig: Rig) -> None:
    with pytest.raises(ValueError, match="unlock_seconds"):
        Door(rig.lock, rig.contact, unlock_seconds=0)
