"""Sharing the line: per-client htb classes, download on the LAN, upload on the WAN.

Why per client and not per flow: a client opening 16 connections must not get 16
shares. Each authorized client gets one htb leaf per direction, all leaves of a group
with the same rate floor and quantum, so htb's round robin gives busy clients equal
shares of what their group may use, however many connections each opens.

Why two groups with htb `rate` and `ceil`: the member group's rate is the line minus
the guests' share, the guest group's rate is that share (default 40 %), and both may
borrow up to the whole line. While members are busy, guests get their share and no
more; when the members are idle, guests borrow the rest.

Layout (download on the LAN interface, upload on the WAN interface):

    1:   htb root, default 1:2
    1:1  the line (rate = ceil = the line's speed)
      1:10 members (rate = line - guest share, ceil = line)
      1:20 guests and vouchers (rate = guest share, ceil = line)
        1:<0x1000 + id>  one leaf per client (ceil = its class's cap, at most the line)
          leaf qdisc <0x1000 + id>: cake (split-gso) when the kernel has it; else
          a tbf that only splits super-packets, holding <0x2000 + id>: fq_codel,
          sfq or pfifo (a tbf-less kernel: that queue alone)
    1:2  the box's own traffic: on the LAN (portal, DNS) not the line's, at 1 Gbit/s;
         on the WAN (updates, remote admin) the line's, under 1:1 with a small floor

Classifier: none. The ruleset's forward chain sets each client's packets' priority
(`meta priority set 1:<id>` in the device's own chain) to its leaf's class id, and htb takes
a packet whose priority names one of its leaf classes straight into it. The id is
the client's address's low 12 bits (`ruleset.client_id`, `ruleset.class_id`), so the
ruleset and this module agree without talking, the same on both interfaces. Earlier designs and why
not: u32 hashing on the address and upload through an ifb fed by an ingress redirect
on the LAN. The ifb round trip cost about 13 % of the upload's throughput on veth
(session 4), the redirect at a bridge's own ingress made conntrack mark packets
invalid (kernel 6.18), a bridge port hot-plugged after start was not shaped, and the
box's own upload was not in the tree at all, so it competed unshaped in the ISP box's
queue. On the WAN egress, after NAT, the priority set in forward is still there, and
the upload's queue is where the bottleneck is (the Pi's link to the box is faster than
the line): one tree holds all of the line's upload.

Why the leaves split GSO super-packets below 1 Gbit/s (session 4): htb's round robin
between leaves is per packet, not per byte, whenever a packet is bigger than the
quantum (htb dequeues a leaf's head packet whatever its deficit, and only then moves
on). A forwarded packet can be a GSO super-packet of up to 64 KiB: a client's own TCP
stack makes them on veth (the tests), GRO makes them on the Pi's receive side. With a
one-frame quantum, a client whose queued packets averaged 10.6 kB sent five times the
bytes of one whose packets averaged 3.7 kB (`tc -s qdisc`: backlog bytes over packets),
and 8 upload connections against 1 gave Jain 0.56 to 0.87. Below 1 Gbit/s (cake's own
split-gso threshold) a leaf therefore splits super-packets into frames as they are
queued: cake with `split-gso`, or else a tbf whose bucket holds one frame and whose
rate (10 Gbit/s) never holds a packet back (tbf segments any GSO packet bigger than
its bucket); the quantum stays one frame, so a busy client waits at most one frame
per other busy client. At 1 Gbit/s and more, nothing is split (it would cost a lot of CPU per byte)
and the quantum is a whole super-packet instead, so htb's round robin is per byte
again, for a wait of at most ~0.6 ms per other busy client.

Why `tc -batch -`: start-up builds hundreds of classes, and one tc process for all of
them is far faster than one fork per command; a change for one client is one batch
too. Every token is checked (a number, an interface name or a fixed keyword: no
spaces, quotes or newlines), so no line can split into two commands. No user text
reaches a command: clients are named by a small integer id.
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from appliance.gateway.ruleset import CLIENT_BASE, MAX_CLIENT_ID, check_ifname, client_id

Argv = list[str]

GROUPS = {"member": 0x10, "guest": 0x20}
LINE, LOCAL = 0x1, 0x2
QUANTUM = 1514  # one full frame: htb's round robin between leaves is packet-fair
# A whole GSO super-packet as htb counts it (64 KiB and its 45 segments' headers): the
# quantum from SPLIT_BELOW_KBIT up, where super-packets are not split.
SUPER_QUANTUM = 70_000
SPLIT_BELOW_KBIT = 1_000_000  # cake's CAKE_SPLIT_GSO_THRESHOLD (1 Gbit/s)
# The splitting tbf's buckets: never what holds a packet back (htb does that).
SEGMENTER_RATE, SEGMENTER_BURST, SEGMENTER_PEAK = "10gbit", "1000000b", "1tbit"
DEFAULT_FRAME = 1500 + 18  # an MTU of 1500, its Ethernet header and a VLAN tag
LEAF_FRAMES = 100  # the pfifo leaf's limit, in packets; the tbf's bfifo's, in frames
LOCAL_KBIT = 1_000_000
BOX_WAN_SHARE = 0.02  # the box's own upload's floor (it borrows the rest like the groups)
MAX_PER_GROUP = 256  # leaves' rate floors add up to their group's rate at this many
BURST_MS = 1
BURST_MIN_BYTES = 2 * QUANTUM
LEAF_KINDS = ("cake", "fq_codel", "sfq", "pfifo")
_TOKEN = re.compile(r"^[A-Za-z0-9_.:/@-]+$")


class TcError(RuntimeError):
    """tc refused a command (the batch stopped there)."""


@dataclass(frozen=True)
class Line:
    """The line and where it is shaped: LAN (download) and WAN (upload), speeds, share."""

    lan: str
    wan: str
    down_kbit: int
    up_kbit: int
    lan_network: ipaddress.IPv4Network
    guest_share: float = 0.4

    def __post_init__(self) -> None:
        check_ifname(self.lan)
        check_ifname(self.wan)
        if self.lan == self.wan:
            raise ValueError("the LAN and WAN interfaces must differ")
        if self.lan_network.prefixlen < 20:
            raise ValueError("the LAN must be a /20 or smaller (class ids are 12 bits)")
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


def burst_bytes(kbit: int) -> int:
    """A class's bucket: what the rate sends in BURST_MS, at least BURST_MIN_BYTES.

    Why set it: tc's default is rate/HZ + one MTU, computed in 32 bits; from about
    4 Gbit/s it wraps to 0 bytes (`tc -d class show` prints "burst 0b"), and a class
    with an empty bucket can then send only when htb's timer refills it: a 10 Gbit/s
    ceil delivered 6.5 Gbit/s on veth (session 4). At the Pi's rates the default is a
    single frame, and htb's watchdog wakes for every packet; a millisecond of the rate
    (3,750 bytes at 30 Mbit/s) is still far below what a queue holds.
    """
    return max(BURST_MIN_BYTES, kbit * BURST_MS // 8)


def splits(line_kbit: int) -> bool:
    """Whether the leaves on a side of this speed split GSO super-packets into frames."""
    return line_kbit < SPLIT_BELOW_KBIT


def quantum(line_kbit: int) -> int:
    """The quantum of every class on a side: one frame where leaves split super-packets,
    a whole super-packet where they do not (htb's round robin is then per byte)."""
    return QUANTUM if splits(line_kbit) else SUPER_QUANTUM


def htb_rates(rate_kbit: int, ceil_kbit: int, quantum_bytes: int = QUANTUM) -> Argv:
    """An htb class's rate, ceil, their buckets and the quantum."""
    return ["rate", _kbit(rate_kbit), "burst", f"{burst_bytes(rate_kbit)}b",
            "ceil", _kbit(ceil_kbit), "cburst", f"{burst_bytes(ceil_kbit)}b",
            "quantum", str(quantum_bytes)]


@dataclass(frozen=True)
class Leaf:
    """What this kernel gives each client's leaf: a queue kind, and whether a tbf can
    split super-packets in front of it (`frame`: the bucket, the largest frame of the
    two interfaces; None: no tbf in this kernel)."""

    kind: str = "pfifo"
    frame: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in LEAF_KINDS:
            raise ValueError(f"leaf qdisc must be one of {', '.join(LEAF_KINDS)}: {self.kind!r}")
        if self.frame is not None and (
            isinstance(self.frame, bool) or not isinstance(self.frame, int)
            or not 64 <= self.frame <= 65_535
        ):
            raise ValueError(f"a frame is 64 to 65535 bytes: {self.frame!r}")


def leaf_qdisc(kind: str, *, split: bool = True) -> Argv:
    """The leaf's qdisc arguments: htb sets the rate, the leaf keeps the queue short."""
    if kind == "cake":
        # One client per leaf: flow fairness inside it, no rate of its own (htb's).
        return ["cake", "unlimited", "besteffort", "flows",
                "split-gso" if split else "no-split-gso"]
    if kind in ("fq_codel", "sfq"):
        return [kind]
    if kind == "pfifo":
        return ["pfifo", "limit", str(LEAF_FRAMES)]
    raise ValueError(f"leaf qdisc must be one of {', '.join(LEAF_KINDS)}: {kind!r}")


def segmenter_qdisc(frame: int) -> Argv:
    """A tbf that splits GSO packets bigger than one frame and holds nothing back.

    tbf segments a GSO packet longer than its max_size as it is queued, and drops a
    plain packet longer than it: hence the largest frame of the interfaces. Its
    max_size is the smaller of its bucket (`burst`) and its peak bucket (`mtu`, with a
    `peakrate`), so the peak bucket is the frame and the main bucket is large: a
    one-frame main bucket at 10 Gbit/s refilled too slowly when htb took two packets
    from a leaf within a microsecond, and the kernel logged "htb: tbf qdisc ... is
    non-work-conserving?" (seen at 20 Mbit/s lines). One frame at 1 Tbit/s refills in
    about 12 ns, 1 MB at 10 Gbit/s holds 0.8 ms: neither holds a packet back below
    1 Gbit/s. `limit` is for the bfifo tbf creates, replaced at once by the leaf's
    own queue.
    """
    return ["tbf", "rate", SEGMENTER_RATE, "burst", SEGMENTER_BURST,
            "peakrate", SEGMENTER_PEAK, "mtu", str(frame), "limit", str(LEAF_FRAMES * frame)]


def leaf_commands(dev: str, minor: int, leaf: Leaf | str, line_kbit: int) -> list[Argv]:
    """The qdisc(s) under a client's leaf class on one side."""
    leaf = Leaf(leaf) if isinstance(leaf, str) else leaf
    parent, handle = _cid(minor), f"{_hex(minor)}:"
    split = splits(line_kbit)
    if leaf.kind == "cake" or not split or leaf.frame is None:
        return [["qdisc", "replace", "dev", dev, "parent", parent, "handle", handle,
                 *leaf_qdisc(leaf.kind, split=split)]]
    # The tbf first, then its queue: a tbf change resets a fifo child's limit.
    return [
        ["qdisc", "replace", "dev", dev, "parent", parent, "handle", handle,
         *segmenter_qdisc(leaf.frame)],
        ["qdisc", "replace", "dev", dev, "parent", f"{handle}1",
         "handle", f"{_hex(minor + CLIENT_BASE)}:", *leaf_qdisc(leaf.kind)],
    ]


def _sides(line: Line) -> list[tuple[str, int]]:
    """(device, line kbit): download on the LAN, upload on the WAN."""
    return [(line.lan, line.down_kbit), (line.wan, line.up_kbit)]


def root_commands(line: Line) -> list[Argv]:
    """The fixed tree on both sides (no filter: the ruleset sets the priority)."""
    cmds: list[Argv] = []
    for dev, kbit in _sides(line):
        rates = _group_rates(kbit, line.guest_share)
        q = quantum(kbit)
        if dev == line.lan:  # the box's own LAN traffic is not the line's
            local = ["parent", "1:", "classid", _cid(LOCAL), "htb",
                     *htb_rates(LOCAL_KBIT, LOCAL_KBIT, q)]
        else:  # its own upload is: a floor, and it borrows up to the line
            floor = min(kbit, max(8, round(kbit * BOX_WAN_SHARE)))
            local = ["parent", _cid(LINE), "classid", _cid(LOCAL), "htb",
                     *htb_rates(floor, kbit, q)]
        cmds += [
            ["qdisc", "replace", "dev", dev, "root", "handle", "1:", "htb",
             "default", _hex(LOCAL)],
            ["class", "replace", "dev", dev, "parent", "1:", "classid", _cid(LINE), "htb",
             *htb_rates(kbit, kbit, q)],
            ["class", "replace", "dev", dev, *local],
        ]
        for group, minor in GROUPS.items():
            cmds.append(
                ["class", "replace", "dev", dev, "parent", _cid(LINE), "classid", _cid(minor),
                 "htb", *htb_rates(rates[group], kbit, q)]
            )
    return cmds


def teardown_commands(line: Line) -> list[Argv]:
    """Remove our qdiscs (run with errors ignored: some may not exist yet)."""
    return [["qdisc", "del", "dev", dev, "root"] for dev, _ in _sides(line)]


def client_commands(line: Line, client: ClientClass, leaf: Leaf | str) -> list[Argv]:
    """A client's leaf class and its leaf qdisc(s), on both sides."""
    cmds: list[Argv] = []
    caps = (client.down_kbit, client.up_kbit)
    for (dev, kbit), cap in zip(_sides(line), caps, strict=True):
        ceil = kbit if cap is None else min(cap, kbit)
        group_rate = _group_rates(kbit, line.guest_share)[client.group]
        floor = min(ceil, max(8, group_rate // MAX_PER_GROUP))
        cmds.append(
            ["class", "replace", "dev", dev, "parent", _cid(GROUPS[client.group]),
             "classid", _cid(client.minor), "htb", *htb_rates(floor, ceil, quantum(kbit))]
        )
        cmds += leaf_commands(dev, client.minor, leaf, kbit)
    return cmds


def remove_client_commands(line: Line, client: ClientClass) -> list[Argv]:
    """The client's classes (their leaf qdiscs go with them): its packets, if any still
    carry its class id, fall to the default class."""
    return [["class", "del", "dev", dev, "classid", _cid(client.minor)]
            for dev, _ in _sides(line)]


def setup_commands(line: Line, clients: Iterable[ClientClass], leaf: Leaf | str
                   ) -> list[Argv]:
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
    """Runs tc batches: argument lists, no shell.

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

    def _try_root(self, dev: str, qdisc: Argv) -> bool:
        proc = self._run([*self.tc, "qdisc", "replace", "dev", dev, "root", *qdisc])
        if proc.returncode != 0:
            return False
        self._run([*self.tc, "qdisc", "del", "dev", dev, "root"])
        return True

    def frame_bytes(self, dev: str) -> int:
        """The largest frame `dev` sends (its MTU, the Ethernet header and a VLAN tag),
        DEFAULT_FRAME if `ip` cannot say."""
        check_ifname(dev)
        proc = self._run([*self.ip, "-j", "link", "show", "dev", dev])
        try:
            mtu = int(json.loads(proc.stdout)[0]["mtu"])
        except (ValueError, KeyError, IndexError, TypeError):
            return DEFAULT_FRAME
        return max(64, min(65_535, mtu + 18))

    def probe_leaf(self, dev: str, *others: str) -> Leaf:
        """The best leaf this kernel has, tried as `dev`'s root (at start-up, just before
        the tree replaces it: a moment with no shaping, nothing lost); with a splitting
        tbf in front of it when the kind does not split super-packets itself, sized to
        the largest frame of `dev` and `others`.

        Why try rather than read /proc/modules: modules load on demand, may be built in
        (no /proc/modules at all on some kernels), and only an `add` says for sure.
        """
        check_ifname(dev)
        for kind in LEAF_KINDS:
            if not self._try_root(dev, leaf_qdisc(kind)):
                continue
            if kind == "cake":
                return Leaf(kind)
            frame = max(self.frame_bytes(d) for d in (dev, *others))
            return Leaf(kind, frame if self._try_root(dev, segmenter_qdisc(frame)) else None)
        raise TcError("no usable leaf qdisc (not even pfifo)")


def line_from_config(gateway: Any) -> Line:
    """The `[gateway]` section's line (a `GatewayConfig`)."""
    return Line(
        lan=gateway.lan_interface,
        wan=gateway.wan_interface,
        down_kbit=round(gateway.line_down_mbit * 1000),
        up_kbit=round(gateway.line_up_mbit * 1000),
        lan_network=ipaddress.IPv4Interface(gateway.lan_address).network,
        guest_share=gateway.guest_share_percent / 100,
    )


class Shaper:
    """The gateway's side of shaping: gives clients ids and keeps the kernel's tree.

    A client's id is its address's low 12 bits (`ruleset.client_id`): the ruleset's
    priority map names the same class without asking. `lan_is_bridge` is accepted for
    the callers' sake and no longer matters (no redirect on the bridge's ports).
    """

    def __init__(self, line: Line, runner: TcRunner, *, lan_is_bridge: bool = False) -> None:
        self.line = line
        self.runner = runner
        self.lan_is_bridge = lan_is_bridge
        self.leaf = Leaf()
        self.clients: dict[ipaddress.IPv4Address, ClientClass] = {}

    def make(
        self, ip: ipaddress.IPv4Address, group: str, down_kbit: int | None, up_kbit: int | None
    ) -> ClientClass:
        if ip not in self.line.lan_network:
            raise ValueError("a shaped client must be on the LAN")
        return ClientClass(client_id(ip), ip, group, down_kbit, up_kbit)

    def setup(self, clients: Iterable[tuple[ipaddress.IPv4Address, str, int | None, int | None]]
              ) -> None:
        """Build the whole tree with these clients (start-up): old tree removed first."""
        self.runner.batch(teardown_commands(self.line), force=True)
        leaf = self.runner.probe_leaf(self.line.wan, self.line.lan)
        self.leaf = Leaf(leaf) if isinstance(leaf, str) else leaf
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
