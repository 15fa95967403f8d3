"""Which MAC is behind a LAN IP right now: the kernel's neighbour table, read by the gateway.

The portal only knows the address a request came from. The device's MAC is never taken
from the browser (anything in a form, a header or a cookie is the client's to forge): the
gateway reads it from the neighbour (ARP) entry of the LAN interface, which the kernel
filled when the device talked to the box a moment ago.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Sequence

from appliance.gateway.ruleset import check_ifname, normalize_mac, parse_ipv4

# States in which the kernel has no usable link-layer address for the IP.
_UNUSABLE = {"FAILED", "INCOMPLETE"}


class NeighbourLookup:
    """Runs `ip -j neigh show to IP dev LAN` (an argument list, no shell).

    `command` is how to start ip: ("ip",) on the box; tests pass ("ip", "-n", NS) to read
    a namespace's table.
    """

    def __init__(
        self,
        lan: str,
        network: ipaddress.IPv4Network,
        command: Sequence[str] = ("ip",),
        timeout: float = 3.0,
    ) -> None:
        self.lan = check_ifname(lan)
        self.network = network
        self.command = tuple(command)
        self.timeout = timeout

    def mac_of(self, ip: str) -> str | None:
        """The MAC the LAN interface resolves `ip` to, or None (unknown, off-LAN, failed).

        ValueError for something that is not an IPv4 address.
        """
        addr = parse_ipv4(ip)
        if addr not in self.network or addr in (
            self.network.network_address,
            self.network.broadcast_address,
        ):
            return None
        proc = subprocess.run(
            [*self.command, "-j", "neigh", "show", "to", str(addr), "dev", self.lan],
            capture_output=True,
            text=True,
            timeout=self.timeout,
            check=False,
        )
        if proc.returncode != 0 or not proc.stdout.strip():
            return None
        return pick_mac(json.loads(proc.stdout), str(addr))


def pick_mac(entries: object, ip: str) -> str | None:
    """The usable link-layer address for `ip` among `ip -j neigh` entries, normalized."""
    if not isinstance(entries, list):
        return None
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("dst") != ip:
            continue
        states = entry.get("state") or []
        if any(s in _UNUSABLE for s in states):
            continue
        try:
            return normalize_mac(str(entry.get("lladdr", "")))
        except ValueError:
            continue
    return None
