"""A real network in namespaces: clients ↔ a bridge in `gw` ↔ `wan` (server, ISP box).

Every namespace, process and address here is created by the test and removed in
`close()`, processes by their own PID. Traffic stays inside these namespaces.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field

from appliance.gateway.ruleset import NftRunner

_SEQ = itertools.count()

LAN_PREFIX = "10.42.0"
BOX = f"{LAN_PREFIX}.1"
ISP_BOX = "192.168.1.254"
SERVER = "198.18.0.1"
SERVER6 = "fd00:1::1"
PORTAL_PORT = 8088
PANEL_PORT = 8080

# A tiny TCP server: "who" → its tag; "peer" → the address it sees; N → N bytes, then close.
SERVER_CODE = textwrap.dedent(
    """
    import socket, sys, threading
    tag = sys.argv[1]
    def serve(conn):
        with conn:
            conn.settimeout(30)
            line = b""
            while not line.endswith(b"\\n"):
                chunk = conn.recv(64)
                if not chunk:
                    return
                line += chunk
            if line.strip() == b"who":
                conn.sendall(tag.encode() + b"\\n")
                return
            if line.strip() == b"peer":
                peer = conn.getpeername()[0].removeprefix("::ffff:")
                conn.sendall(peer.encode() + b"\\n")
                return
            left = int(line)
            block = b"x" * 65536
            try:
                while left > 0:
                    n = min(left, len(block))
                    conn.sendall(block[:n])
                    left -= n
            except OSError:
                pass
    def listen(port):
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind(("::", port))
        s.listen(64)
        while True:
            c, _ = s.accept()
            threading.Thread(target=serve, args=(c,), daemon=True).start()
    for p in sys.argv[2:]:
        threading.Thread(target=listen, args=(int(p),), daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()
    """
)

# A client: connect (optionally from a given source), send a request, count the answer.
CLIENT_CODE = textwrap.dedent(
    """
    import json, socket, sys, time
    host, port, request, source, idle = sys.argv[1:6]
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    out = {"connected": False, "received": 0, "data": "", "end": ""}
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(float(idle))
    try:
        if source:
            s.bind((source, 0))
        s.connect((host, int(port)))
        out["connected"] = True
        s.sendall(request.encode() + b"\\n")
        head = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                out["end"] = "eof"
                break
            out["received"] += len(chunk)
            if len(head) < 64:
                head += chunk[:64]
    except socket.timeout:
        out["end"] = "timeout"
    except OSError as exc:
        out["end"] = type(exc).__name__
    out["data"] = head[:64].decode("ascii", "replace") if out["connected"] else ""
    print(json.dumps(out))
    """
)


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=30)


@dataclass
class Client:
    ns: str
    mac: str
    ip: str
    ip6: str


@dataclass
class Topology:
    """The namespaces of one test; `close()` removes everything it made."""

    prefix: str = field(default_factory=lambda: f"tc{os.getpid() % 100000}x{next(_SEQ)}")
    namespaces: list[str] = field(default_factory=list)
    procs: list[subprocess.Popen] = field(default_factory=list)
    clients: list[Client] = field(default_factory=list)

    @property
    def gw(self) -> str:
        return f"{self.prefix}gw"

    @property
    def wan(self) -> str:
        return f"{self.prefix}wan"

    def nft(self) -> NftRunner:
        return NftRunner(("ip", "netns", "exec", self.gw, "nft"))

    def neighbours(self):
        """gw's neighbour table (lookups and pins), never the host's."""
        import ipaddress

        from appliance.gateway.neighbours import NeighbourLookup

        return NeighbourLookup("br0", ipaddress.IPv4Network(f"{LAN_PREFIX}.0/24"),
                               ("ip", "-n", self.gw))

    def _netns(self, name: str) -> str:
        run("ip", "netns", "add", name)
        self.namespaces.append(name)
        run("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def build(self, n_clients: int = 2, *, wan_ports: tuple[int, ...] = (80, 5001)) -> Topology:
        gw, wan = self._netns(self.gw), self._netns(self.wan)
        for key in ("net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"):
            run("ip", "netns", "exec", gw, "sysctl", "-qw", f"{key}=1")
        # gw ↔ wan: the ISP box's network, the server behind it.
        run(
            "ip",
            "-n",
            gw,
            "link",
            "add",
            "wan0",
            "type",
            "veth",
            "peer",
            "name",
            "up0",
            "netns",
            wan,
        )
        run("ip", "-n", gw, "addr", "add", "192.168.1.2/24", "dev", "wan0")
        run("ip", "-n", gw, "addr", "add", "fd00:1::2/64", "dev", "wan0", "nodad")
        run("ip", "-n", gw, "link", "set", "wan0", "up")
        run("ip", "-n", wan, "addr", "add", f"{ISP_BOX}/24", "dev", "up0")
        run("ip", "-n", wan, "addr", "add", f"{SERVER}/24", "dev", "up0")
        run("ip", "-n", wan, "addr", "add", f"{SERVER6}/64", "dev", "up0", "nodad")
        run("ip", "-n", wan, "link", "set", "up0", "up")
        # Routes back to the LAN, so the baseline works without NAT (and IPv6 would).
        run("ip", "-n", wan, "route", "add", f"{LAN_PREFIX}.0/24", "via", "192.168.1.2")
        run("ip", "-n", wan, "-6", "route", "add", "fd00:42::/64", "via", "fd00:1::2")
        run("ip", "-n", gw, "route", "add", "default", "via", ISP_BOX)
        # The LAN: a bridge in gw, one veth port per client.
        run("ip", "-n", gw, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", gw, "addr", "add", f"{BOX}/24", "dev", "br0")
        run("ip", "-n", gw, "addr", "add", "fd00:42::1/64", "dev", "br0", "nodad")
        run("ip", "-n", gw, "link", "set", "br0", "up")
        for i in range(1, n_clients + 1):
            ns = self._netns(f"{self.prefix}c{i}")
            mac = f"02:00:00:00:00:{i:02x}"
            client = Client(ns, mac, f"{LAN_PREFIX}.{10 + i}", f"fd00:42::{10 + i:x}")
            run(
                "ip",
                "-n",
                gw,
                "link",
                "add",
                f"p{i}",
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                ns,
            )
            run("ip", "-n", gw, "link", "set", f"p{i}", "master", "br0", "up")
            run("ip", "-n", ns, "link", "set", "eth0", "address", mac, "up")
            run("ip", "-n", ns, "addr", "add", f"{client.ip}/24", "dev", "eth0")
            run("ip", "-n", ns, "addr", "add", f"{client.ip6}/64", "dev", "eth0", "nodad")
            run("ip", "-n", ns, "route", "add", "default", "via", BOX)
            run("ip", "-n", ns, "-6", "route", "add", "default", "via", "fd00:42::1")
            self.clients.append(client)
        self.serve(wan, "wan", *wan_ports)
        self.serve(gw, "portal", PORTAL_PORT)
        self.serve(gw, "panel", PANEL_PORT)
        self.serve(self.clients[-1].ns, "client", 5001)
        return self

    def serve(self, ns: str, tag: str, *ports: int) -> None:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", SERVER_CODE, tag, *map(str, ports)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"

    def fetch(
        self,
        client: Client,
        host: str,
        port: int,
        request: str = "who",
        *,
        source: str = "",
        idle: float = 1.5,
    ) -> dict:
        """Run one TCP exchange from a client; what came back, counted by the client."""
        proc = run(
            "ip",
            "netns",
            "exec",
            client.ns,
            sys.executable,
            "-c",
            CLIENT_CODE,
            host,
            str(port),
            request,
            source,
            str(idle),
        )
        return json.loads(proc.stdout)

    def end_server_connections(self, port: int) -> None:
        """Abort the wan server's connections on `port` (`ss -K`). A download the quota cut
        is still being retransmitted by the server after the client gave up; once a quota
        is extended or reset, those retransmissions would eat the new allowance before
        the next download."""
        run("ip", "netns", "exec", self.wan, "ss", "-K", "-t", f"( sport = :{port} )")

    def who(self, client: Client, host: str, port: int, **kw) -> str | None:
        """The tag of the server that answered, or None if nothing did."""
        out = self.fetch(client, host, port, **kw)
        return out["data"].strip() or None

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            if proc.stdout:
                proc.stdout.close()
        for ns in reversed(self.namespaces):
            run("ip", "netns", "del", ns, check=False)
        self.namespaces.clear()
        time.sleep(0)


def socket_in_netns(ns: str):
    """A socket factory for `ArpProber`: the packet socket is opened inside namespace `ns`
    (a helper thread enters it with setns(2); the socket stays there after the thread)."""
    import ctypes
    import threading

    from appliance.gateway.presence import _packet_socket

    libc = ctypes.CDLL(None, use_errno=True)
    clone_newnet = 0x40000000

    def factory(lan: str):
        box: dict = {}

        def enter() -> None:
            fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
            try:
                if libc.setns(fd, clone_newnet) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, os.strerror(err))
                box["sock"] = _packet_socket(lan)
            except OSError as exc:
                box["error"] = exc
            finally:
                os.close(fd)

        t = threading.Thread(target=enter, name="netns-socket")
        t.start()
        t.join()
        if "error" in box:
            raise box["error"]
        return box["sock"]

    return factory


# The site config's [gateway] interfaces, as this topology names them.
TOPOLOGY_INTERFACES = (
    ('lan_interface = "wlan0"', 'lan_interface = "br0"'),
    ("ISP box's side.\nwan_interface = \"eth0\"", "ISP box's side.\nwan_interface = \"wan0\""),
    ("lan_is_bridge = false", "lan_is_bridge = true"),
)


def topology_config(base, *replacements: tuple[str, str]):
    """A site config in `base` for this topology (br0 bridge LAN, wan0 WAN), with the
    state initialised; `replacements` are further (old, new) edits of the config's text,
    each of which must match (a renamed key fails loudly instead of testing defaults)."""
    from appliance import config as config_mod
    from appliance.runtime import init_state
    from tests.conftest import write_site_config

    path = write_site_config(base)
    text = path.read_text()
    for old, new in (*TOPOLOGY_INTERFACES, *replacements):
        assert old in text, old
        text = text.replace(old, new)
    path.write_text(text)
    cfg = config_mod.load(path)
    assert cfg.gateway.lan_interface == "br0" and cfg.gateway.wan_interface == "wan0"
    init_state(cfg)
    return cfg
