"""The door's GPIO devices, named after what they are: a lock, a door contact, an exit button,
status LEDs and a buzzer.

They are thin gpiozero devices. Everything that decides *when* to lock or sound an alarm lives
in `appliance.door.controller`; this module only knows what each pin level means.
"""

from __future__ import annotations

from typing import Any

from gpiozero import LED, Button, CompositeDevice, DigitalInputDevice, OutputDevice
from gpiozero import Buzzer as _GpiozeroBuzzer
from gpiozero.pins import Factory

PIN_FACTORIES = ("mock", "lgpio", "native")

# Feedback patterns (seconds). Short enough never to hold up the next person at the door.
GRANTED_SECONDS = 2.0
BEEP_SECONDS = 0.1
DENIED_BLINK_SECONDS = 0.2
DENIED_BLINKS = 3
DENIED_BEEPS = 2
ALARM_BLINK_SECONDS = 0.25
ALARM_BEEP_SECONDS = 0.5


class Lock(OutputDevice):
    """The relay that drives the door's lock.

    Two independent choices decide which pin level keeps the door locked:

    * the lock: a *fail-secure* lock (electric strike, the default) is locked when unpowered,
      so energizing the relay unlocks it; a *fail-safe* lock (maglock, ``fail_safe=True``) is
      held shut by its power, so energizing the relay *locks* it and cutting power releases the
      door, which fire egress requires;
    * the relay board: active-high (the default) is energized by a high pin, active-low by a
      low pin (``relay_active_high=False``).

    :meth:`locked_pin_level` combines the two. The device's value is 1 while unlocked and 0
    while locked, whatever the wiring.

    At construction the pin is configured as an output directly at the locked level (gpiozero's
    ``initial_value``), never at the other level first, so opening the device cannot pulse the
    relay. What the pin does *before* the service starts (at boot) is the firmware's job: it
    sets the same level from ``config.txt`` using :attr:`locked_level`.

    :meth:`close` drives the locked level, releases the pin for other devices and leaves the
    line driven at that level. gpiozero would normally turn a closed output into an unpulled
    input, which de-energizes the relay: that releases a maglock, and on an active-low board
    leaves the relay to whatever the line floats to. Keeping it driven means a restart of the
    door service never opens the door. (If the process dies without closing, the line keeps its
    last level: that is what the relock guardian, `appliance.door.guardian`, is for.)
    """

    def __init__(
        self,
        pin: int | str,
        *,
        relay_active_high: bool = True,
        fail_safe: bool = False,
        pin_factory: Factory | None = None,
    ) -> None:
        self._relay_active_high = bool(relay_active_high)
        self._fail_safe = bool(fail_safe)
        self._locked_level = self.locked_pin_level(relay_active_high, fail_safe)
        # gpiozero's "active" (value 1) is unlocked: its active level is the unlocked one, and
        # initial_value=False configures the pin straight at the locked level.
        super().__init__(
            pin,
            active_high=not self._locked_level,
            initial_value=False,
            pin_factory=pin_factory,
        )

    @staticmethod
    def locked_pin_level(relay_active_high: bool, fail_safe: bool) -> bool:
        """The pin level (True = high) that keeps a door with this wiring locked."""
        energized_level = bool(relay_active_high)
        return energized_level if fail_safe else not energized_level

    @property
    def locked_level(self) -> bool:
        """The pin level meaning locked (True = high), for the firmware's boot config."""
        return self._locked_level

    @property
    def relay_active_high(self) -> bool:
        return self._relay_active_high

    @property
    def fail_safe(self) -> bool:
        return self._fail_safe

    @property
    def is_locked(self) -> bool:
        """True while the pin is at the locked level."""
        return not self.is_active

    def lock(self) -> None:
        """Drive the pin to the locked level."""
        self.off()

    def unlock(self) -> None:
        """Drive the pin to the unlocked level."""
        self.on()

    def __repr__(self) -> str:
        if self.closed:
            return f"<{type(self).__name__} closed>"
        return (
            f"<{type(self).__name__} on pin {self.pin!r}, "
            f"{'fail-safe' if self._fail_safe else 'fail-secure'}, "
            f"relay_active_high={self._relay_active_high}, is_locked={self.is_locked}>"
        )

    def close(self) -> None:
        pin = getattr(self, "_pin", None)
        if pin is None:
            super().close()
            return
        try:
            self.source = None
            pin.state = self._locked_level
        finally:
            # Release the reservation ourselves and forget the pin, so that gpiozero's close
            # does not reset the line to an input (see the class docstring).
            self.pin_factory.release_pins(self, pin.info.name)
            self._pin = None
            super().close()


class DoorContact(DigitalInputDevice):
    """The reed contact on the door frame.

    The contact is closed while the door is closed (the magnet in the door holds the reed).
    With the default internal pull-up and the contact wired to ground, a closed door reads
    low and an open door reads high; so a cut wire reads as an open door, never as a closed
    one. With ``pull_up=False`` (contact wired to 3V3 with a pull-down) closed reads high.

    ``bounce_time`` (seconds) filters the chatter of the reed as the door swings. The pin is an
    input at construction and on close: the contact is never driven.
    """

    def __init__(
        self,
        pin: int | str,
        *,
        pull_up: bool = True,
        bounce_time: float | None = 0.05,
        pin_factory: Factory | None = None,
    ) -> None:
        super().__init__(pin, pull_up=pull_up, bounce_time=bounce_time, pin_factory=pin_factory)

    @property
    def is_closed(self) -> bool:
        """True while the door is closed."""
        return bool(self.is_active)

    @property
    def is_open(self) -> bool:
        """True while the door is open (or the contact's wire is cut)."""
        return not self.is_active


DoorContact.when_closed = DoorContact.when_activated
DoorContact.when_opened = DoorContact.when_deactivated
DoorContact.wait_for_close = DoorContact.wait_for_active
DoorContact.wait_for_open = DoorContact.wait_for_inactive


class ExitButton(Button):
    """The request-to-exit button inside the door.

    A push button to ground with the internal pull-up by default (pressed reads low).
    ``when_pressed`` runs when it is pressed; the door unlocks for the person leaving and does
    not raise a forced-open alarm when the door then opens. The pin is an input throughout.
    """

    def __init__(
        self,
        pin: int | str,
        *,
        pull_up: bool = True,
        bounce_time: float | None = 0.05,
        pin_factory: Factory | None = None,
    ) -> None:
        super().__init__(pin, pull_up=pull_up, bounce_time=bounce_time, pin_factory=pin_factory)


class StatusLeds(CompositeDevice):
    """The green and red LEDs by the reader, showing what the door just decided.

    Both LEDs are off from construction and after close. Patterns run on gpiozero's background
    blink threads, so none of these methods blocks the door:

    * :meth:`granted`: green on for two seconds;
    * :meth:`denied`: red blinks three times;
    * :meth:`alarm`: red blinks until :meth:`clear`.

    :meth:`granted` only touches the green LED and the others only the red one, so a grant can
    be shown while an alarm is blinking.
    """

    def __init__(self, green: int | str, red: int | str, *, pin_factory: Factory | None = None):
        super().__init__(
            green=LED(green, pin_factory=pin_factory),
            red=LED(red, pin_factory=pin_factory),
            _order=("green", "red"),
            pin_factory=pin_factory,
        )

    def granted(self, seconds: float = GRANTED_SECONDS) -> None:
        """Green on for `seconds`."""
        self.green.blink(on_time=seconds, off_time=0, n=1, background=True)

    def denied(self) -> None:
        """Red blinks three times."""
        self.red.blink(
            on_time=DENIED_BLINK_SECONDS,
            off_time=DENIED_BLINK_SECONDS,
            n=DENIED_BLINKS,
            background=True,
        )

    def alarm(self) -> None:
        """Red blinks until :meth:`clear` or :meth:`off`."""
        self.red.blink(
            on_time=ALARM_BLINK_SECONDS, off_time=ALARM_BLINK_SECONDS, n=None, background=True
        )

    def clear(self) -> None:
        """Stop the alarm (the red LED); a grant showing on green carries on."""
        self.red.off()

    def off(self) -> None:
        """Both LEDs off, patterns stopped."""
        self.green.off()
        self.red.off()


class Buzzer(_GpiozeroBuzzer):
    """The buzzer by the reader: a short beep on a grant, two on a denial, a slow continuous
    beeping while an alarm lasts.

    Silent from construction and after close. Patterns run on gpiozero's background thread;
    none of these methods blocks.
    """

    def __init__(
        self, pin: int | str, *, active_high: bool = True, pin_factory: Factory | None = None
    ) -> None:
        super().__init__(pin, active_high=active_high, initial_value=False, pin_factory=pin_factory)

    def granted(self) -> None:
        """One short beep."""
        self.beep(on_time=BEEP_SECONDS, off_time=0, n=1, background=True)

    def denied(self) -> None:
        """Two short beeps."""
        self.beep(on_time=BEEP_SECONDS, off_time=BEEP_SECONDS, n=DENIED_BEEPS, background=True)

    def alarm(self) -> None:
        """Beep until :meth:`clear` or :meth:`off`."""
        self.beep(on_time=ALARM_BEEP_SECONDS, off_time=ALARM_BEEP_SECONDS, n=None, background=True)

    def clear(self) -> None:
        """Stop the alarm."""
        self.off()


def make_pin_factory(kind: str) -> Any:
    """The gpiozero pin factory for `kind`: "mock" (emulation, tests), "lgpio" (a Pi 4 or 5)
    or "native" (gpiozero's own register access, a fallback on older Pis)."""
    if kind == "mock":
        from gpiozero.pins.mock import MockFactory

        return MockFactory()
    if kind == "lgpio":
        try:
            from gpiozero.pins.lgpio import LGPIOFactory
        except ImportError as exc:
            raise RuntimeError(
                "the lgpio pin factory needs the lgpio package: install the appliance with its "
                "`pi` extra (pip install 'telecentre-appliance[pi]')"
            ) from exc
        return LGPIOFactory()
    if kind == "native":
        from gpiozero.pins.native import NativeFactory

        return NativeFactory()
    allowed = ", ".join(repr(k) for k in PIN_FACTORIES)
    raise ValueError(f"unknown pin factory {kind!r}: expected one of {allowed}")
