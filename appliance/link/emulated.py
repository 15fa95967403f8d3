"""An emulated broadband line: the link service runs on it unchanged, with no network.

Like the emulated MFRC522 behind a spidev-compatible object, this is a model behind
the interfaces the real code already talks to: an echo pinger and a DNS probe (the
real `Prober` runs its rounds over them), a traceroute function, WAN byte counters
for the cross-traffic gate, and a throughput backend. Outage detection, the gate,
bufferbloat grading, storage, metrics and the panel therefore run their production
code in `telecentre demo` and in tests. It is chosen by `[link] line = "emulated"`,
never by a test hook in a production path.

The model is a typical rural VDSL line, 30 Mbit/s down and 1 Mbit/s up, behind an
ISP box: sub-millisecond to the box over Ethernet, ~12 ms to the first ISP router,
~30 ms to the internet, a little jitter and 0.2 % loss beyond the box. Bufferbloat
comes from the box's buffers, given in bytes: a bulk transfer keeps the queue of its
direction nearly full, so every probe crossing the line waits `buffer / rate` more;
on a slower line the same buffer costs more delay, as on a real box.

Faults and settings change at run time over the link socket (`emulate` command,
`telecentre link emulate ...`): the box down, the access line down, upstream partly
down (every anchor but the first), DNS down; rates, loss, jitter, buffers, and
members' traffic on the line (which holds scheduled tests at the gate).
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from appliance.link.iperf import BackendError
from appliance.link.probes import ICMP_ECHO_BYTES, IP_HEADER, UDP_HEADER
from appliance.link.throughput import TCP_PAYLOAD_PER_FRAME, Measurement

FAULTS = ("box", "access", "upstream", "dns")
# Addresses the emulated line answers for when the config leaves them to be found
# (documentation and shared address space, never routed anywhere).
EMULATED_GATEWAY = "192.168.1.1"
EMULATED_ISP_HOP = "100.64.0.1"
EMULATED_RESOLVER = EMULATED_GATEWAY
# Each further anchor is a little farther away than the first.
ANCHOR_SPREAD_MS = 4.0
DNS_QUERY_BYTES = IP_HEADER + UDP_HEADER + 40
DNS_ANSWER_BYTES = IP_HEADER + UDP_HEADER + 56
# A TCP connection that cannot be set up gives up after this long (iperf3's 3 s).
CONNECT_TIMEOUT = 3.0
# Share of members' traffic that is download (browsing, video calls receive more).
MEMBERS_DOWN_SHARE = 0.85


@dataclass(frozen=True)
class LineSettings:
    """What can be changed at run time; the defaults are a 30/1 Mbit/s rural VDSL line."""

    down_mbps: float = 30.0
    up_mbps: float = 1.0
    gateway_rtt_ms: float = 0.6
    isp_hop_rtt_ms: float = 12.0
    anchor_rtt_ms: float = 28.0
    dns_ms: float = 24.0
    jitter_ms: float = 1.5
    loss: float = 0.002
    # The box's queues: 100 ms at 30 Mbit/s down, 256 ms at 1 Mbit/s up.
    down_buffer_kb: float = 375.0
    up_buffer_kb: float = 32.0
    # Members using the line, both directions (Mbit/s): the gate sees it.
    members_mbps: float = 0.0

    def validated(self) -> LineSettings:
        """The same settings, or ValueError naming the one that is out of range."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{f.name}: expected a number >= 0, got {value!r}")
        if self.down_mbps <= 0 or self.up_mbps <= 0:
            raise ValueError("down_mbps and up_mbps: expected a rate > 0")
        if self.loss > 1:
            raise ValueError(f"loss: expected a share between 0 and 1, got {self.loss}")
        return self


SETTINGS = tuple(f.name for f in dataclasses.fields(LineSettings))


class EmulatedLine:
    """The line's state, shared by the emulated pinger, DNS probe and backend.

    Thread-safe: the probe loop, the test thread, the load sampler and socket
    commands all use it at once. `clock`, `sleep` and `rng` are parameters so the
    model is tested without waiting and with repeatable draws.
    """

    def __init__(
        self,
        *,
        anchors: Sequence[str],
        gateway: str = "",
        isp_hop: str = "",
        resolver: str = "",
        settings: LineSettings | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.gateway = gateway or EMULATED_GATEWAY
        self.isp_hop = isp_hop or EMULATED_ISP_HOP
        self.resolver = resolver or EMULATED_RESOLVER
        self.anchors = tuple(anchors)
        self.settings = (settings or LineSettings()).validated()
        self.faults: set[str] = set()
        self.load: str | None = None  # "download" or "upload" while a test runs
        self.rng = rng or random.Random()
        self.clock = clock
        self.sleep = sleep
        self._lock = threading.Lock()
        self._wan_bytes = 0.0
        self._wan_at = clock()

    # --- run-time control -----------------------------------------------------------

    def break_(self, fault: str) -> None:
        """Start a fault: "box", "access", "upstream" or "dns"."""
        if fault not in FAULTS:
            raise ValueError(f"fault: expected one of {', '.join(FAULTS)}, got {fault!r}")
        with self._lock:
            self.faults.add(fault)

    def repair(self, fault: str = "all") -> None:
        """End one fault, or all of them."""
        if fault != "all" and fault not in FAULTS:
            raise ValueError(f"fault: expected all or one of {', '.join(FAULTS)}, got {fault!r}")
        with self._lock:
            if fault == "all":
                self.faults.clear()
            else:
                self.faults.discard(fault)

    def configure(self, **changes: float) -> LineSettings:
        """Change some settings; unknown names and bad values are refused, nothing applied."""
        unknown = sorted(set(changes) - set(SETTINGS))
        if unknown:
            raise ValueError(f"unknown setting {unknown[0]!r}; known: {', '.join(SETTINGS)}")
        try:
            values = {k: float(v) for k, v in changes.items()}
        except (TypeError, ValueError):
            raise ValueError(f"settings: expected numbers, got {changes!r}") from None
        new = dataclasses.replace(self.settings, **values).validated()
        with self._lock:
            self._account_members()
            self.settings = new
        return new

    def reset(self) -> None:
        """Back to the healthy default line."""
        with self._lock:
            self._account_members()
            self.settings = LineSettings()
            self.faults.clear()

    def state(self) -> dict[str, Any]:
        """Settings, faults and what a test is loading, for `link emulate status`."""
        with self._lock:
            return {"settings": dataclasses.asdict(self.settings), "faults": sorted(self.faults),
                    "load": self.load, "gateway": self.gateway, "isp_hop": self.isp_hop,
                    "resolver": self.resolver, "anchors": list(self.anchors)}

    # --- the model ------------------------------------------------------------------

    def queue_delay(self) -> float:
        """Seconds a packet crossing the line waits in the box's queue right now.

        A bulk TCP transfer keeps the bottleneck's queue between roughly 60 % and
        full (its sawtooth); without a test the queue is empty.
        """
        s = self.settings
        if self.load == "download":
            full = s.down_buffer_kb * 1000 * 8 / (s.down_mbps * 1e6)
        elif self.load == "upload":
            full = s.up_buffer_kb * 1000 * 8 / (s.up_mbps * 1e6)
        else:
            return 0.0
        return full * self.rng.uniform(0.6, 1.0)

    def echo_rtt(self, target: str) -> float | None:
        """One echo to `target`: its RTT in seconds, or None if it is lost."""
        with self._lock:
            s, faults = self.settings, self.faults
            if "box" in faults:
                return None
            if target == self.gateway:  # Ethernet to the box: no loss, tiny jitter
                return (s.gateway_rtt_ms + abs(self.rng.gauss(0, 0.05))) / 1000
            if "access" in faults:
                return None
            if target == self.isp_hop:
                base = s.isp_hop_rtt_ms
            elif target in self.anchors:
                index = self.anchors.index(target)
                if "upstream" in faults and index > 0:
                    return None
                base = s.anchor_rtt_ms + ANCHOR_SPREAD_MS * index
            else:
                return None  # nothing else is on the emulated internet
            if self.rng.random() < s.loss:
                return None
            return (base + abs(self.rng.gauss(0, s.jitter_ms))) / 1000 + self.queue_delay()

    def dns_time(self) -> float | None:
        """One query to the resolver: seconds to an answer, or None."""
        with self._lock:
            s, faults = self.settings, self.faults
            if faults & {"box", "access", "dns"}:
                return None
            if self.rng.random() < s.loss:
                return None
            return (s.dns_ms + abs(self.rng.gauss(0, s.jitter_ms))) / 1000 + self.queue_delay()

    def traceroute(self, _destination: str, _gateway: str | None) -> str | None:
        """The first ISP hop, as the real traceroute finds it; None while the line is down."""
        with self._lock:
            return None if self.faults & {"box", "access"} else self.isp_hop

    def _account_members(self) -> None:
        """Add members' traffic since the last reading to the WAN counter (lock held)."""
        now = self.clock()
        self._wan_bytes += self.settings.members_mbps * 1e6 / 8 * max(0.0, now - self._wan_at)
        self._wan_at = now

    def add_wan_bytes(self, count: float) -> None:
        with self._lock:
            self._wan_bytes += count

    def wan_bytes(self) -> int:
        """Bytes through the WAN interface so far, both directions (for the gate)."""
        with self._lock:
            self._account_members()
            return int(self._wan_bytes)

    def goodput(self, direction: str) -> float:
        """TCP payload rate (bit/s) a bulk test gets in `direction` right now.

        The line rate times the payload share of a full frame, less what members
        are using, less a loss penalty (TCP halves its window on each loss), times
        a draw of 96-99.5 % for everything else a real test meets.
        """
        with self._lock:
            s = self.settings
            share = MEMBERS_DOWN_SHARE if direction == "download" else 1 - MEMBERS_DOWN_SHARE
            rate = s.down_mbps if direction == "download" else s.up_mbps
            free = max(rate * 0.05, rate - s.members_mbps * share)
            penalty = max(0.2, 1 - 5 * s.loss)
            return free * 1e6 * TCP_PAYLOAD_PER_FRAME * penalty * self.rng.uniform(0.96, 0.995)

    def line_up_for_tests(self) -> str | None:
        """Why a test connection would fail now, or None."""
        with self._lock:
            if "box" in self.faults:
                return "no route to the test server (the box does not answer)"
            if "access" in self.faults:
                return "connection timed out (the access line is down)"
            return None

    def set_load(self, direction: str | None) -> None:
        with self._lock:
            self.load = direction

    # --- the pieces the link service uses ----------------------------------------------

    def pinger(self) -> EmulatedPinger:
        return EmulatedPinger(self)

    def dns_probe(self) -> EmulatedDnsProbe:
        return EmulatedDnsProbe(self)

    def backend(self, seconds: float) -> EmulatedBackend:
        return EmulatedBackend(self, seconds)


class EmulatedPinger:
    """`probes.Pinger`'s interface on the emulated line: same results, same byte count.

    It waits as long as a real round would (the slowest answer, or the timeout when
    an echo is lost), so the service's timing is the real one.
    """

    def __init__(self, line: EmulatedLine) -> None:
        self.line = line
        self.bytes = 0
        self._seq = 0
        self._due: dict[int, tuple[float, float]] = {}  # key -> (answer due at, rtt)

    def close(self) -> None:
        """Nothing to release (the real one closes its raw socket)."""

    def send(self, target: str) -> int:
        """One echo now (`probes.Pinger.send`): its answer is due after the line's RTT,
        which includes the queue it meets now."""
        self._seq += 1
        self.bytes += ICMP_ECHO_BYTES
        self.line.add_wan_bytes(ICMP_ECHO_BYTES)
        rtt = self.line.echo_rtt(target)
        if rtt is not None:
            self._due[self._seq] = (self.line.clock() + rtt, rtt)
        return self._seq

    def replies(self, wait: float) -> list[tuple[int, float]]:
        """The answers due within `wait` seconds, waiting until the first one (or `wait`)."""
        now = self.line.clock()
        first = min((at for at, _rtt in self._due.values()), default=now + wait)
        self.line.sleep(max(0.0, min(wait, first - now)))
        now = self.line.clock()
        got = [(key, rtt) for key, (at, rtt) in self._due.items() if at <= now + 1e-9]
        for key, _rtt in got:
            del self._due[key]
            self.bytes += ICMP_ECHO_BYTES
        return got

    def ping(
        self, targets: Sequence[str], timeout: float, *, attempts: int = 2,
        fallback: Sequence[str] = (),
    ) -> dict[str, tuple[int, int, float | None]]:
        """(sent, received, rtt of the first answer) per target, retrying the silent ones;
        `fallback` joins from the second attempt if nothing answered the first."""
        results: dict[str, tuple[int, int, float | None]] = {t: (0, 0, None) for t in targets}
        todo = list(dict.fromkeys(targets))
        for attempt in range(attempts):
            if not todo:
                break
            answered = {}
            for target in todo:
                self.bytes += ICMP_ECHO_BYTES
                rtt = self.line.echo_rtt(target)
                if rtt is not None and rtt < timeout:
                    answered[target] = rtt
                    self.bytes += ICMP_ECHO_BYTES
            lost = len(answered) < len(todo)
            self.line.sleep(timeout if lost else max(answered.values(), default=0.0))
            for target in todo:
                sent, received, rtt = results[target]
                got = answered.get(target)
                results[target] = (sent + 1, received + (got is not None), rtt or got)
            todo = [t for t in todo if t not in answered]
            if attempt == 0 and not answered:
                extra = [t for t in dict.fromkeys(fallback) if t not in results]
                results.update((t, (0, 0, None)) for t in extra)
                todo += extra
        self.line.add_wan_bytes(sum(ICMP_ECHO_BYTES * r[0] for r in results.values()))
        return results


class EmulatedDnsProbe:
    """`probes.DnsProbe`'s interface on the emulated line."""

    def __init__(self, line: EmulatedLine) -> None:
        self.line = line
        self.bytes = 0

    def resolve(self, resolver: str, name: str, timeout: float) -> float | None:
        """Seconds to an answer, or None (after waiting the timeout, like the real one)."""
        self.bytes += DNS_QUERY_BYTES
        elapsed = self.line.dns_time() if resolver == self.line.resolver else None
        if elapsed is None or elapsed >= timeout:
            self.line.sleep(timeout)
            return None
        self.line.sleep(elapsed)
        self.bytes += DNS_ANSWER_BYTES
        return elapsed


class EmulatedBackend:
    """A throughput backend on the emulated line: download, then upload, in real time.

    Each direction takes `seconds` (plus one omitted second, like `iperf3 -O 1`)
    during which the box's queue for that direction is full, so the service's
    latency-under-load sampler sees the bufferbloat. Bytes used are what the line
    carried, which is what the data budget pays.
    """

    name = "emulated"

    def __init__(self, line: EmulatedLine, seconds: float) -> None:
        self.line = line
        self.seconds = seconds

    @property
    def label(self) -> str:
        s = self.line.settings
        return f"emulated {s.down_mbps:g}/{s.up_mbps:g} Mbit/s line"

    def measure(self, progress: Callable[[str, float], None] | None = None) -> Measurement:
        result = Measurement(backend=self.name, server=self.label)
        for direction in ("download", "upload"):
            why = self.line.line_up_for_tests()
            if why:
                self.line.sleep(CONNECT_TIMEOUT)
                raise BackendError(f"emulated: {why}")
            if progress:
                progress(direction, self.seconds + 1)
            self.line.set_load(direction)
            try:
                self.line.sleep(self.seconds + 1)
            finally:
                self.line.set_load(None)
            why = self.line.line_up_for_tests()
            if why:
                raise BackendError(f"emulated: {why} during the {direction}")
            bps = self.line.goodput(direction)
            setattr(result, f"{direction}_bps", bps)
            moved = int(bps / 8 / TCP_PAYLOAD_PER_FRAME * (self.seconds + 1))
            result.bytes_used += moved
            self.line.add_wan_bytes(moved)
        return result


def command(line: EmulatedLine, req: dict[str, Any]) -> dict[str, Any]:
    """The link socket's `emulate` command: status, break, repair, set, reset."""
    action = req.get("action")
    try:
        if action == "break":
            line.break_(str(req.get("fault")))
        elif action == "repair":
            line.repair(str(req.get("fault") or "all"))
        elif action == "set":
            values = req.get("settings")
            if not isinstance(values, dict) or not values:
                raise ValueError("settings: expected name=value pairs, e.g. down_mbps=10")
            line.configure(**values)
        elif action == "reset":
            line.reset()
        elif action != "status":
            raise ValueError("action: expected status, break, repair, set or reset")
    except ValueError as exc:
        return {"ok": False, "error": str(exc)}
    return {"ok": True, **line.state()}
