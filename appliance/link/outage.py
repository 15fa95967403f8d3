"""Outage detection per layer, with hysteresis, and its localization.

The line is seen as four layers, each depending on the one before it:

    lan       the ISP box answers (the box itself, or the cable/Wi-Fi to it)
    access    beyond the box: the first ISP hop or at least one anchor answers
    upstream  every internet anchor answers
    dns       the configured resolver turns names into addresses

A layer is only judged while every layer below it works: when the box is unreachable
nothing can be said about the anchors, so a dead box is one "lan" outage, not four.
A layer goes down after `down_after` failed rounds in a row and comes back after
`up_after` good ones, so one lost packet never makes an outage; the start and end
are dated back to the first round of the streak, so the recorded duration is the
real one, not one shifted by the hysteresis.

Rounds taken while our own throughput test loads the line are not judged when they
arrive: on a bloated line their probes wait in the box's queue past the timeout, and
that is the test's doing, not an outage. They are held, and the first ordinary round
after the test decides what they were worth, layer by layer:

- that round finds the layer working: the held failures were the test's own queue, and
  they are dropped (they also break any streak from before the test);
- that round finds the layer failing and the test did not run to its end (it failed,
  which is evidence of its own): the failures held up to that round are one streak with
  it, so they count towards `down_after` and the outage is dated from the first of them;
- that round finds the layer failing but the test ran to its end: the line carried the
  test, so the streak starts at the test's end.

An outage that begins during a test is therefore recorded with a start no later than
the test's end, and one that the test merely caused is not recorded at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum


class Layer(StrEnum):
    """A layer of the line; also the cause of an outage at that layer."""

    LAN = "lan"
    ACCESS = "access"
    UPSTREAM = "upstream"
    DNS = "dns"


LAYERS: tuple[Layer, ...] = (Layer.LAN, Layer.ACCESS, Layer.UPSTREAM, Layer.DNS)
# Held rounds kept at most (a test that hangs must not grow memory): 2 h at 10 s.
MAX_HELD = 720


@dataclass(frozen=True)
class ProbeRound:
    """What one round of probes saw: True for a target that answered.

    `isp_hop` is None while the first ISP hop is not known (no traceroute yet);
    `dns` is None when no resolver is configured or known.
    """

    at: float
    gateway: bool
    isp_hop: bool | None
    anchors: tuple[bool, ...]
    dns: bool | None


def observe(r: ProbeRound) -> dict[Layer, bool | None]:
    """Each layer's verdict for one round: True good, False failed, None not judged."""
    lan = r.gateway
    if not lan:
        access = None
    elif r.isp_hop is None and not r.anchors:
        access = None
    else:
        access = bool(r.isp_hop) or any(r.anchors)
    upstream = all(r.anchors) if access and r.anchors else None
    dns = r.dns if access else None
    return {Layer.LAN: lan, Layer.ACCESS: access, Layer.UPSTREAM: upstream, Layer.DNS: dns}


def localize(r: ProbeRound) -> Layer | None:
    """Where one round alone says the line is broken (no hysteresis), or None."""
    for layer, ok in observe(r).items():
        if ok is False:
            return layer
    return None


@dataclass
class Hysteresis:
    """Up/down state of one layer: flips after `threshold` contrary rounds in a row."""

    down_after: int = 3
    up_after: int = 3
    up: bool = True
    streak: int = 0
    streak_since: float | None = None

    def observe(self, ok: bool | None, at: float, since: float | None = None) -> float | None:
        """Feed one round; returns the (backdated) time of a flip, or None.

        A round where the layer is not judged breaks the streak: failures on either
        side of a box outage are not one streak. `since` dates a streak that this round
        starts earlier than the round itself (what is known to have failed before it).
        """
        if ok is None or ok == self.up:
            self.streak = 0
            self.streak_since = None
            return None
        if self.streak == 0:
            self.streak_since = at if since is None else min(at, since)
        self.streak += 1
        if self.streak >= (self.down_after if self.up else self.up_after):
            flipped_at = self.streak_since if self.streak_since is not None else at
            self.up = not self.up
            self.streak = 0
            self.streak_since = None
            return flipped_at
        return None


@dataclass(frozen=True)
class OutageChange:
    """An outage that ended (`end` set) or began (`end` None), with its cause."""

    cause: Layer
    start: float
    end: float | None = None


@dataclass
class OutageTracker:
    """Turns probe rounds into outages: one cause at a time, the lowest layer down.

    `update()` returns the outages that ended and began in that round, and the outage
    seconds that can be counted now by cause. Seconds are counted only up to the
    earliest time a pending streak could still be dated back to, so the cumulative
    counter never has to go back and always equals the recorded outages' durations.
    """

    down_after: int = 3
    up_after: int = 3
    layers: dict[Layer, Hysteresis] = field(default_factory=dict)
    current: OutageChange | None = None
    counted_until: float | None = None
    # Rounds taken under our own test's load, and how the test ended (see the module doc).
    held: list[ProbeRound] = field(default_factory=list)
    test_end: float | None = None
    test_failed: bool = False

    def __post_init__(self) -> None:
        for layer in LAYERS:
            self.layers.setdefault(layer, Hysteresis(self.down_after, self.up_after))

    def is_up(self, layer: Layer) -> bool:
        """True while this layer and every layer below it are up."""
        for each in LAYERS:
            if not self.layers[each].up:
                return False
            if each == layer:
                return True
        raise ValueError(layer)

    @property
    def cause(self) -> Layer | None:
        """The current outage's cause: the lowest layer that is down."""
        return self.current.cause if self.current else None

    def hold(self, r: ProbeRound) -> None:
        """A round taken while our own throughput test loads the line: judged later."""
        self.held = [*self.held[-(MAX_HELD - 1):], r]

    def test_over(self, at: float, *, completed: bool) -> None:
        """Our test stopped loading the line at `at`; `completed` if it ran to its end."""
        self.test_end = at
        self.test_failed = self.test_failed or not completed

    def update(self, r: ProbeRound) -> tuple[list[OutageChange], dict[Layer, float]]:
        flips: dict[Layer, float] = {}
        held, self.held = self.held, []
        # A test whose end was never reported gets no benefit of the doubt.
        test_failed = self.test_failed or self.test_end is None
        test_end = self.test_end
        self.test_end, self.test_failed = None, False
        for layer, ok in observe(r).items():
            h = self.layers[layer]
            since = None
            if held:
                run = _failed_run(held, layer)
                if ok is False and h.up and run:
                    if len(run) < len(held) or not test_failed:
                        h.observe(None, run[0].at)  # the line passed, or carried the test
                    if test_failed:
                        for past in run:
                            flipped_at = h.observe(False, past.at)
                            if flipped_at is not None:
                                flips[layer] = flipped_at
                    else:
                        since = test_end
                else:
                    h.observe(None, r.at)  # held rounds are never a streak on their own
            flipped_at = h.observe(ok, r.at, since)
            if flipped_at is not None:
                flips[layer] = flipped_at
        changes: list[OutageChange] = []
        counted: dict[Layer, float] = {}
        cause = next((layer for layer in LAYERS if not self.layers[layer].up), None)
        if cause != self.cause:
            # The new cause began when its layer went down, or when the old cause's
            # layer came back (uncovering a higher layer that is still down).
            if cause is not None and cause in flips:
                boundary = flips[cause]
            elif self.current is not None and self.current.cause in flips:
                boundary = flips[self.current.cause]
            else:
                boundary = r.at
            if self.current is not None:
                boundary = max(boundary, self.current.start)
                self._count(counted, self.current.cause, boundary)
                changes.append(OutageChange(self.current.cause, self.current.start, boundary))
                self.current = None
            if cause is not None:
                self.current = OutageChange(cause, boundary)
                self.counted_until = boundary
                changes.append(self.current)
        if self.current is not None:
            pending = [h.streak_since for h in self.layers.values() if h.streak_since is not None]
            self._count(counted, self.current.cause, min([r.at, *pending]))
        return changes, counted

    def _count(self, counted: dict[Layer, float], cause: Layer, until: float) -> None:
        start = self.counted_until if self.counted_until is not None else until
        if until > start:
            counted[cause] = counted.get(cause, 0.0) + until - start
            self.counted_until = until


def _failed_run(held: Sequence[ProbeRound], layer: Layer) -> list[ProbeRound]:
    """The held rounds at the end of `held` in which `layer` failed, oldest first."""
    run: list[ProbeRound] = []
    for past in reversed(held):
        if observe(past)[layer] is not False:
            break
        run.append(past)
    return run[::-1]


def replay(rounds: Sequence[ProbeRound], down_after: int = 3, up_after: int = 3):
    """Replay rounds through a fresh tracker: (outages, counted seconds by cause).

    An outage still going on at the end comes last, with `end` None. For tests and
    the benchmark, which check a whole scenario at once.
    """
    tracker = OutageTracker(down_after, up_after)
    outages: list[OutageChange] = []
    seconds: dict[Layer, float] = {}
    for r in rounds:
        changes, counted = tracker.update(r)
        outages.extend(c for c in changes if c.end is not None)
        for cause, secs in counted.items():
            seconds[cause] = seconds.get(cause, 0.0) + secs
    if tracker.current is not None:
        outages.append(tracker.current)
    return outages, seconds
