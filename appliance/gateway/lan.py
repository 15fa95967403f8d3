"""The LAN side of the box, made ready by the gateway at its start.

The gateway owns the LAN: the address dnsmasq hands out leases around, the portal's
address in DHCP option 114 and the ruleset's "box" address are all `lan_address` from
the site configuration, so the same service puts that address on `lan_interface`
rather than a second copy of it in a networkd file that could drift from the config
(first boot only writes the WAN's). What it does, each step idempotent:

- `lan_is_bridge`: creates the bridge if it does not exist (hostapd's `bridge=` and
  the admin's wired ports join it);
- brings the interface up and puts `lan_address` on it (`ip addr replace`), removing
  any other IPv4 address of the box on that interface (an address changed in the
  config would otherwise stay and answer too);
- reads `net.ipv4.ip_forward`: the image turns it on (sysctl.d, at boot, before any
  interface is up and while nftables' base ruleset still drops forwarding); the
  gateway's unit cannot write kernel tunables, so a box where it is off says so in
  the log and in `status` instead of silently forwarding nothing.

No personal data here: interface names and the box's own address only.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from appliance.gateway.ruleset import check_ifname

IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")


class LanError(RuntimeError):
    """The LAN could not be made ready (the message says what to check)."""


@dataclass(frozen=True)
class LanState:
    interface: str
    address: str
    forwarding: bool

    def as_dict(self) -> dict[str, object]:
        return {"interface": self.interface, "address": self.address,
                "forwarding": self.forwarding}


class Lan:
    """Runs `ip` (an argument list, no shell). `command` is how to start it: ("ip",) on
    the box; tests pass ("ip", "-n", NS) to work in a namespace they created."""

    def __init__(
        self,
        interface: str,
        address: ipaddress.IPv4Interface,
        *,
        bridge: bool = False,
        command: Sequence[str] = ("ip",),
        ip_forward: Path = IP_FORWARD,
        timeout: float = 10.0,
    ) -> None:
        self.interface = check_ifname(interface)
        self.address = address
        self.bridge = bridge
        self.command = tuple(command)
        self.ip_forward = ip_forward
        self.timeout = timeout

    def _ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([*self.command, *args], capture_output=True, text=True,
                              timeout=self.timeout, check=False)
        if check and proc.returncode != 0:
            raise LanError(f"ip {' '.join(args[:3])}: {proc.stderr.strip()[:200]}")
        return proc

    def _addresses(self) -> list[dict] | None:
        """The interface's IPv4 addresses, or None when there is no such interface."""
        proc = self._ip("-j", "-4", "addr", "show", "dev", self.interface, check=False)
        if proc.returncode != 0:
            return None
        try:
            links = json.loads(proc.stdout or "[]")
        except ValueError as exc:
            raise LanError("ip -j addr show: unreadable output") from exc
        return [a for link in links for a in link.get("addr_info", [])]

    def forwarding(self) -> bool:
        try:
            return self.ip_forward.read_text().strip() == "1"
        except OSError:
            return False

    def prepare(self) -> LanState:
        addresses = self._addresses()
        if addresses is None:
            if not self.bridge:
                raise LanError(
                    f"the LAN interface {self.interface} does not exist (no Wi-Fi adapter, "
                    "or a wrong lan_interface in telecentre.toml)"
                )
            self._ip("link", "add", "name", self.interface, "type", "bridge")
            addresses = []
        self._ip("link", "set", "dev", self.interface, "up")
        self._ip("addr", "replace", str(self.address), "dev", self.interface)
        for a in addresses:
            if a.get("scope") != "global":
                continue
            there = ipaddress.IPv4Interface(f"{a.get('local')}/{a.get('prefixlen')}")
            if there != self.address:
                self._ip("addr", "del", str(there), "dev", self.interface)
        return LanState(self.interface, str(self.address), self.forwarding())
