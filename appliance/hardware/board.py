"""The emulated board: gpiozero's MockFactory, with the output levels published.

On a Pi anyone can look at the relay. In the demo and the tests the pins live
inside the door process, so the board writes their levels to a small JSON file
(atomically) whenever an output changes: `telecentre emulate status`, another
terminal and the process-kill test read the relay from there. After the door
process dies the file keeps the last level written, like a released GPIO line
on a Pi keeps its last level; only the relock guardian changes it then.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from gpiozero.pins.mock import MockFactory, MockPin


class PublishingPin(MockPin):
    """A MockPin that tells its factory when it drives a new level.

    Only outputs publish: inputs (the reader's IRQ line toggles twice per poll) would
    otherwise write the file 40 times a second for nothing.
    """

    def _change_state(self, value: bool) -> bool:
        changed = super()._change_state(value)
        if changed and self._function == "output":
            factory = self.factory
            if isinstance(factory, EmulatedBoard):
                factory.publish()
        return changed


class EmulatedBoard(MockFactory):
    """A MockFactory whose pin levels are mirrored to `state_path` (if given)."""

    def __init__(self, state_path: Path | None = None, *, labels: dict[int, str] | None = None):
        super().__init__(pin_class=PublishingPin)
        self.state_path = Path(state_path) if state_path else None
        self.labels = labels or {}
        self._publish_lock = threading.Lock()

    def levels(self) -> dict[str, Any]:
        """Every pin in use: its BCM number, label, function and level."""
        out = {}
        for info, pin in list(self.pins.items()):
            number = int(info.name.replace("GPIO", "")) if info.name.startswith("GPIO") else None
            label = self.labels.get(number, info.name) if number is not None else info.name
            out[label] = {
                "gpio": number,
                "function": pin.function,
                "level": bool(pin.state),
            }
        return out

    def publish(self) -> None:
        if self.state_path is None:
            return
        with self._publish_lock:
            write_state(
                self.state_path, {"pid": os.getpid(), "at": time.time(), "pins": self.levels()}
            )


def write_state(path: Path, state: dict[str, Any]) -> None:
    """Write the board file atomically (readers never see half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, path)


def read_state(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def force_level(path: Path, label: str, level: bool, *, by: str) -> None:
    """Set one published pin's level from outside the door process (the relock guardian)."""
    try:
        state = read_state(path)
    except (FileNotFoundError, ValueError):
        state = {"pins": {}}
    pin = state.setdefault("pins", {}).setdefault(label, {"gpio": None, "function": "output"})
    pin["level"] = level
    state["pid"] = os.getpid()
    state["at"] = time.time()
    state["by"] = by
    write_state(path, state)
