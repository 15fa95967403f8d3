"""Import the ``mfrc522`` package's driver class without its GPIO side effects.

``mfrc522.MFRC522`` imports ``RPi.GPIO`` and ``spidev`` at module level, and its
``__init__`` calls ``GPIO.setmode``/``GPIO.setup`` while ``Close_MFRC522`` calls
``GPIO.cleanup()``, which resets *every* pin the process configured, the lock relay
included. We use only its register access, so this module:

* imports the class even where ``RPi.GPIO``/``spidev`` are missing (laptops, CI, the
  demo, a Pi 5 without rpi-lgpio), by putting placeholder modules in ``sys.modules``
  for the duration of the import only (for ``RPi.GPIO``, always: its GPIO code is never
  ours to call);
* builds driver objects without running ``__init__`` (see :func:`new_driver`).

Never call ``MFRC522_ToCard`` (busy-waits 2,000 SPI reads per empty poll), its
single-level anticollision, or ``Close_MFRC522`` on these objects.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
import threading
import types
from typing import Any

__all__ = ["MFRC522", "MissingHardwareModule", "new_driver"]

_import_lock = threading.Lock()


class MissingHardwareModule(types.ModuleType):
    """Stand-in for RPi.GPIO or spidev: any attribute use raises a clear error."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        raise RuntimeError(
            f"{self.__name__}.{name} was used, but {self.__name__} is not installed. "
            "The appliance drives the MFRC522 through appliance.hardware.mfrc522_compat."
            "new_driver(spi) and gpiozero; install the 'pi' extra (spidev, rpi-lgpio) "
            "on the Raspberry Pi."
        )


def _importable(name: str) -> bool:
    """True when ``name`` can be imported for real (placeholders do not count)."""
    if isinstance(sys.modules.get(name), MissingHardwareModule):
        return False
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _load_driver_class() -> type:
    """Import mfrc522.MFRC522 with placeholders for whatever hardware module is missing."""
    with _import_lock:
        already = sys.modules.get("mfrc522.MFRC522")
        if already is not None:
            return already.MFRC522
        inserted: list[str] = []
        try:
            # Always a placeholder, even where RPi.GPIO is installed: we never use the
            # package's GPIO code, and importing rpi-lgpio's RPi.GPIO raises off a Pi (the
            # image booted in a virtual machine, emulated door) and makes lgpio's pipes in
            # the working directory.
            if "RPi.GPIO" not in sys.modules:
                if "RPi" not in sys.modules:
                    rpi = types.ModuleType("RPi")
                    rpi.__path__ = []  # a package, so "import RPi.GPIO" resolves below
                    sys.modules["RPi"] = rpi
                    inserted.append("RPi")
                gpio = MissingHardwareModule("RPi.GPIO")
                sys.modules["RPi.GPIO"] = gpio
                inserted.append("RPi.GPIO")
            if not _importable("spidev"):
                sys.modules["spidev"] = MissingHardwareModule("spidev")
                inserted.append("spidev")
            module = importlib.import_module("mfrc522.MFRC522")
        finally:
            # The placeholders must not leak: other code asking for RPi.GPIO or spidev
            # should get a normal ImportError, not a module that fails later.
            for name in reversed(inserted):
                sys.modules.pop(name, None)
        return module.MFRC522


MFRC522: type = _load_driver_class()


def new_driver(spi: Any, *, logger: logging.Logger | None = None) -> Any:
    """Return an ``mfrc522.MFRC522`` bound to ``spi`` without running its ``__init__``.

    ``spi`` is an opened ``spidev.SpiDev`` (or the emulator's ``EmulatedSpiDev``).
    ``__init__`` is skipped because it opens its own SpiDev and sets up GPIO with
    RPi.GPIO; the object's register helpers only need ``.spi`` and ``.logger``.
    """
    driver = MFRC522.__new__(MFRC522)
    driver.spi = spi
    driver.logger = logger or logging.getLogger("appliance.hardware.mfrc522")
    driver.serNum = []
    return driver
