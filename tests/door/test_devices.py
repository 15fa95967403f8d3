"""The door's GPIO devices, on gpiozero's MockFactory pins.

MockPin runs input callbacks synchronously inside drive_low()/drive_high(), so the input tests
need no waiting. LED and buzzer patterns run on gpiozero's blink threads: those tests wait for
the pin to get where it should, with a deadline.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator

import pytest
from gpiozero.pins.mock import MockFactory

from appliance.door.devices import (
    Buzzer,
    DoorContact,
    ExitButton,
    Lock,
    StatusLeds,
    make_pin_factory,
)

LOCK, CONTACT, EXIT, GREEN, RED, BUZZER = 17, 27, 22, 5, 6, 13
WIRINGS = [
    pytest.param(True, False, False, id="active-high-strike"),
    pytest.param(True, True, True, id="active-high-maglock"),
    pytest.param(False, False, True, id="active-low-strike"),
    pytest.param(False, True, False, id="active-low-maglock"),
]


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    f = MockFactory()
    yield f
    f.reset()


def wait_until(predicate: Callable[[], bool], timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


def levels(pin) -> list[bool]:
    return [bool(s.state) for s in pin.states]


# -- Lock ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("relay_active_high", "fail_safe", "locked"), WIRINGS)
def test_locked_pin_level(relay_active_high: bool, fail_safe: bool, locked: bool) -> None:
    assert Lock.locked_pin_level(relay_active_high, fail_safe) is locked


@pytest.mark.parametrize(("relay_active_high", "fail_safe", "locked"), WIRINGS)
@pytest.mark.parametrize("level_before", [False, True], ids=["low-before", "high-before"])
def test_lock_is_driven_locked_from_construction_without_a_glitch(
    factory: MockFactory, relay_active_high: bool, fail_safe: bool, locked: bool,
    level_before: bool,
) -> None:
    pin = factory.pin(LOCK)
    # Whatever level the line floated at before the service took it...
    pin.drive_high() if level_before else pin.drive_low()
    pin.clear_states()

    lock = Lock(LOCK, relay_active_high=relay_active_high, fail_safe=fail_safe,
                pin_factory=factory)

    # ...the first level it is driven to is the locked one, and nothing else happens.
    assert pin.function == "output"
    expected = [level_before] if level_before == locked else [level_before, locked]
    assert levels(pin) == expected
    assert lock.is_locked
    assert lock.locked_level is locked
    assert lock.value == 0
    lock.close()


@pytest.mark.parametrize(("relay_active_high", "fail_safe", "locked"), WIRINGS)
def test_lock_and_unlock_drive_the_right_levels(
    factory: MockFactory, relay_active_high: bool, fail_safe: bool, locked: bool
) -> None:
    pin = factory.pin(LOCK)
    lock = Lock(LOCK, relay_active_high=relay_active_high, fail_safe=fail_safe,
                pin_factory=factory)
    lock.unlock()
    assert pin.state is (not locked)
    assert not lock.is_locked
    # Energized while unlocked for a strike, while locked for a maglock.
    energized = pin.state == relay_active_high
    assert energized is (not fail_safe)
    lock.lock()
    assert pin.state is locked
    assert lock.is_locked
    lock.close()


@pytest.mark.parametrize(("relay_active_high", "fail_safe", "locked"), WIRINGS)
def test_close_relocks_and_keeps_the_line_driven(
    factory: MockFactory, relay_active_high: bool, fail_safe: bool, locked: bool
) -> None:
    pin = factory.pin(LOCK)
    lock = Lock(LOCK, relay_active_high=relay_active_high, fail_safe=fail_safe,
                pin_factory=factory)
    lock.unlock()
    lock.close()
    assert lock.closed
    assert pin.state is locked
    # Not turned back into a floating input (which would release a maglock).
    assert pin.function == "output"
    lock.close()  # idempotent

    # The pin is released: a new Lock takes it without moving the line.
    pin.clear_states()
    again = Lock(LOCK, relay_active_high=relay_active_high, fail_safe=fail_safe,
                 pin_factory=factory)
    assert levels(pin) == [locked]
    again.close()


def test_lock_repr_names_the_wiring(factory: MockFactory) -> None:
    lock = Lock(LOCK, fail_safe=True, pin_factory=factory)
    assert "fail-safe" in repr(lock) and "is_locked=True" in repr(lock)
    lock.close()
    assert "closed" in repr(lock)


# -- DoorContact, ExitButton -----------------------------------------------------------------


def test_door_contact_closed_is_low_with_the_pull_up(factory: MockFactory) -> None:
    contact = DoorContact(CONTACT, pin_factory=factory)
    pin = factory.pin(CONTACT)
    assert pin.pull == "up"
    assert contact.is_open  # pulled up: an open door, or a cut wire
    events: list[str] = []
    contact.when_closed = lambda: events.append("closed")
    contact.when_opened = lambda: events.append("opened")
    pin.drive_low()
    assert contact.is_closed and not contact.is_open
    pin.drive_high()
    assert contact.is_open
    assert events == ["closed", "opened"]
    contact.close()


def test_door_contact_with_pull_down_is_closed_high(factory: MockFactory) -> None:
    contact = DoorContact(CONTACT, pull_up=False, bounce_time=None, pin_factory=factory)
    pin = factory.pin(CONTACT)
    assert pin.pull == "down"
    assert contact.is_open
    pin.drive_high()
    assert contact.is_closed
    contact.close()


def test_door_contact_passes_bounce_time(factory: MockFactory) -> None:
    contact = DoorContact(CONTACT, bounce_time=0.02, pin_factory=factory)
    assert factory.pin(CONTACT).bounce == pytest.approx(0.02)
    contact.close()


def test_exit_button_fires_when_pressed(factory: MockFactory) -> None:
    button = ExitButton(EXIT, pin_factory=factory)
    pin = factory.pin(EXIT)
    assert pin.pull == "up"
    presses: list[int] = []
    button.when_pressed = lambda: presses.append(1)
    pin.drive_low()
    assert button.is_pressed
    pin.drive_high()
    assert presses == [1]
    button.close()


# -- StatusLeds, Buzzer ----------------------------------------------------------------------


def test_leds_start_off_and_show_a_grant(factory: MockFactory) -> None:
    leds = StatusLeds(GREEN, RED, pin_factory=factory)
    green, red = factory.pin(GREEN), factory.pin(RED)
    assert green.function == red.function == "output"
    assert not green.state and not red.state
    leds.granted(seconds=0.05)
    assert wait_until(lambda: levels(green)[-2:] == [True, False])
    assert not red.state
    leds.close()


def test_leds_blink_red_three_times_on_denial(factory: MockFactory) -> None:
    leds = StatusLeds(GREEN, RED, pin_factory=factory)
    red = factory.pin(RED)
    red.clear_states()
    leds.denied()
    assert wait_until(lambda: levels(red) == [False] + [True, False] * 3)
    time.sleep(0.3)
    assert levels(red).count(True) == 3
    assert not factory.pin(GREEN).state
    leds.close()


def test_leds_alarm_blinks_red_until_cleared_and_leaves_green_alone(
    factory: MockFactory,
) -> None:
    leds = StatusLeds(GREEN, RED, pin_factory=factory)
    red = factory.pin(RED)
    leds.alarm()
    assert wait_until(lambda: levels(red).count(True) >= 2)
    leds.granted()
    assert wait_until(lambda: factory.pin(GREEN).state)
    leds.clear()
    assert not red.state
    count = len(red.states)
    time.sleep(0.6)
    assert len(red.states) == count
    assert factory.pin(GREEN).state  # the grant's green carries on
    leds.off()
    assert not factory.pin(GREEN).state
    leds.close()


def test_buzzer_patterns(factory: MockFactory) -> None:
    buzzer = Buzzer(BUZZER, pin_factory=factory)
    pin = factory.pin(BUZZER)
    assert pin.function == "output" and not pin.state
    buzzer.granted()
    assert wait_until(lambda: levels(pin) == [False, True, False])
    pin.clear_states()
    buzzer.denied()
    assert wait_until(lambda: levels(pin) == [False, True, False, True, False])
    pin.clear_states()
    buzzer.alarm()
    assert wait_until(lambda: levels(pin).count(True) >= 2)
    buzzer.clear()
    assert not pin.state
    count = len(pin.states)
    time.sleep(0.6)
    assert len(pin.states) == count
    buzzer.close()


# -- make_pin_factory ------------------------------------------------------------------------


def test_make_pin_factory_mock() -> None:
    assert isinstance(make_pin_factory("mock"), MockFactory)


def test_make_pin_factory_rejects_unknown_kinds() -> None:
    with pytest.raises(ValueError, match="'mock', 'lgpio', 'native'"):
        make_pin_factory("rpigpio")


def test_make_pin_factory_lgpio_missing_says_to_install_the_pi_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "lgpio", None)  # import lgpio now raises ImportError
    monkeypatch.delitem(sys.modules, "gpiozero.pins.lgpio", raising=False)
    with pytest.raises(RuntimeError, match=r"`pi` extra"):
        make_pin_factory("lgpio")
