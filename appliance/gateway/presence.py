"""Which devices are on the LAN: dnsmasq's leases, and ARP probes of the authorized ones.

The gateway learns the LAN's devices (MAC, IP, the hostname they sent, as data only) from
dnsmasq's lease file, and checks that each authorized device is still there with an ARP
probe every `presence_interval_seconds`: one unicast who-has per device, sent at once on
one packet socket (CAP_NET_RAW), answers matched by IP *and* MAC, one timeout per round
at most. A device silent for `absent_after_seconds` has left: its session ends ("left"),
so the legal log's end time is right and its IP cannot serve the next device.

Frames are built and parsed with scapy; the socket is the prober's own (scapy's sniffer
is not needed for a handful of ARP frames).
"""

from __future__ import annotations

import ipaddress
import logging
import select
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.gateway.ruleset import check_ifname, normalize_mac, parse_ipv4
from appliance.scapy_import import cryptography_hidden

log = logging.getLogger(__name__)

ETH_P_ARP = 0x0806
HOSTNAME_MAX = 63


@dataclass(frozen=True)
class Lease:
    """One line of dnsmasq's lease file. `hostname` is what the device said: data only."""

    mac: str
    ip: ipaddress.IPv4Address
    hostname: str
    expires: float  # 0: an infinite lease


def parse_leases(text: str) -> list[Lease]:
    """dnsmasq's format: `expiry MAC IP hostname client-id` per line ("*" = none).

    A line that does not parse (an IPv6 lease, a DUID line, garbage) is skipped.
    """
    out = []
    for line in text.splitlines():
        fields = line.split(" ")
        if len(fields) < 4:
            continue
        try:
            expires = float(int(fields[0]))
            mac = normalize_mac(fields[1])
            ip = parse_ipv4(fields[2])
        except ValueError:
            continue
        name = "" if fields[3] == "*" else fields[3]
        name = "".join(c for c in name if c.isprintable())[:HOSTNAME_MAX]
        out.append(Lease(mac, ip, name, expires))
    return out


class LeaseFile:
    """dnsmasq's lease file, read again only when it changed (dnsmasq rewrites it whole)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int] | None = None
        self._leases: dict[str, Lease] = {}

    def current(self, now: float | None = None) -> dict[str, Lease]:
        """Live leases by MAC (an expired one is not a device on the LAN)."""
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
            if stamp != self._stamp:
                text = self.path.read_text("utf-8", errors="replace")
                self._leases = {x.mac: x for x in parse_leases(text)}
                self._stamp = stamp
        except FileNotFoundError:
            self._leases, self._stamp = {}, None
        except OSError as exc:
            log.warning("lease file not read (%s)", type(exc).__name__)
        now = time.time() if now is None else now
        return {m: x for m, x in self._leases.items() if x.expires == 0 or x.expires > now}


def _packet_socket(lan: str) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
    try:
        sock.bind((lan, ETH_P_ARP))
    except OSError:
        sock.close()
        raise
    return sock


def _scapy_arp() -> tuple[Any, Any]:
    """scapy's ARP and Ether classes, imported without `cryptography` (appliance.scapy_import)."""
    with cryptography_hidden():
        from scapy.layers.l2 import ARP, Ether
    return ARP, Ether


class ArpProber:
    """Unicast ARP who-has to each (MAC, IP); returns the MACs that answered as that IP.

    `socket_factory(lan)` opens the packet socket (tests open it inside a namespace).
    """

    def __init__(
        self,
        lan: str,
        box_ip: ipaddress.IPv4Address,
        *,
        timeout: float = 1.0,
        socket_factory: Callable[[str], socket.socket] = _packet_socket,
    ) -> None:
        self.lan = check_ifname(lan)
        self.box_ip = ipaddress.IPv4Address(box_ip)
        self.timeout = timeout
        self.socket_factory = socket_factory

    def probe(self, targets: Iterable[tuple[str, ipaddress.IPv4Address]]) -> set[str]:
        """OSError when the socket cannot be opened or used: then nobody is called absent."""
        wanted = {(normalize_mac(mac), str(ip)) for mac, ip in targets}
        if not wanted:
            return set()
        # Here, not at the top: scapy costs ~20 MB of memory, only a prober needs it.
        ARP, Ether = _scapy_arp()

        seen: set[str] = set()
        sock = self.socket_factory(self.lan)
        try:
            ours = sock.getsockname()[4]  # the LAN interface's own MAC
            src = ":".join(f"{b:02x}" for b in ours[:6])
            for mac, ip in sorted(wanted):
                frame = Ether(dst=mac, src=src) / ARP(
                    op=1, hwsrc=src, psrc=str(self.box_ip), hwdst="00:00:00:00:00:00", pdst=ip
                )
                sock.send(bytes(frame))
            deadline = time.monotonic() + self.timeout
            while len(seen) < len(wanted):
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([sock], [], [], left)[0]:
                    break
                data = sock.recv(2048)
                try:
                    arp = Ether(data).getlayer(ARP)
                except Exception:  # a frame scapy cannot parse is not an answer
                    continue
                if arp is None:
                    continue
                # An answer, or the device's own request: either way it is there, as that IP.
                key = (str(arp.hwsrc).lower(), str(arp.psrc))
                if key in wanted:
                    seen.add(key[0])
        finally:
            sock.close()
        return seen

