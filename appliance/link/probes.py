"""Light probes: ICMP echo to the box, the first ISP hop and the anchors; DNS timing.

Packets are built and parsed with scapy. Echoes go through one raw ICMP socket the
prober owns (CAP_NET_RAW is the only privilege it needs), sent to every target at
once and matched by identifier and sequence, so a round costs one timeout at most
and timing is not blurred by scapy's sniffer. The traceroute that finds the first ISP
hop runs once an hour and uses scapy's own send/receive.

Probe traffic is kept small (under 5 MB a day at the default 10 s, even counted as
Ethernet frames on the cable to the box): one echo per target per round with no
payload (the identifier and sequence match the answer), a second echo only to a
target that did not answer the first, and the box echoed every other round only. In
the other rounds an answer from beyond the box proves the box works; when nothing
beyond answers, the box gets the second echo, so every round still judges it.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import random
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from appliance.scapy_import import cryptography_hidden

# scapy is imported where packets are built, not here: importing it opens a netlink
# socket, and every `telecentre` command imports this module through the CLI, the door
# and the panel included, whose units allow no AF_NETLINK (systemd/, RestrictAddressFamilies).
# And without cryptography, which it would load when installed (appliance/scapy_import.py).

log = logging.getLogger(__name__)

IP_HEADER = 20
UDP_HEADER = 8
ICMP_ECHO_PAYLOAD = 0
# The box is echoed in one round out of GATEWAY_EVERY (and whenever nothing beyond answers).
GATEWAY_EVERY = 2
ICMP_ECHO_BYTES = IP_HEADER + 8 + ICMP_ECHO_PAYLOAD


@dataclass(frozen=True)
class Sample:
    """One target in one round: echoes (or queries) sent and answered, and the RTT."""

    role: str
    target: str
    sent: int
    received: int
    rtt: float | None


def default_gateway(route_path: Path | str = "/proc/net/route") -> str | None:
    """The IPv4 default route's gateway, from a /proc/net/route-style file."""
    try:
        lines = Path(route_path).read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) < 4:
            continue
        destination, gateway, flags = fields[1], fields[2], int(fields[3], 16)
        if destination == "00000000" and flags & 0x2:  # RTF_GATEWAY
            return socket.inet_ntoa(struct.pack("<I", int(gateway, 16)))
    return None


def resolv_conf_nameserver(path: Path | str = "/etc/resolv.conf") -> str | None:
    """The first IPv4 nameserver listed in a resolv.conf-style file."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            try:
                return str(ipaddress.IPv4Address(fields[1]))
            except ValueError:
                continue
    return None


class NoRawSocket(PermissionError):
    """The kernel refused the raw ICMP socket: the process lacks CAP_NET_RAW."""


class Pinger:
    """ICMP echo over a raw socket: send to many targets at once, collect the answers.

    Each Pinger has its own random identifier, so two of them (the probe loop and the
    latency-under-load sampler during a test) never take each other's answers.
    """

    def __init__(self, *, rng: random.Random | None = None) -> None:
        try:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        except PermissionError as exc:
            raise NoRawSocket(
                f"no raw ICMP socket ({exc.strerror}): the link service needs CAP_NET_RAW "
                "for its probes (systemd/telecentre-link.service gives it "
                'AmbientCapabilities=CAP_NET_RAW); or set [link] line = "emulated"'
            ) from exc
        self.sock.setblocking(False)
        self.ident = (rng or random.Random()).randrange(1, 0x10000)
        self.seq = 0
        self.bytes = 0
        self._lock = threading.Lock()
        self._stream: dict[int, tuple[str, float]] = {}  # seq -> (target, sent at)

    def close(self) -> None:
        self.sock.close()

    def ping(
        self, targets: Sequence[str], timeout: float, *, attempts: int = 2,
        fallback: Sequence[str] = (),
    ) -> dict[str, tuple[int, int, float | None]]:
        """(sent, received, rtt of the first answer) per target echoed.

        Targets that did not answer get another echo, up to `attempts` in all. The
        `fallback` targets join from the second attempt on, only if no target answered
        the first; they are in the result only then.
        """
        results: dict[str, tuple[int, int, float | None]] = {t: (0, 0, None) for t in targets}
        with self._lock:
            todo = list(dict.fromkeys(targets))
            for attempt in range(attempts):
                if not todo:
                    break
                answered = self._round(todo, timeout)
                for target in todo:
                    sent, received, rtt = results[target]
                    got = answered.get(target)
                    results[target] = (sent + 1, received + (got is not None), rtt or got)
                todo = [t for t in todo if answered.get(t) is None]
                if attempt == 0 and not answered:
                    extra = [t for t in dict.fromkeys(fallback) if t not in results]
                    results.update((t, (0, 0, None)) for t in extra)
                    todo += extra
        return results

    # --- a stream of echoes with several in flight (the latency-under-load sampler) ---

    def send(self, target: str) -> int:
        """Send one echo to `target` now; the key its answer comes back under."""
        with cryptography_hidden():
            from scapy.layers.inet import ICMP

        with self._lock:
            self.seq = (self.seq + 1) & 0xFFFF
            seq = self.seq
            try:
                self.sock.sendto(bytes(ICMP(type=8, id=self.ident, seq=seq)), (target, 0))
                self.bytes += ICMP_ECHO_BYTES
            except OSError as exc:  # no route: this echo is lost
                log.debug("echo to %s not sent: %s", target, exc)
            self._stream[seq] = (target, time.perf_counter())
        return seq

    def replies(self, wait: float) -> list[tuple[int, float]]:
        """(key, rtt) of the answers to `send` that arrive within `wait` seconds."""
        with cryptography_hidden():
            from scapy.layers.inet import ICMP, IP

        got: list[tuple[int, float]] = []
        ready, _, _ = select.select([self.sock], [], [], max(0.0, wait))
        if not ready:
            return got
        while True:
            try:
                data, (source, _port) = self.sock.recvfrom(2048)
            except BlockingIOError:
                return got
            received_at = time.perf_counter()
            reply = IP(data)
            if not reply.haslayer(ICMP):
                continue
            icmp = reply[ICMP]
            if icmp.type != 0 or icmp.id != self.ident:
                continue
            with self._lock:
                sent = self._stream.get(icmp.seq)
                if sent is None or sent[0] != source:
                    continue
                del self._stream[icmp.seq]
                self.bytes += len(data)
            got.append((icmp.seq, received_at - sent[1]))

    def _round(self, targets: Sequence[str], timeout: float) -> dict[str, float]:
        with cryptography_hidden():
            from scapy.layers.inet import ICMP, IP
            from scapy.packet import Raw

        pending: dict[int, tuple[str, float]] = {}
        for target in targets:
            self.seq = (self.seq + 1) & 0xFFFF
            echo = ICMP(type=8, id=self.ident, seq=self.seq)
            packet = bytes(echo / Raw(os.urandom(ICMP_ECHO_PAYLOAD)) if ICMP_ECHO_PAYLOAD
                           else echo)
            try:
                self.sock.sendto(packet, (target, 0))
                self.bytes += ICMP_ECHO_BYTES
            except OSError as exc:  # no route (link down): this echo is lost
                log.debug("echo to %s not sent: %s", target, exc)
            pending[self.seq] = (target, time.perf_counter())
        answered: dict[str, float] = {}
        deadline = time.perf_counter() + timeout
        while pending:
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            ready, _, _ = select.select([self.sock], [], [], left)
            if not ready:
                break
            while True:
                try:
                    data, (source, _port) = self.sock.recvfrom(2048)
                except BlockingIOError:
                    break
                received_at = time.perf_counter()
                reply = IP(data)
                if not reply.haslayer(ICMP):
                    continue
                icmp = reply[ICMP]
                if icmp.type != 0 or icmp.id != self.ident or icmp.seq not in pending:
                    continue
                target, sent_at = pending[icmp.seq]
                if source != target:
                    continue
                del pending[icmp.seq]
                self.bytes += len(data)
                answered[target] = received_at - sent_at
        return answered


class EchoSender(Protocol):
    """What `echo_stream` needs of a pinger (`Pinger`, the emulated line's, a test's)."""

    def send(self, target: str) -> int: ...

    def replies(self, wait: float) -> list[tuple[int, float]]: ...


@dataclass
class EchoStream:
    """What a stream of echoes gave: RTTs of the answered ones, how many were sent and
    how many were still unanswered at the timeout (lost, or slower than it)."""

    rtts: list[float] = field(default_factory=list)
    sent: int = 0
    lost: int = 0


def echo_stream(
    pinger: EchoSender,
    target: str,
    *,
    every: float,
    timeout: float,
    clock: Callable[[], float],
    stop: Callable[[], bool] | None = None,
    count: int | None = None,
) -> EchoStream:
    """Echo `target` every `every` seconds until `stop()` or `count` echoes, each one
    waited for up to `timeout` with the others in flight, matched by key.

    Sending never waits for an answer, so an echo that queues for several seconds
    behind a test's traffic is still timed, not dropped; after the last send the
    answers still due are waited for (up to `timeout`).
    """
    out = EchoStream()
    pending: dict[int, float] = {}
    next_send = clock()
    while True:
        now = clock()
        sending = (count is None or out.sent < count) and not (stop is not None and stop())
        if sending and now >= next_send:
            pending[pinger.send(target)] = now
            out.sent += 1
            next_send = max(next_send + every, now)
            continue
        for key, sent_at in list(pending.items()):
            if now - sent_at >= timeout:
                del pending[key]
                out.lost += 1
        if not sending and not pending:
            return out
        due = [sent_at + timeout for sent_at in pending.values()]
        if sending:
            due.append(next_send)
        for key, rtt in pinger.replies(max(0.0, min(due) - now)):
            if pending.pop(key, None) is not None:
                out.rtts.append(rtt)


def first_isp_hop(
    destination: str, gateway: str | None, *, max_ttl: int = 8, timeout: float = 2.0
) -> str | None:
    """The first router beyond the box on the way to `destination`, by traceroute.

    Hops that answer "time exceeded" are routers; the first one that is not the box
    is the ISP's. None when no router beyond the box answers (some ISPs filter).
    """
    with cryptography_hidden():
        from scapy.config import conf
        from scapy.layers.inet import ICMP, IP
        from scapy.sendrecv import sr

    conf.route.resync()  # links came and went since the last traceroute
    ident = random.randrange(1, 0x10000)
    answered, _ = sr(
        IP(dst=destination, ttl=(1, max_ttl)) / ICMP(id=ident),
        timeout=timeout,
        verbose=0,
    )
    hops = sorted(
        (sent.ttl, received.src, received[ICMP].type)
        for sent, received in answered
        if received.haslayer(ICMP)
    )
    for _ttl, source, icmp_type in hops:
        if icmp_type != 11:  # reached the destination: no router beyond the box answered
            return None
        if source != gateway:
            return source
    return None


class DnsProbe:
    """Times one A query against the resolver; failure is a timeout or a non-answer."""

    def __init__(self, *, rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()
        self.bytes = 0

    def resolve(self, resolver: str, name: str, timeout: float) -> float | None:
        """Seconds to a NOERROR answer with at least one record, or None."""
        with cryptography_hidden():
            from scapy.layers.dns import DNS, DNSQR

        query_id = self.rng.randrange(0x10000)
        query = bytes(DNS(id=query_id, rd=1, qd=DNSQR(qname=name, qtype="A")))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            try:
                sock.connect((resolver, 53))
                started = time.perf_counter()
                sock.send(query)
                self.bytes += IP_HEADER + UDP_HEADER + len(query)
                deadline = started + timeout
                while True:
                    sock.settimeout(max(0.001, deadline - time.perf_counter()))
                    data = sock.recv(4096)
                    elapsed = time.perf_counter() - started
                    self.bytes += IP_HEADER + UDP_HEADER + len(data)
                    try:
                        answer = DNS(data)
                    except Exception:  # a garbled datagram is not an answer
                        continue
                    if answer.id != query_id or not answer.qr:
                        continue
                    return elapsed if answer.rcode == 0 and answer.ancount > 0 else None
            except OSError:  # timeout, refused, no route
                return None


def box_works(samples: Sequence[Sample]) -> bool:
    """Whether the box worked in a round: its own answer, else any answer from beyond it
    (the ISP hop or an anchor), which can only have come through the box."""
    box = [s.received > 0 for s in samples if s.role == "gateway"]
    if box:
        return any(box)
    return any(s.received > 0 for s in samples if s.role in ("isp_hop", "anchor"))


class Prober:
    """One round of light probes: the box, the ISP hop, the anchors, then DNS.

    Where the box, hop and resolver are not configured they are found (default
    route, traceroute, resolv.conf); paths are parameters so tests run on fixtures,
    and the pinger, DNS probe and traceroute are, so the same rounds run on the
    emulated line.
    """

    def __init__(
        self,
        *,
        anchors: Sequence[str],
        dns_names: Sequence[str],
        timeout: float,
        gateway: str = "",
        isp_hop: str = "",
        resolver: str = "",
        route_path: Path | str = "/proc/net/route",
        resolv_conf: Path | str = "/etc/resolv.conf",
        traceroute: Callable[[str, str | None], str | None] = first_isp_hop,
        rng: random.Random | None = None,
        pinger: Pinger | None = None,
        dns: DnsProbe | None = None,
        gateway_every: int = GATEWAY_EVERY,
    ) -> None:
        self.anchors = tuple(anchors)
        self.dns_names = tuple(dns_names)
        self.timeout = timeout
        self.fixed_gateway = gateway
        self.fixed_isp_hop = isp_hop
        self.fixed_resolver = resolver
        self.route_path = route_path
        self.resolv_conf = resolv_conf
        self.traceroute = traceroute
        # The emulated line passes its own (appliance/link/emulated.py).
        self.pinger = pinger if pinger is not None else Pinger(rng=rng)
        self.dns = dns if dns is not None else DnsProbe(rng=rng)
        self.gateway: str | None = gateway or None
        self.isp_hop: str | None = isp_hop or None
        self._name_index = 0
        self.gateway_every = max(1, gateway_every)
        self._rounds = 0

    @property
    def bytes(self) -> int:
        """IP bytes of probe traffic so far (sent and received)."""
        return self.pinger.bytes + self.dns.bytes

    def close(self) -> None:
        self.pinger.close()

    def refresh_gateway(self) -> str | None:
        """The box: configured, else the default route's (kept when the route vanishes)."""
        if not self.fixed_gateway:
            found = default_gateway(self.route_path)
            if found:
                self.gateway = found
        return self.gateway

    def find_isp_hop(self) -> str | None:
        """Run the traceroute (unless the hop is configured); keeps the last known hop."""
        if self.fixed_isp_hop:
            return self.isp_hop
        try:
            hop = self.traceroute(self.anchors[0], self.refresh_gateway())
        except OSError as exc:
            log.warning("traceroute failed: %s", exc)
            return self.isp_hop
        if hop:
            self.isp_hop = hop
        return self.isp_hop

    def resolver(self) -> str | None:
        return self.fixed_resolver or resolv_conf_nameserver(self.resolv_conf)

    def round(self) -> list[Sample]:
        """Probe everything once; roles: gateway, isp_hop, anchor, dns.

        The box is left out of one round in `gateway_every` unless nothing beyond it
        answers (then it gets the second echo): see `box_works`.
        """
        gateway = self.refresh_gateway()
        box_now = bool(gateway) and self._rounds % self.gateway_every == 0
        self._rounds += 1
        roles: list[tuple[str, str]] = []
        if self.isp_hop:
            roles.append(("isp_hop", self.isp_hop))
        roles += [("anchor", a) for a in self.anchors]
        if box_now:
            roles.insert(0, ("gateway", gateway))
        fallback = [gateway] if gateway and not box_now else []
        answers = self.pinger.ping([t for _r, t in roles], self.timeout, fallback=fallback)
        if fallback and gateway in answers:
            roles.insert(0, ("gateway", gateway))
        samples = [Sample(role, t, *answers[t]) for role, t in roles]
        resolver = self.resolver()
        if resolver and self.dns_names:
            name = self.dns_names[self._name_index % len(self.dns_names)]
            self._name_index += 1
            rtt = self.dns.resolve(resolver, name, self.timeout)
            samples.append(Sample("dns", resolver, 1, rtt is not None, rtt))
        return samples
