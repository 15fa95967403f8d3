"""Assembling the door's hardware from the configuration: real on a Pi, emulated elsewhere."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from gpiozero import DigitalInputDevice, DigitalOutputDevice

from appliance.config import Config
from appliance.door.devices import (
    Buzzer,
    DoorContact,
    ExitButton,
    Lock,
    StatusLeds,
    make_pin_factory,
)
from appliance.door.reader import BadgeReader
from appliance.hardware.board import EmulatedBoard

LOCK_LABEL = "lock"


@dataclass
class DoorHardware:
    """Everything the door service drives, plus the emulator handles when emulated."""

    lock: Lock
    contact: DoorContact
    exit_button: ExitButton
    leds: StatusLeds
    buzzer: Buzzer
    reader: BadgeReader
    pin_factory: Any
    chip: Any = None  # EmulatedMFRC522 when emulated
    board: EmulatedBoard | None = None
    cards: dict[str, Any] = field(default_factory=dict)  # emulated cards by UID hex
    _field_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def emulated(self) -> bool:
        return self.chip is not None

    def pin(self, number: int):
        """The emulated pin with this BCM number (emulation only)."""
        return self.pin_factory.pin(number)

    def close(self) -> None:
        # The lock first: whatever else fails, the door ends locked.
        for part in (
            self.lock,
            self.reader,
            self.contact,
            self.exit_button,
            self.leds,
            self.buzzer,
        ):
            try:
                part.close()
            except Exception:  # noqa: BLE001 - closing must go on for the other parts
                pass


def pin_labels(config: Config) -> dict[int, str]:
    p = config.pins
    labels = {
        p.lock: LOCK_LABEL,
        p.door_contact: "door_contact",
        p.exit_button: "exit_button",
        p.led_green: "led_green",
        p.led_red: "led_red",
        p.buzzer: "buzzer",
        p.reader_reset: "reader_reset",
    }
    if p.reader_irq is not None:
        labels[p.reader_irq] = "reader_irq"
    return labels


def build_hardware(config: Config, *, publish: bool = True) -> DoorHardware:
    """Open every device; the lock is opened first, at its locked level."""
    p = config.pins
    emulated = config.backend == "emulated"
    if emulated:
        board = EmulatedBoard(config.board_path if publish else None, labels=pin_labels(config))
        factory = board
    else:
        board = None
        factory = make_pin_factory("lgpio")

    lock = Lock(
        p.lock,
        relay_active_high=config.door.relay_active_high,
        fail_safe=config.door.fail_safe,
        pin_factory=factory,
    )
    if board is not None:
        board.publish()
    contact = DoorContact(p.door_contact, pin_factory=factory)
    exit_button = ExitButton(p.exit_button, pin_factory=factory)
    if emulated:
        # An emulated door starts closed: the reed contact pulls its pin low (the
        # pull-up set by DoorContact would otherwise read as open). The Door
        # controller is built after this, so it sees no edge.
        factory.pin(p.door_contact).drive_low()
    leds = StatusLeds(p.led_green, p.led_red, pin_factory=factory)
    buzzer = Buzzer(p.buzzer, pin_factory=factory)
    reset = DigitalOutputDevice(p.reader_reset, initial_value=True, pin_factory=factory)
    irq = None
    if p.reader_irq is not None:
        # The MFRC522 pulls IRQ low (IRqInv) when a command ends.
        irq = DigitalInputDevice(p.reader_irq, pull_up=True, pin_factory=factory)

    chip = None
    if emulated:
        from appliance.hardware.mfrc522_emulator import EmulatedMFRC522, EmulatedSpiDev

        chip = EmulatedMFRC522(
            irq=factory.pin(p.reader_irq) if irq is not None else None,
            reset_pin=factory.pin(p.reader_reset),
        )
        spi = EmulatedSpiDev(chip)
    else:
        try:
            import spidev
        except ImportError as exc:
            raise RuntimeError(
                "spidev is not installed: install the appliance with its `pi` extra "
                "(pip install 'telecentre-appliance[pi]')"
            ) from exc
        spi = spidev.SpiDev()
    spi.open(config.reader.spi_bus, config.reader.spi_device)
    spi.max_speed_hz = 1_000_000
    reader = BadgeReader(spi, reset=reset, irq=irq)
    return DoorHardware(
        lock=lock,
        contact=contact,
        exit_button=exit_button,
        leds=leds,
        buzzer=buzzer,
        reader=reader,
        pin_factory=factory,
        chip=chip,
        board=board,
    )
