"""The `inet telecentre` nftables table, as libnftables JSON built by pure functions.

Why JSON and not nft's text syntax: a MAC, an IP or a name is a JSON string value,
so no hostname, voucher code or MAC can ever turn into nft syntax (no quoting to get
right, nothing to escape). Why `nft -j -f -` through subprocess and not the
python3-nftables bindings: those are a Debian package that the project's venv (a
separate Python) cannot import, and they wrap the same libnftables that the `nft`
binary uses; one batch on stdin is one kernel transaction either way.

Layout of the table (the gateway service owns it, nothing else writes to it):

- `allowed4` set (`ether_addr . ipv4_addr`): authorized devices, bound to MAC and IP
  together, so a device copying an authorized IP with its own MAC gets nothing.
- per device, two chains (`du_<mac>` upload, `dd_<mac>` download, the MAC as 12 hex
  digits), reached through the `up4` map (`ether_addr . ipv4_addr : verdict`) and the
  `down4` map (`ipv4_addr : verdict`). Each is one rule: count the packet in the device's
  named `counter` (`cu_<mac>` / `cd_<mac>`: the legal log's bytes up and down per device
  session), set its priority to the device's htb leaf (htb, on the LAN for download and
  on the WAN after NAT for upload, takes it straight there: shaping.py), and go to the
  owner's chain. One hash lookup per packet and direction, the verdict map's: the
  device's counter, class and owner are in its chain, not in maps of their own.
  Named counters rather than the `counter` flag on the map elements: a named counter
  is created already holding the session's bytes (like a quota's `used`), so a restart
  or a reboot restores them exactly; nft 1.0.6 ignores the byte count given to a set
  element's counter in JSON.
- per owner (a member, a voucher or a guest device): a named `quota` object and a
  chain `o_<kind><id>` that counts every packet in the kernel and, once the quota is
  spent, drops ("block") or polices to 256 kbit/s through a named `limit` ("throttle").
- unauthorized devices reach only DHCP, DNS and the portal on the box; their HTTP is
  redirected to the portal; IPv6 never crosses the gateway from or to the LAN.
- a `bridge telecentre` table drops frames bridged between LAN ports (client isolation
  when the LAN is a bridge: the box's only bridge).

Object names are built from whole numbers only (`o_m12`, `q_v3`): never from text.
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

FAMILY = "inet"
TABLE = "telecentre"
BRIDGE_FAMILY = "bridge"

KINDS = {"member": "m", "voucher": "v", "guest": "g"}
POLICIES = ("block", "throttle")
THROTTLE_KBIT = 256
# nft's `kbytes` are KiB (1024 bytes): 32 kbytes/s would be 262 kbit/s. In bytes, exact.
THROTTLE_BYTES_PER_S = THROTTLE_KBIT * 1000 // 8  # 32,000

# Where a guest must never go, even once authorized: the ISP box's network and any
# other private network behind the WAN (RFC 1918, CGNAT, link-local).
DEFAULT_BLOCKED = (
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "169.254.0.0/16",
)

# Shaping: a client's htb leaf is 1:<CLIENT_BASE + id> on both interfaces, id = the low
# 12 bits of its address (unique in a LAN of /20 or smaller; never 0 for a host there).
CLIENT_BASE = 0x1000
MAX_CLIENT_ID = 0xFFF
SHAPING_MAJOR = 1

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_IFNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,15}$")

Command = dict[str, Any]


class NftError(RuntimeError):
    """nft refused a batch (nothing of it was applied: the batch is one transaction)."""


def normalize_mac(value: str) -> str:
    """A MAC as nft prints it (lower case, colons); ValueError for anything else."""
    if not isinstance(value, str):
        raise ValueError("a MAC address must be text")
    mac = value.strip().lower().replace("-", ":")
    if not _MAC.match(mac):
        raise ValueError(f"not a MAC address: {value!r}")
    if int(mac[:2], 16) & 1:
        raise ValueError(f"a multicast MAC cannot be a client: {value!r}")
    return mac


def parse_ipv4(value: str) -> ipaddress.IPv4Address:
    """A client's IPv4 address; ValueError for IPv6, networks or garbage."""
    addr = ipaddress.ip_address(value)
    if not isinstance(addr, ipaddress.IPv4Address):
        raise ValueError(f"not an IPv4 address: {value!r}")
    return addr


def check_ifname(value: str) -> str:
    """A Linux interface name (at most 15 characters, no spaces or slashes)."""
    if not isinstance(value, str) or not _IFNAME.match(value):
        raise ValueError(f"not an interface name: {value!r}")
    return value


def client_id(ip: ipaddress.IPv4Address) -> int:
    """A client's shaping id: its address's low 12 bits (1 to 4095 on a /20 or smaller)."""
    cid = int(ip) & MAX_CLIENT_ID
    if cid == 0:
        raise ValueError(f"{ip} cannot be a client (its low 12 bits are 0)")
    return cid


def class_id(ip: ipaddress.IPv4Address) -> str:
    """The htb class a client's packets go to, as nft's `classid` type writes it."""
    return f"{SHAPING_MAJOR:x}:{CLIENT_BASE + client_id(ip):x}"


@dataclass(frozen=True, order=True)
class Owner:
    """Who a quota belongs to: a member (all their devices), a voucher, or a guest device."""

    kind: str
    id: int

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"owner kind must be one of {', '.join(KINDS)}: {self.kind!r}")
        if isinstance(self.id, bool) or not isinstance(self.id, int) or not 0 < self.id < 2**53:
            raise ValueError(f"owner id must be a positive whole number: {self.id!r}")

    @property
    def tag(self) -> str:
        return f"{KINDS[self.kind]}{self.id}"

    @property
    def chain(self) -> str:
        return f"o_{self.tag}"

    @property
    def quota(self) -> str:
        return f"q_{self.tag}"

    @property
    def limit(self) -> str:
        return f"l_{self.tag}"

    @classmethod
    def from_tag(cls, tag: str) -> Owner | None:
        """The owner named by an object's tag (`m12`), or None for a foreign name."""
        by_letter = {v: k for k, v in KINDS.items()}
        if len(tag) < 2 or tag[0] not in by_letter or not tag[1:].isdigit():
            return None
        return cls(by_letter[tag[0]], int(tag[1:]))


@dataclass(frozen=True)
class OwnerQuota:
    """An owner's quota for the day: limit, bytes already used, what happens when spent."""

    owner: Owner
    limit_bytes: int
    used_bytes: int = 0
    policy: str = "block"

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be block or throttle: {self.policy!r}")
        for name in ("limit_bytes", "used_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a whole number of bytes: {value!r}")
        if self.limit_bytes == 0:
            raise ValueError("limit_bytes must be positive")


@dataclass(frozen=True)
class Device:
    """An authorized device: its MAC and IPv4 address together, and whose quota it uses."""

    mac: str
    ip: ipaddress.IPv4Address
    owner: Owner

    @classmethod
    def parse(cls, mac: str, ip: str, owner: Owner) -> Device:
        return cls(normalize_mac(mac), parse_ipv4(ip), owner)

    @property
    def counter_up(self) -> str:
        return f"cu_{normalize_mac(self.mac).replace(':', '')}"

    @property
    def counter_down(self) -> str:
        return f"cd_{normalize_mac(self.mac).replace(':', '')}"

    @property
    def chain_up(self) -> str:
        return f"du_{normalize_mac(self.mac).replace(':', '')}"

    @property
    def chain_down(self) -> str:
        return f"dd_{normalize_mac(self.mac).replace(':', '')}"


@dataclass(frozen=True)
class DeviceBytes:
    """A device session's bytes through the gateway, as the kernel counts them (IP
    packets: headers included, Ethernet not), upload and download."""

    up: int = 0
    down: int = 0

    def __post_init__(self) -> None:
        for value in (self.up, self.down):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"a byte count must be a whole number: {value!r}")


@dataclass(frozen=True)
class Network:
    """The box's side of the gateway: interfaces, its LAN address, the portal's port."""

    lan: str
    wan: str
    lan_address: ipaddress.IPv4Interface
    portal_port: int = 8088
    dns_port: int = 53
    blocked: tuple[ipaddress.IPv4Network, ...] = field(
        default_factory=lambda: tuple(ipaddress.IPv4Network(n) for n in DEFAULT_BLOCKED)
    )
    lan_is_bridge: bool = False
    # The portal over HTTPS (portal_url https): the LAN's port 443 to the box goes here.
    portal_tls_port: int | None = None

    def __post_init__(self) -> None:
        check_ifname(self.lan)
        check_ifname(self.wan)
        if self.lan == self.wan:
            raise ValueError("the LAN and WAN interfaces must differ")
        for port in (self.portal_port, self.dns_port, self.portal_tls_port or 1):
            if not 0 < port < 65536:
                raise ValueError(f"not a port: {port}")
        if self.lan_address.network.prefixlen < 20:
            raise ValueError("the LAN must be a /20 or smaller (shaping class ids are 12 bits)")


# --- expressions ------------------------------------------------------------------------


def _payload(protocol: str, name: str) -> dict[str, Any]:
    return {"payload": {"protocol": protocol, "field": name}}


def _meta(key: str) -> dict[str, Any]:
    return {"meta": {"key": key}}


def _match(left: Any, right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


_MAC_IP_SRC = {"concat": [_payload("ether", "saddr"), _payload("ip", "saddr")]}


def _base(kind: str, **obj: Any) -> Command:
    return {kind: {"family": FAMILY, "table": TABLE, **obj}}


def _add(kind: str, **obj: Any) -> Command:
    return {"add": _base(kind, **obj)}


def _rule(chain: str, *expr: dict[str, Any]) -> Command:
    return _add("rule", chain=chain, expr=list(expr))


def _element_key(device: Device) -> dict[str, Any]:
    return {"concat": [device.mac, str(device.ip)]}


def batch(commands: Iterable[Command]) -> dict[str, Any]:
    """One nft transaction: applied whole or not at all."""
    return {"nftables": [{"metainfo": {"json_schema_version": 1}}, *commands]}


# --- the table --------------------------------------------------------------------------


def owner_commands(q: OwnerQuota) -> list[Command]:
    """Create an owner's quota, its throttle limit if any, and its chain.

    `used` is how a quota survives a restart: the object is created already holding
    the bytes of the day. (Adding an existing quota never changes its `used`; the
    full ruleset replaces the table, so the objects are always new there.)
    """
    o = q.owner
    cmds: list[Command] = [
        _add("quota", name=o.quota, bytes=q.limit_bytes, used=q.used_bytes, inv=True)
    ]
    spent: list[dict[str, Any]] = [{"quota": o.quota}]
    if q.policy == "throttle":
        cmds.append(
            _add(
                "limit",
                name=o.limit,
                rate=THROTTLE_BYTES_PER_S,
                rate_unit="bytes",
                per="second",
                burst=THROTTLE_BYTES_PER_S,
                burst_unit="bytes",
                inv=True,
            )
        )
        spent.append({"limit": o.limit})
    cmds.append(_add("chain", name=o.chain))
    # Every packet of the owner, both ways, is counted here; the kernel drops the
    # first packet that would take the total past the limit, and all after it.
    cmds.append(_rule(o.chain, *spent, {"drop": None}))
    cmds.append(_rule(o.chain, {"accept": None}))
    return cmds


def device_commands(device: Device, counted: DeviceBytes | None = None) -> list[Command]:
    """Let a device through to its owner's chain (which must exist), counting its bytes.

    `counted`: what the session already carried (a restore); the counters start there.
    """
    counted = counted or DeviceBytes()
    prio = {"mangle": {"key": _meta("priority"), "value": class_id(device.ip)}}
    to_owner = {"goto": {"target": device.owner.chain}}
    return [
        _add("counter", name=device.counter_up, packets=0, bytes=counted.up),
        _add("counter", name=device.counter_down, packets=0, bytes=counted.down),
        _add("chain", name=device.chain_up),
        _add("chain", name=device.chain_down),
        _rule(device.chain_up, {"counter": device.counter_up}, prio, to_owner),
        _rule(device.chain_down, {"counter": device.counter_down}, prio, to_owner),
        _add("element", name="allowed4", elem=[_element_key(device)]),
        _add("element", name="up4",
             elem=[[_element_key(device), {"goto": {"target": device.chain_up}}]]),
        _add("element", name="down4",
             elem=[[str(device.ip), {"goto": {"target": device.chain_down}}]]),
    ]


def remove_device_commands(device: Device) -> list[Command]:
    """Take a device out of the maps: its next packet meets the portal again. The maps'
    elements go first (a chain or a counter that something still names cannot go)."""
    return [
        {"delete": _base("element", name="allowed4", elem=[_element_key(device)])},
        {"delete": _base("element", name="up4", elem=[_element_key(device)])},
        {"delete": _base("element", name="down4", elem=[str(device.ip)])},
        {"flush": _base("chain", name=device.chain_up)},
        {"flush": _base("chain", name=device.chain_down)},
        {"delete": _base("chain", name=device.chain_up)},
        {"delete": _base("chain", name=device.chain_down)},
        {"delete": _base("counter", name=device.counter_up)},
        {"delete": _base("counter", name=device.counter_down)},
    ]


def spent_commands(add: Iterable[Device], remove: Iterable[Device]) -> list[Command]:
    """Mark devices as spent-and-blocked (their HTTP meets the "quota reached" page), or
    unmark them (extended, reset, a new day, gone)."""
    cmds: list[Command] = []
    gone = [_element_key(d) for d in remove]
    new = [_element_key(d) for d in add]
    if gone:
        cmds.append({"delete": _base("element", name="spent4", elem=gone)})
    if new:
        cmds.append(_add("element", name="spent4", elem=new))
    return cmds


def extend_commands(owner: Owner, new_limit_bytes: int) -> list[Command]:
    """Change a quota's limit in place: the kernel keeps what it has counted, exactly."""
    if new_limit_bytes <= 0:
        raise ValueError("a quota limit must be positive")
    return [_add("quota", name=owner.quota, bytes=new_limit_bytes, inv=True)]


def reset_commands(owners: Iterable[Owner]) -> list[Command]:
    """Set the owners' counted bytes to zero; nft answers with the values before."""
    return [{"reset": _base("quota", name=o.quota)} for o in owners]


def _base_chain(name: str, kind: str, hook: str, prio: int) -> Command:
    return _add("chain", name=name, type=kind, hook=hook, prio=prio, policy="accept")


def table_commands(net: Network) -> list[Command]:
    """The fixed part of the table: sets, maps, base chains and the portal's rules."""
    lan = net.lan
    box = str(net.lan_address.ip)
    iif_lan = _match(_meta("iifname"), lan)
    oif_lan = _match(_meta("oifname"), lan)
    unauthorized = _match(_MAC_IP_SRC, "@allowed4", "!=")
    ipv6 = _match(_meta("nfproto"), "ipv6")
    blocked = [
        {"prefix": {"addr": str(n.network_address), "len": n.prefixlen}} for n in net.blocked
    ]
    cmds: list[Command] = [
        _add("set", name="allowed4", type=["ether_addr", "ipv4_addr"]),
        _add("map", name="up4", type=["ether_addr", "ipv4_addr"], map="verdict"),
        _add("map", name="down4", type="ipv4_addr", map="verdict"),
        _add("set", name="blocked4", type="ipv4_addr", flags=["interval"]),
        # Devices whose owner's quota is spent under the "block" policy: their HTTP goes
        # to the portal, which says "quota reached" (the rest is dropped by the quota).
        _add("set", name="spent4", type=["ether_addr", "ipv4_addr"]),
    ]
    if blocked:
        cmds.append(_add("element", name="blocked4", elem=blocked))
    cmds += [
        # NAT: unauthorized devices' HTTP goes to the portal; their DNS to the box even
        # if they have their own resolver configured (so detection probes resolve).
        _base_chain("prerouting", "nat", "prerouting", -100),
        _redirect_to_box(iif_lan, box, 80, net.portal_port),
        _rule(
            "prerouting",
            iif_lan,
            _match(_payload("tcp", "dport"), 80),
            unauthorized,
            {"redirect": {"port": net.portal_port}},
        ),
        _rule(
            "prerouting",
            iif_lan,
            _match(_payload("tcp", "dport"), 80),
            _match(_MAC_IP_SRC, "@spent4"),
            {"redirect": {"port": net.portal_port}},
        ),
    ]
    if net.portal_tls_port:
        # HTTPS to the portal's name (dnsmasq answers it with the box's address): to the
        # portal's TLS port. Only to the box: other sites' 443 is never intercepted.
        cmds.append(_redirect_to_box(iif_lan, box, 443, net.portal_tls_port))
    for proto in ("udp", "tcp"):
        cmds.append(
            _rule(
                "prerouting",
                iif_lan,
                _match(_payload(proto, "dport"), 53),
                unauthorized,
                {"redirect": {"port": net.dns_port}},
            )
        )
    cmds += [
        _base_chain("postrouting", "nat", "postrouting", 100),
        _rule(
            "postrouting",
            _match(_meta("oifname"), net.wan),
            _match(_meta("nfproto"), "ipv4"),
            {"masquerade": None},
        ),
        # To the box itself from the LAN: DHCP, DNS, the portal. Not the admin panel,
        # not SSH, not the metrics ports.
        _add("chain", name="lan_to_box"),
        _base_chain("input", "filter", "input", 0),
        _rule("input", iif_lan, {"jump": {"target": "lan_to_box"}}),
        _rule("lan_to_box", ipv6, {"drop": None}),
        _rule(
            "lan_to_box",
            _match({"ct": {"key": "state"}}, ["established", "related"], "in"),
            {"accept": None},
        ),
        _rule("lan_to_box", _match(_payload("udp", "dport"), 67), {"accept": None}),
        _rule(
            "lan_to_box",
            _match(_payload("ip", "daddr"), box),
            _match(_payload("udp", "dport"), net.dns_port),
            {"accept": None},
        ),
        _rule(
            "lan_to_box",
            _match(_payload("ip", "daddr"), box),
            _match(_payload("tcp", "dport"), {"set": _box_tcp_ports(net)}),
            {"accept": None},
        ),
        _rule(
            "lan_to_box",
            _match(_payload("ip", "daddr"), box),
            _match(_payload("icmp", "type"), "echo-request"),
            {"accept": None},
        ),
        _rule("lan_to_box", {"drop": None}),
        # Forwarding: only authorized devices, through their owner's quota.
        _add("chain", name="from_lan"),
        _add("chain", name="to_lan"),
        _base_chain("forward", "filter", "forward", 0),
        _rule("forward", iif_lan, {"jump": {"target": "from_lan"}}),
        _rule("forward", oif_lan, {"jump": {"target": "to_lan"}}),
        _rule("from_lan", ipv6, {"drop": None}),
        _rule("from_lan", oif_lan, {"drop": None}),
        # The box's networks: checked when a connection starts (and for anything not
        # part of an established one), so an established flow skips the lookup.
        _rule(
            "from_lan",
            _match({"ct": {"key": "state"}}, "established", "!="),
            _match(_payload("ip", "daddr"), "@blocked4"),
            {"drop": None},
        ),
        # An authorized device goes to its own chain (counter, htb leaf, owner's quota).
        _rule("from_lan", {"vmap": {"key": _MAC_IP_SRC, "data": "@up4"}}),
        _rule("from_lan", {"drop": None}),
        _rule("to_lan", ipv6, {"drop": None}),
        _rule(
            "to_lan",
            _match({"ct": {"key": "state"}}, ["established", "related"], "in"),
            {"vmap": {"key": _payload("ip", "daddr"), "data": "@down4"}},
        ),
        _rule("to_lan", {"drop": None}),
    ]
    return cmds


def _redirect_to_box(iif_lan: dict[str, Any], box: str, dport: int, port: int) -> Command:
    """The LAN's TCP connections to the box's `dport` go to its local `port`."""
    return _rule(
        "prerouting",
        iif_lan,
        _match(_payload("ip", "daddr"), box),
        _match(_payload("tcp", "dport"), dport),
        {"redirect": {"port": port}},
    )


def _box_tcp_ports(net: Network) -> list[int]:
    """The box's TCP ports the LAN reaches (after the redirects): DNS, the portal."""
    ports = [net.dns_port, net.portal_port]
    return ports + [net.portal_tls_port] if net.portal_tls_port else ports


def bridge_commands() -> list[Command]:
    """Drop frames bridged from one LAN port to another: clients never see each other."""
    t = {"family": BRIDGE_FAMILY, "table": TABLE}
    return [
        {"add": {"table": {"family": BRIDGE_FAMILY, "name": TABLE}}},
        {"delete": {"table": {"family": BRIDGE_FAMILY, "name": TABLE}}},
        {"add": {"table": {"family": BRIDGE_FAMILY, "name": TABLE}}},
        {
            "add": {
                "chain": {
                    **t,
                    "name": "forward",
                    "type": "filter",
                    "hook": "forward",
                    "prio": 0,
                    "policy": "accept",
                }
            }
        },
        {"add": {"rule": {**t, "chain": "forward", "expr": [{"drop": None}]}}},
    ]


def full_ruleset(
    net: Network,
    quotas: Iterable[OwnerQuota],
    devices: Iterable[Device],
    counted: dict[str, DeviceBytes] | None = None,
) -> list[Command]:
    """Replace the whole table in one transaction (start-up, restore after a restart).

    "add, delete, add" makes the replacement work whether or not the table exists,
    and as one transaction no packet ever sees a half-built table.
    """
    quotas = list(quotas)
    owners = {q.owner for q in quotas}
    if len(owners) != len(quotas):
        raise ValueError("one quota per owner")
    devices = list(devices)
    check_devices(devices, owners)
    cmds: list[Command] = [
        {"add": {"table": {"family": FAMILY, "name": TABLE}}},
        {"delete": {"table": {"family": FAMILY, "name": TABLE}}},
        {"add": {"table": {"family": FAMILY, "name": TABLE}}},
    ]
    cmds += table_commands(net)
    for q in sorted(quotas, key=lambda q: q.owner):
        cmds += owner_commands(q)
    counted = counted or {}
    for d in devices:
        cmds += device_commands(d, counted.get(d.mac))
    if net.lan_is_bridge:
        cmds += bridge_commands()
    return cmds


def check_devices(devices: Sequence[Device], owners: set[Owner]) -> None:
    """One binding per MAC and per IP, each to an owner that has a quota."""
    macs: set[str] = set()
    ips: set[ipaddress.IPv4Address] = set()
    for d in devices:
        if d.owner not in owners:
            raise ValueError(f"device owner {d.owner.kind} #{d.owner.id} has no quota")
        if d.mac in macs or d.ip in ips:
            raise ValueError("a MAC or an IP is bound twice")
        macs.add(d.mac)
        ips.add(d.ip)


# --- reading the kernel's counters ------------------------------------------------------


@dataclass(frozen=True)
class QuotaReading:
    """What the kernel says about one owner's quota."""

    limit_bytes: int
    used_bytes: int

    @property
    def spent(self) -> bool:
        return self.used_bytes >= self.limit_bytes


def parse_quotas(listing: Iterable[dict[str, Any]]) -> dict[Owner, QuotaReading]:
    """Owners' quotas from `nft -j list table` (or `reset`) output; foreign objects ignored."""
    found: dict[Owner, QuotaReading] = {}
    for item in listing:
        q = item.get("quota") if isinstance(item, dict) else None
        if not isinstance(q, dict) or q.get("table") != TABLE or q.get("family") != FAMILY:
            continue
        name = q.get("name", "")
        owner = Owner.from_tag(name[2:]) if name.startswith("q_") else None
        if owner is None:
            continue
        found[owner] = QuotaReading(int(q.get("bytes", 0)), int(q.get("used", 0)))
    return found


def parse_device_bytes(listing: Iterable[dict[str, Any]]) -> dict[str, DeviceBytes]:
    """Devices' bytes (by MAC) from `nft -j list table` output; foreign objects ignored."""
    up: dict[str, int] = {}
    down: dict[str, int] = {}
    for item in listing:
        c = item.get("counter") if isinstance(item, dict) else None
        if not isinstance(c, dict) or c.get("table") != TABLE or c.get("family") != FAMILY:
            continue
        name = str(c.get("name", ""))
        side = {"cu_": up, "cd_": down}.get(name[:3])
        digits = name[3:]
        if side is None or len(digits) != 12 or not all(x in "0123456789abcdef" for x in digits):
            continue
        mac = ":".join(digits[i : i + 2] for i in range(0, 12, 2))
        side[mac] = int(c.get("bytes", 0))
    return {m: DeviceBytes(up.get(m, 0), down.get(m, 0)) for m in up.keys() | down.keys()}


def read_counts(runner: Any) -> tuple[dict[Owner, QuotaReading], dict[str, DeviceBytes]]:
    """Owners' quotas and devices' bytes from one listing of the table (any runner with
    `list_table`, so the dry-run backend answers it too)."""
    listing = runner.list_table()
    if listing is None:
        return {}, {}
    return parse_quotas(listing), parse_device_bytes(listing)


# --- the runner -------------------------------------------------------------------------


class NftRunner:
    """Runs nft batches: argument lists and JSON on stdin, never a shell.

    `command` is how to start nft: ("/usr/sbin/nft",) on the box; tests pass
    ("ip", "netns", "exec", NAME, "nft") to work inside a namespace they created.
    """

    def __init__(self, command: Sequence[str] = ("/usr/sbin/nft",), timeout: float = 10.0):
        self.command = tuple(command)
        self.timeout = timeout

    def _run(self, args: Sequence[str], stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*self.command, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=self.timeout,
            check=False,
        )

    def apply(self, commands: Iterable[Command]) -> list[dict[str, Any]]:
        """Apply one transaction; returns what nft printed (the values a reset read)."""
        proc = self._run(["-j", "-f", "-"], json.dumps(batch(commands)))
        if proc.returncode != 0:
            raise NftError(proc.stderr.strip() or f"nft exited with {proc.returncode}")
        out: list[dict[str, Any]] = []
        for line in proc.stdout.splitlines():
            line = line.strip()
            if line:
                out += json.loads(line).get("nftables", [])
        return out

    def list_table(self) -> list[dict[str, Any]] | None:
        """The table as JSON objects, or None if it does not exist."""
        proc = self._run(["-j", "list", "table", FAMILY, TABLE])
        if proc.returncode != 0:
            if "No such file" in proc.stderr:
                return None
            raise NftError(proc.stderr.strip() or f"nft exited with {proc.returncode}")
        return json.loads(proc.stdout).get("nftables", [])

    def read_quotas(self) -> dict[Owner, QuotaReading]:
        listing = self.list_table()
        return {} if listing is None else parse_quotas(listing)

    def read_counts(self) -> tuple[dict[Owner, QuotaReading], dict[str, DeviceBytes]]:
        return read_counts(self)

    def delete_tables(self) -> None:
        """Remove the gateway's tables (stop the gateway: back to plain forwarding rules)."""
        cmds: list[Command] = []
        for family in (FAMILY, BRIDGE_FAMILY):
            cmds += [
                {"add": {"table": {"family": family, "name": TABLE}}},
                {"delete": {"table": {"family": family, "name": TABLE}}},
            ]
        self.apply(cmds)
