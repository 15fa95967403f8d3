"""The cross-traffic gate: a throughput test waits until members are not using the line.

A test that starts while someone is on a video call both spoils the call and measures
only what is left of the line. The gate reads the WAN interface's byte counters
(`/proc/net/dev`, whose path is a parameter so tests feed a fixture file) and lets a
test start only after a quiet window; if the line stays busy it gives up and the test
is recorded as skipped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

BUSY_BYTES_PER_SECOND = 25_000.0
QUIET_SECONDS = 5.0
MAX_WAIT_SECONDS = 30.0


def read_net_dev(path: Path | str = "/proc/net/dev") -> dict[str, tuple[int, int]]:
    """Received and transmitted bytes per interface, from a /proc/net/dev-style file."""
    counters: dict[str, tuple[int, int]] = {}
    for line in Path(path).read_text().splitlines()[2:]:
        name, sep, rest = line.partition(":")
        if not sep:
            continue
        fields = rest.split()
        if len(fields) >= 9:
            counters[name.strip()] = (int(fields[0]), int(fields[8]))
    return counters


def wan_bytes_reader(interface: str, path: Path | str = "/proc/net/dev") -> Callable[[], int]:
    """A function returning the WAN interface's bytes so far, received plus sent."""

    def read() -> int:
        counters = read_net_dev(path)
        if interface not in counters:
            raise LookupError(f"no interface {interface!r} in {path}")
        rx, tx = counters[interface]
        return rx + tx

    return read


@dataclass(frozen=True)
class GateResult:
    passed: bool
    waited: float
    # Highest rate seen (bytes per second, both directions), for the log and the panel.
    peak_rate: float
    reason: str = ""


def wait_for_quiet(
    read_bytes: Callable[[], int],
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    threshold: float = BUSY_BYTES_PER_SECOND,
    quiet: float = QUIET_SECONDS,
    max_wait: float = MAX_WAIT_SECONDS,
    step: float = 1.0,
) -> GateResult:
    """Wait until the line has been under `threshold` for `quiet` seconds in a row.

    Even an idle line is watched for one quiet window: one calm second in the middle
    of a video call is not a quiet line. Gives up after `max_wait` seconds.
    """
    try:
        prev = read_bytes()
    except (OSError, LookupError) as exc:
        return GateResult(False, 0.0, 0.0, f"no WAN counters: {exc}")
    start = t_prev = quiet_since = clock()
    peak = 0.0
    while True:
        sleep(step)
        now = clock()
        try:
            cur = read_bytes()
        except (OSError, LookupError) as exc:
            return GateResult(False, now - start, peak, f"no WAN counters: {exc}")
        elapsed = max(now - t_prev, 1e-6)
        if cur < prev:  # counters reset (interface re-created): this second is unknown
            rate = float("inf")
        else:
            rate = (cur - prev) / elapsed
        prev, t_prev = cur, now
        if rate != float("inf"):
            peak = max(peak, rate)
        if rate > threshold:
            quiet_since = now
        elif now - quiet_since >= quiet:
            return GateResult(True, now - start, peak)
        if now - start >= max_wait:
            return GateResult(False, now - start, peak, "line busy")
