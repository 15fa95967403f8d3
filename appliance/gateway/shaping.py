"""Sharing the line: per-client htb classes, download on the LAN, upload through an ifb.

Why per client and not per flow: a client opening 16 connections must not get 16
shares. Each authorized client gets one htb leaf per direction, all leaves of a group
with the same rate floor and quantum, so htb's round robin gives busy clients equal
shares of what their group may use, however many connections each opens.

Why two groups with htb `rate` and `ceil`: the member group's rate is the line minus
the guests' share, the guest group's rate is that share (default 40 %), and both may
borrow up to the whole line. While members are busy, guests get their share and no
more; when the members are idle, guests borrow the rest.

Layout (same on both sides; download on the LAN interface, upload on the ifb that an
ingress `mirred` redirect on the LAN interface feeds):

    1:   htb root, default 1:2
    1:1  the line (rate = ceil = the line's speed)
      1:10 members (rate = line - guest share, ceil = line)
      1:20 guests and vouchers (rate = guest share, ceil = line)
        1:<0x1000 + id>  one leaf per client (ceil = its class's cap, at most the line)
          leaf qdisc: cake when the kernel has it, else fq_codel, sfq, or pfifo
    1:2  the box's own traffic to/from the LAN (portal, DNS): not the line's

Classifier: u32 on the client's IP (destination on the LAN side, source on the ifb),
through a 256-bucket hash table on the address's last byte, so a packet meets one or
a few rules whatever the number of clients. Why u32 and not an nft mark with the `fw`
classifier: this kernel (and many small ones) has u32 but no `fw`, `flower` or
`basic`; and marks are set in the forward hook, after the LAN's ingress, where the
upload redirect has already happened.

Why `tc -batch -`: start-up builds hundreds of classes (about six commands per client),
and one tc process for all of them is far faster than one fork per command; a
change for one client is one batch too. Every token is checked (a number, an address,
an interface name or a fixed keyword: no spaces, quotes or newlines), so no line can
split into two commands. No user text reaches a command: clients are named by a small
integer id and their IPv4 address.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from appliance.gateway.ruleset import check_ifname

Argv = list[str]

GROUPS = {"member": 0x10, "guest": 0x20}
LINE, LOCAL = 0x1, 0x2
CLIENT_BASE = 0x1000
MAX_CLIENT_ID = 0xFFF  # a u32 node handle has 12 bits
HASH_TABLE = 2
PRIO = 10
QUANTUM = 1514  # one full frame: htb's round robin between leaves is packet-fair
LOCAL_KBIT = 1_000_000
MAX_PER_GROUP = 256  # leaves' rate floors add up to their group's rate at this many
LEAF_KINDS = ("cake", "fq_codel", "sfq", "pfifo")
_TOKEN = re.compile(r"^[A-Za-z0-9_.:/@-]+$")


class TcError(RuntimeError):
    """tc refused a command (the batch stopped there)."""


@dataclass(frozen=True)
class Line:
    """The line and where it is shaped: LAN interface, upload ifb, speeds, guests' share."""

    lan: str
    ifb: str
    down_kbit: int
    up_kbit: int
    lan_network: ipaddress.IPv4Network
    guest_share: float = 0.4
    # Where upload is redirected to the ifb: the LAN interface, or a LAN bridge's ports.
    # Why not the bridge itself: a frame redirected at the bridge's own ingress comes
    # back from the ifb as conntrack state "invalid" (seen on kernel 6.18), so the
    # forward chain drops it; redirected at a port, it is bridged and routed normally.
    ingress_ports: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_ifname(self.lan)
        check_ifname(self.ifb)
        for port in self.ingress_ports:
            check_ifname(port)
        if self.lan == self.ifb:
            raise ValueError("the upload ifb must be its own device")
        for name in ("down_kbit", "up_kbit"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 16:
                raise ValueError(f"{name} must be a whole number of kbit/s, at least 16")
        if not 0.05 <= self.guest_share <= 0.95:
            raise ValueError("guest_share must be between 0.05 and 0.95")


@dataclass(frozen=True)
class ClientClass:
    """One authorized client's shaping: its id, IP, group and caps (None: the line)."""

    id: int
    ip: ipaddress.IPv4Address
    group: str
    down_kbit: int | None = None
    up_kbit: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.id, bool) or not isinstance(self.id, int):
            raise ValueError(f"client id must be a whole number: {self.id!r}")
        if not 1 <= self.id <= MAX_CLIENT_ID:
            raise ValueError(f"client id must be 1 to {MAX_CLIENT_ID}: {self.id}")
        if not isinstance(self.ip, ipaddress.IPv4Address):
            raise ValueError(f"not an IPv4 address: {self.ip!r}")
        if self.group not in GROUPS:
            raise ValueError(f"group must be one of {', '.join(GROUPS)}: {self.group!r}")
        for cap in (self.down_kbit, self.up_kbit):
            if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 8):
                raise ValueError(f"a cap must be a whole number of kbit/s, at least 8: {cap!r}")

    @property
    def minor(self) -> int:
        return CLIENT_BASE + self.id


def _hex(n: int) -> str:
    return format(n, "x")


def _cid(minor: int) -> str:
    return f"1:{_hex(minor)}"


def _kbit(n: int) -> str:
    return f"{n}kbit"


def _group_rates(line_kbit: int, share: float) -> dict[str, int]:
    guest = max(8, round(line_kbit * share))
    return {"guest": guest, "member": max(8, line_kbit - guest)}


def leaf_qdisc(kind: str) -> Argv:
    """The leaf's qdisc arguments: htb sets the rate, the leaf keeps the queue short."""
    if kind == "cake":
        # One client per leaf: flow fairness inside it, no rate of its own (htb's).
        return ["cake", "unlimited", "besteffort", "flows"]
    if kind in ("fq_codel", "sfq"):
        return [kind]
    if kind == "pfifo":
        return ["pfifo", "limit", "100"]
    raise ValueError(f"leaf qdisc must be one of {', '.join(LEAF_KINDS)}: {kind!r}")


def _sides(line: Line) -> list[tuple[str, int, str, int]]:
    """(device, line kbit, u32 match direction, offset of the hashed byte) per side."""
    return [(line.lan, line.down_kbit, "dst", 16), (line.ifb, line.up_kbit, "src", 12)]


def root_commands(line: Line) -> list[Argv]:
    """The fixed tree on both sides, the ingress redirect and the u32 hash table.

    Expects a clean slate (see `teardown_commands`): `add` rather than `replace` for
    filters, which tc cannot replace by content.
    """
    cmds: list[Argv] = []
    for dev, kbit, direction, offset in _sides(line):
        rates = _group_rates(kbit, line.guest_share)
        cmds += [
            ["qdisc", "replace", "dev", dev, "root", "handle", "1:", "htb",
             "default", _hex(LOCAL)],
            ["class", "replace", "dev", dev, "parent", "1:", "classid", _cid(LINE), "htb",
             "rate", _kbit(kbit), "ceil", _kbit(kbit), "quantum", str(QUANTUM)],
            ["class", "replace", "dev", dev, "parent", "1:", "classid", _cid(LOCAL), "htb",
             "rate", _kbit(LOCAL_KBIT), "ceil", _kbit(LOCAL_KBIT), "quantum", str(QUANTUM)],
        ]
        for group, minor in GROUPS.items():
            cmds.append(
                ["class", "replace", "dev", dev, "parent", _cid(LINE), "classid", _cid(minor),
                 "htb", "rate", _kbit(rates[group]), "ceil", _kbit(kbit),
                 "quantum", str(QUANTUM)]
            )
        cmds += [
            ["filter", "add", "dev", dev, "parent", "1:", "protocol", "ip", "prio", str(PRIO),
             "handle", f"{HASH_TABLE}:", "u32", "divisor", "256"],
            ["filter", "add", "dev", dev, "parent", "1:", "protocol", "ip", "prio", str(PRIO),
             "handle", "800::1", "u32", "ht", "800::", "match", "ip", direction,
             str(line.lan_network), "hashkey", "mask", "0x000000ff", "at", str(offset),
             "link", f"{HASH_TABLE}:"],
        ]
    for port in line.ingress_ports or (line.lan,):
        cmds += [
            ["qdisc", "add", "dev", port, "handle", "ffff:", "ingress"],
            ["filter", "add", "dev", port, "parent", "ffff:", "protocol", "ip", "prio", "1",
             "u32", "match", "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev",
             line.ifb],
        ]
    return cmds


def teardown_commands(line: Line) -> list[Argv]:
    """Remove our qdiscs (run with errors ignored: some may not exist yet)."""
    cmds = [["qdisc", "del", "dev", line.lan, "root"], ["qdisc", "del", "dev", line.ifb, "root"]]
    for port in {line.lan, *line.ingress_ports}:
        cmds.append(["qdisc", "del", "dev", port, "ingress"])
    return cmds


def _filter_handle(client: ClientClass) -> str:
    return f"{HASH_TABLE}:{_hex(int(client.ip) & 0xFF)}:{_hex(client.id)}"


def client_commands(line: Line, client: ClientClass, leaf: str) -> list[Argv]:
    """A client's leaf class, its leaf qdisc and its u32 rule, on both sides."""
    cmds: list[Argv] = []
    qdisc = leaf_qdisc(leaf)
    caps = (client.down_kbit, client.up_kbit)
    for (dev, kbit, direction, _offset), cap in zip(_sides(line), caps, strict=True):
        ceil = kbit if cap is None else min(cap, kbit)
        group_rate = _group_rates(kbit, line.guest_share)[client.group]
        floor = min(ceil, max(8, group_rate // MAX_PER_GROUP))
        bucket = _hex(int(client.ip) & 0xFF)
        cmds += [
            ["class", "replace", "dev", dev, "parent", _cid(GROUPS[client.group]),
             "classid", _cid(client.minor), "htb", "rate", _kbit(floor), "ceil", _kbit(ceil),
             "quantum", str(QUANTUM)],
            ["qdisc", "replace", "dev", dev, "parent", _cid(client.minor),
             "handle", f"{_hex(client.minor)}:", *qdisc],
            ["filter", "replace", "dev", dev, "parent", "1:", "protocol", "ip",
             "prio", str(PRIO), "handle", _filter_handle(client), "u32",
             "ht", f"{HASH_TABLE}:{bucket}:", "match", "ip", direction, f"{client.ip}/32",
             "flowid", _cid(client.minor)],
        ]
    return cmds


def remove_client_commands(line: Line, client: ClientClass) -> list[Argv]:
    """The client's rule first (its packets fall back to nothing), then its class."""
    cmds: list[Argv] = []
    for dev, *_ in _sides(line):
        cmds += [
            ["filter", "del", "dev", dev, "parent", "1:", "protocol", "ip", "prio", str(PRIO),
             "handle", _filter_handle(client), "u32"],
            ["class", "del", "dev", dev, "classid", _cid(client.minor)],
        ]
    return cmds


def setup_commands(line: Line, clients: Iterable[ClientClass], leaf: str) -> list[Argv]:
    """The whole tree with every client's class (start-up, restore)."""
    clients = list(clients)
    if len({c.id for c in clients}) != len(clients) or len({c.ip for c in clients}) != len(
        clients
    ):
        raise ValueError("one class per client id and per IP")
    cmds = root_commands(line)
    for c in sorted(clients, key=lambda c: c.id):
        cmds += client_commands(line, c, leaf)
    return cmds


def batch_text(commands: Iterable[Sequence[str]]) -> str:
    """`tc -batch` input; ValueError if any token could split or quote a line."""
    lines = []
    for argv in commands:
        for token in argv:
            if not isinstance(token, str) or not _TOKEN.match(token):
                raise ValueError(f"unsafe tc token: {token!r}")
        lines.append(" ".join(argv))
    return "\n".join(lines) + "\n"


class TcRunner:
    """Runs tc batches (and the `ip link` calls for the ifb): argument lists, no shell.

    `tc` and `ip` are how to start them: ("/usr/sbin/tc",) on the box; tests pass
    ("ip", "netns", "exec", NAME, "tc") to work in a namespace they created.
    """

    def __init__(
        self,
        tc: Sequence[str] = ("/usr/sbin/tc",),
        ip: Sequence[str] = ("/usr/sbin/ip",),
        timeout: float = 30.0,
    ) -> None:
        self.tc = tuple(tc)
        self.ip = tuple(ip)
        self.timeout = timeout

    def _run(self, argv: Sequence[str], stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            list(argv), input=stdin, capture_output=True, text=True, timeout=self.timeout,
            check=False,
        )

    def batch(self, commands: Iterable[Sequence[str]], *, force: bool = False) -> None:
        """One tc process for all the commands; `force` goes on past errors (teardown)."""
        text = batch_text(commands)
        if text == "\n":
            return
        proc = self._run([*self.tc, *(["-force"] if force else []), "-batch", "-"], text)
        if proc.returncode != 0 and not force:
            raise TcError(proc.stderr.strip() or f"tc exited with {proc.returncode}")

    def ensure_ifb(self, name: str) -> None:
        """Create the upload ifb if missing, and bring it up."""
        check_ifname(name)
        if self._run([*self.ip, "link", "show", "dev", name]).returncode != 0:
            proc = self._run([*self.ip, "link", "add", name, "type", "ifb"])
            if proc.returncode != 0:
                raise TcError(proc.stderr.strip() or "cannot create the ifb device")
        proc = self._run([*self.ip, "link", "set", "dev", name, "up"])
        if proc.returncode != 0:
            raise TcError(proc.stderr.strip() or "cannot bring the ifb device up")

    def bridge_ports(self, bridge: str) -> tuple[str, ...]:
        """The ports of a bridge, as the kernel lists them now."""
        check_ifname(bridge)
        proc = self._run([*self.ip, "-j", "link", "show", "master", bridge])
        if proc.returncode != 0:
            raise TcError(proc.stderr.strip() or f"cannot list the ports of {bridge}")
        return tuple(sorted(check_ifname(x["ifname"]) for x in json.loads(proc.stdout or "[]")))

    def probe_leaf(self, dev: str) -> str:
        """The best leaf qdisc this kernel has, tried on our own (idle) ifb device.

        Why try rather than read /proc/modules: modules load on demand, may be built in
        (no /proc/modules at all on some kernels), and only an `add` says for sure.
        """
        check_ifname(dev)
        for kind in LEAF_KINDS:
            proc = self._run([*self.tc, "qdisc", "replace", "dev", dev, "root", *leaf_qdisc(kind)])
            if proc.returncode == 0:
                self._run([*self.tc, "qdisc", "del", "dev", dev, "root"])
                return kind
        raise TcError("no usable leaf qdisc (not even pfifo)")


def line_from_config(gateway: Any) -> Line:
    """The `[gateway]` section's line (a `GatewayConfig`)."""
    return Line(
        lan=gateway.lan_interface,
        ifb=gateway.upload_ifb,
        down_kbit=round(gateway.line_down_mbit * 1000),
        up_kbit=round(gateway.line_up_mbit * 1000),
        lan_network=ipaddress.IPv4Interface(gateway.lan_address).network,
        guest_share=gateway.guest_share_percent / 100,
    )


class Shaper:
    """The gateway's side of shaping: gives clients ids and keeps the kernel's tree.

    Ids are the smallest free number, kept by IP for as long as the client is
    authorized; they mean nothing outside this process (the tree is rebuilt whole at
    start).
    """

    def __init__(self, line: Line, runner: TcRunner, *, lan_is_bridge: bool = False) -> None:
        self.line = line
        self.runner = runner
        self.lan_is_bridge = lan_is_bridge
        self.leaf = "pfifo"
        self.clients: dict[ipaddress.IPv4Address, ClientClass] = {}

    def _next_id(self) -> int:
        used = {c.id for c in self.clients.values()}
        for i in range(1, MAX_CLIENT_ID + 1):
            if i not in used:
                return i
        raise ValueError("no free shaping class id")

    def make(
        self, ip: ipaddress.IPv4Address, group: str, down_kbit: int | None, up_kbit: int | None
    ) -> ClientClass:
        old = self.clients.get(ip)
        cid = old.id if old is not None else self._next_id()
        return ClientClass(cid, ip, group, down_kbit, up_kbit)

    def setup(self, clients: Iterable[tuple[ipaddress.IPv4Address, str, int | None, int | None]]
              ) -> None:
        """Build the whole tree with these clients (start-up): old tree removed first."""
        self.runner.ensure_ifb(self.line.ifb)
        self.runner.batch(teardown_commands(self.line), force=True)
        if self.lan_is_bridge:
            # Ports known at start; a port added later is shaped after the next restart.
            ports = self.runner.bridge_ports(self.line.lan)
            self.line = dataclasses.replace(self.line, ingress_ports=ports)
        self.leaf = self.runner.probe_leaf(self.line.ifb)
        self.clients = {}
        for ip, group, down, up in clients:
            self.clients[ip] = self.make(ip, group, down, up)
        self.runner.batch(setup_commands(self.line, self.clients.values(), self.leaf))

    def add(self, ip: ipaddress.IPv4Address, group: str, down_kbit: int | None,
            up_kbit: int | None) -> ClientClass:
        """Give a client its classes (replacing its earlier ones, same id)."""
        client = self.make(ip, group, down_kbit, up_kbit)
        cmds: list[Argv] = []
        old = self.clients.get(ip)
        if old is not None and old.group != group:
            cmds += remove_client_commands(self.line, old)  # htb cannot move a class
        self.runner.batch(cmds + client_commands(self.line, client, self.leaf))
        self.clients[ip] = client
        return client

    def remove(self, ip: ipaddress.IPv4Address) -> bool:
        """Remove a client's classes; False if it had none."""
        client = self.clients.pop(ip, None)
        if client is None:
            return False
        self.runner.batch(remove_client_commands(self.line, client))
        return True
