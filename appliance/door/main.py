"""`telecentre door`: the door service as a process, with its relock guardian."""

from __future__ import annotations

import logging
import os
import sys

from appliance.config import Config
from appliance.door.devices import Lock, make_pin_factory
from appliance.door.guardian import start_guardian
from appliance.door.hardware import LOCK_LABEL, build_hardware
from appliance.door.service import DoorService, load_site_secret
from appliance.hardware import board
from appliance.runtime import serve_metrics, serve_until_stopped

log = logging.getLogger(__name__)


def relock_action(config: Config, *, by: str = "guardian"):
    """What the guardian does once the service has died: drive the lock pin locked.

    On a Pi a released GPIO line keeps its last level, so a service killed while
    the door was unlocked would leave it unlocked: the guardian claims the line
    again and drives it to the locked level.
    """
    level = Lock.locked_pin_level(config.door.relay_active_high, config.door.fail_safe)
    if config.backend == "emulated":
        path = config.board_path

        def relock() -> None:
            board.force_level(path, LOCK_LABEL, level, by=by)
    else:

        def relock() -> None:
            from gpiozero import OutputDevice

            device = OutputDevice(
                config.pins.lock,
                active_high=True,
                initial_value=level,
                pin_factory=make_pin_factory("lgpio"),
            )
            device.value = level
            # Do not close: closing releases the line again; the process exits holding
            # it at the locked level, which the line keeps.

    return relock


def relock(config: Config) -> int:
    """`telecentre door --relock`: drive the lock pin to its locked level, then exit holding it.

    systemd runs it after the door service has stopped, however it stopped (ExecStopPost=):
    a watchdog or stop timeout SIGKILLs the whole unit, the guardian included, and only this
    is left to relock. It needs the pin free, so it runs once the unit's processes are gone.
    """
    relock_action(config, by="relock")()
    log.info("lock pin GPIO%d driven to its locked level", config.pins.lock)
    if config.backend == "emulated":
        return 0
    sys.stdout.flush()
    sys.stderr.flush()
    # gpiozero's atexit hook would close the device, turning the line into an input and
    # letting the relay float: leave without it, holding the line at the locked level.
    os._exit(0)


def run(config: Config) -> int:
    secret = load_site_secret(config.secret_path)
    # Before any thread starts (fork): the guardian outlives us by design.
    guardian = start_guardian(relock_action(config))
    hardware = build_hardware(config)
    service = DoorService(config, hardware, site_secret=secret)
    service.start()
    metrics = serve_metrics(service.registry, config.metrics_listen, config.door_metrics_port)
    log.info(
        "door service running (%s hardware); metrics on %s:%d",
        config.backend,
        config.metrics_listen,
        metrics.server_port,
    )
    # service.stop relocks, then releases the pins.
    return serve_until_stopped("door ready", service.stop, guardian.stop, metrics.shutdown)
