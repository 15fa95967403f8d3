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

    def pin(self, ip: str, mac: str) -> None:
        pin(self, ip, mac)

    def unpin(self, ip: str, mac: str) -> bool:
        return unpin(self, ip, mac)


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


class NeighbourError(RuntimeError):
    """`ip neigh` refused a change (the message is ip's, without the addresses)."""


def _neigh_change(lookup: NeighbourLookup, args: list[str]) -> None:
    proc = subprocess.run(
        [*lookup.command, "neigh", *args], capture_output=True, text=True,
        timeout=lookup.timeout, check=False,
    )
    if proc.returncode != 0:
        raise NeighbourError(f"ip neigh {args[0]} failed (exit {proc.returncode})")


def pin(lookup: NeighbourLookup, ip: str, mac: str) -> None:
    """Pin `ip` to `mac` on the LAN (a permanent neighbour entry): a client copying the IP
    can no longer point the box's ARP entry at itself, so the box's answers (the portal's
    included) keep going to the device that logged in."""
    addr, mac = parse_ipv4(ip), normalize_mac(mac)
    _neigh_change(lookup, ["replace", str(addr), "lladdr", mac, "dev", lookup.lan,
                           "nud", "permanent"])


def unpin(lookup: NeighbourLookup, ip: str, mac: str) -> bool:
    """Remove the pinned entry if it still names `mac` (the kernel learns the IP afresh);
    False when there was nothing of ours to remove."""
    addr, mac = parse_ipv4(ip), normalize_mac(mac)
    proc = subprocess.run(
        [*lookup.command, "-j", "neigh", "show", "to", str(addr), "dev", lookup.lan],
        capture_output=True, text=True, timeout=lookup.timeout, check=False,
    )
    try:
        entries = json.loads(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else []
    except json.JSONDecodeError:
        entries = []
    ours = any(
        isinstance(e, dict) and e.get("dst") == str(addr) and "PERMANENT" in (e.get("state") or [])
        and str(e.get("lladdr", "")).lower() == mac
        for e in (entries if isinstance(entries, list) else [])
    )
    if not ours:
        return False
    _neigh_change(lookup, ["del", str(addr), "dev", lookup.lan])
    return True
