"""systemd's watchdog for a service without a loop of its own: ping only while a probe passes.

The door pings from its own loop (`DoorService.step`). A service whose work happens in
threads it does not own (waitress's workers for the panel) runs a `Watchdog` instead: a
daemon thread that calls a health probe every half of `WatchdogSec=` and sends WATCHDOG=1
only when the probe passes. A hung server stops the pings, and systemd restarts the unit.
"""

from __future__ import annotations

import logging
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Callable

from appliance.sdnotify import notify as sd_notify

log = logging.getLogger(__name__)


def watchdog_interval(
    environ: dict[str, str] | None = None, pid: int | None = None
) -> float | None:
    """Seconds between two pings (half of $WATCHDOG_USEC), or None when systemd set no
    watchdog for this process."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    owner = env.get("WATCHDOG_PID", "")
    if owner.isdigit() and int(owner) != (os.getpid() if pid is None else pid):
        return None
    return int(usec) / 2_000_000


def http_probe(url: str, timeout: float = 5.0) -> Callable[[], bool]:
    """A probe that passes when `url` answers with a status below 500 within `timeout`."""

    def probe() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return response.status < 500
        except urllib.error.HTTPError as exc:
            return exc.code < 500
        except (OSError, ValueError):
            return False

    return probe


class Watchdog:
    """Pings systemd's watchdog every `interval` seconds while `probe()` returns True."""

    def __init__(
        self,
        probe: Callable[[], bool],
        interval: float,
        *,
        notify: Callable[[str], object] = sd_notify,
    ) -> None:
        self.probe = probe
        self.interval = interval
        self.notify = notify
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)

    def start(self) -> Watchdog:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.interval + 1)

    def check(self) -> bool:
        """One probe; pings when it passes. Returns whether it passed."""
        try:
            ok = bool(self.probe())
        except Exception:
            log.exception("watchdog probe failed")
            ok = False
        if ok:
            self.failures = 0
            self.notify("WATCHDOG=1")
        else:
            self.failures += 1
            log.warning("health probe failed (%d in a row): not pinging the watchdog",
                        self.failures)
        return ok

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.check()
