"""A small internet in network namespaces, for the link service's real-network tests.

    gw (the appliance) --lan-- box (the ISP box) ==access line== isp (first ISP hop)
        --core-- wan (the internet: two anchors, a DNS resolver, an iperf3 server)

The access line is shaped at the box like a rural line: download through an ifb
device with htb, upload with tbf (this kernel has no netem). Names are unique per run
and everything is removed in `close()`, processes by PID first.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

GW_ADDR, BOX_LAN = "192.168.77.2", "192.168.77.1"
BOX_WAN, ISP_CPE = "100.64.0.2", "100.64.0.1"
ISP_CORE, WAN_CORE = "10.99.0.1", "10.99.0.2"
ANCHOR1, ANCHOR2, RESOLVER = "198.51.100.1", "203.0.113.1", "198.51.100.53"
SPEEDTEST_ADDR = "198.51.100.80"
# The names speedtest-cli 2.1 contacts: the configuration and server list (www, with c
# as the list's fallback) and the Ookla test server the list names.
SPEEDTEST_SERVER = "speedtest.fai-rural.example"
SPEEDTEST_NAMES = ("www.speedtest.net", "c.speedtest.net", SPEEDTEST_SERVER)
DOWN_MBIT, UP_MBIT = 30, 1
# 200 ms of full-size frames at the download rate.
DOWN_QUEUE_PACKETS = DOWN_MBIT * 1_000_000 // 8 // 1514 // 5
ROOT = Path(__file__).resolve().parent.parent.parent


def link_site_config(base: Path, **link: str) -> Path:
    """A site config under `base` for a link service in gw; values are TOML literals.

    Probes every second (0.3 s timeout) so outages show in seconds, no scheduled tests,
    the anchors, resolver and iperf3 server of this topology; `link` overrides.
    """
    from appliance import config as config_mod

    values = {
        "state_dir": f'"{base / "state"}"', "runtime_dir": f'"{base / "run"}"',
        "backend": '"emulated"', "door_port": "0", "web_port": "0", "link_port": "0",
        "wan_interface": '"lan0"', "probe_interval": "1", "probe_timeout": "0.3",
        "anchors": f'["{ANCHOR1}", "{ANCHOR2}"]', "dns_names": '["anchor.example"]',
        "scheduled_tests": "false", "iperf3_server": f'"{ANCHOR1}"', "test_seconds": "6",
        **link,
    }
    lines = config_mod.default_config_text().splitlines()
    for key, value in values.items():
        idx = next(i for i, line in enumerate(lines) if line.startswith(f"{key} = "))
        lines[idx] = f"{key} = {value}"
    base.mkdir(parents=True, exist_ok=True)
    path = base / "telecentre.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def make_test_ca(directory: Path, openssl: str, names: tuple[str, ...]) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for `names`: (ca.pem, server.pem, server.key).

    The client trusts the CA through SSL_CERT_FILE in its own environment only, so
    certificate checking stays on in the product and nothing else on the host trusts it.
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = directory / "ca.pem", directory / "ca.key"
    cert, key, csr = directory / "server.pem", directory / "server.key", directory / "server.csr"
    ext = directory / "server.ext"
    ext.write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid\n"
        f"subjectAltName={','.join('DNS:' + n for n in names)}\n"
    )
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for args in (
        [openssl, "req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca), "-days", "2",
         "-subj", "/CN=Telecentre test CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        [openssl, "req", *ec, "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={names[0]}"],
        [openssl, "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
         "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext)],
    ):
        done = subprocess.run(args, capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise RuntimeError(f"{args[:2]}: {done.stderr.strip()}")
    return ca, cert, key


class Internet:
    def __init__(self, ip: str, tc: str, nft: str) -> None:
        self.ip, self.tc, self.nft_bin = ip, tc, nft
        tag = uuid.uuid4().hex[:6]
        self.ns = {name: f"t4{tag}{name}" for name in ("gw", "box", "isp", "wan")}
        self.procs: list[subprocess.Popen] = []
        self.created: list[str] = []
        self.speedtest_ca: Path | None = None

    # --- plumbing -----------------------------------------------------------------

    def run(self, ns: str | None, *args: str, input: str | None = None) -> str:
        cmd = [self.ip, "netns", "exec", self.ns[ns], *args] if ns else list(args)
        done = subprocess.run(cmd, capture_output=True, text=True, input=input, timeout=30)
        if done.returncode != 0:
            raise RuntimeError(f"{cmd}: {done.stderr.strip()}")
        return done.stdout

    def ipn(self, ns: str, *args: str) -> None:
        self.run(None, self.ip, "-n", self.ns[ns], *args)

    def start(self, ns: str, *args: str, **kw) -> subprocess.Popen:
        proc = subprocess.Popen(
            [self.ip, "netns", "exec", self.ns[ns], *args],
            stdout=kw.pop("stdout", subprocess.PIPE), stderr=kw.pop("stderr", subprocess.PIPE),
            text=True, **kw,
        )
        self.procs.append(proc)
        return proc

    def veth(self, a: str, a_if: str, b: str, b_if: str) -> None:
        self.run(None, self.ip, "link", "add", f"{self.ns[a]}x", "netns", self.ns[a],
                 "type", "veth", "peer", "name", f"{self.ns[b]}y", "netns", self.ns[b])
        self.ipn(a, "link", "set", f"{self.ns[a]}x", "name", a_if)
        self.ipn(b, "link", "set", f"{self.ns[b]}y", "name", b_if)
        self.ipn(a, "link", "set", "dev", a_if, "up")
        self.ipn(b, "link", "set", "dev", b_if, "up")

    def nft(self, ns: str, commands: list[dict]) -> None:
        self.run(ns, self.nft_bin, "-j", "-f", "-", input=json.dumps({"nftables": commands}))

    # --- the topology -----------------------------------------------------------------

    def build(self) -> Internet:
        for name in self.ns.values():
            self.run(None, self.ip, "netns", "add", name)
            self.created.append(name)
        for ns in self.ns:
            self.ipn(ns, "link", "set", "lo", "up")
        self.veth("gw", "lan0", "box", "lan")
        self.veth("box", "wan", "isp", "cpe")
        self.veth("isp", "core", "wan", "uplink")
        self.ipn("gw", "addr", "add", f"{GW_ADDR}/24", "dev", "lan0")
        self.ipn("gw", "route", "add", "default", "via", BOX_LAN)
        self.ipn("box", "addr", "add", f"{BOX_LAN}/24", "dev", "lan")
        self.ipn("box", "addr", "add", f"{BOX_WAN}/30", "dev", "wan")
        self.ipn("box", "route", "add", "default", "via", ISP_CPE)
        self.ipn("isp", "addr", "add", f"{ISP_CPE}/30", "dev", "cpe")
        self.ipn("isp", "addr", "add", f"{ISP_CORE}/30", "dev", "core")
        self.ipn("isp", "route", "add", "192.168.77.0/24", "via", BOX_WAN)
        self.ipn("isp", "route", "add", "default", "via", WAN_CORE)
        self.ipn("wan", "addr", "add", f"{WAN_CORE}/30", "dev", "uplink")
        for addr in (ANCHOR1, ANCHOR2, RESOLVER, SPEEDTEST_ADDR):
            self.ipn("wan", "addr", "add", f"{addr}/32", "dev", "lo")
        self.ipn("wan", "route", "add", "default", "via", ISP_CORE)
        for ns in ("box", "isp"):
            self.run(ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        # Every hop answers traceroutes and pings as fast as the probes ask.
        for ns in self.ns:
            self.run(ns, "sysctl", "-q", "-w", "net.ipv4.icmp_ratelimit=0")
        etc = Path("/etc/netns") / self.ns["gw"]
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "resolv.conf").write_text(f"nameserver {RESOLVER}\n")
        # `ip netns exec` bind-mounts this over /etc/hosts for processes in gw only.
        (etc / "hosts").write_text(
            "127.0.0.1 localhost\n" + f"{SPEEDTEST_ADDR} {' '.join(SPEEDTEST_NAMES)}\n"
        )
        self.shape()
        return self

    def shape(self) -> None:
        """The access line at the box: 30 Mbit/s down (ifb + htb), 1 Mbit/s up (tbf), each
        with about 200 ms of buffer, as rural boxes have (hence the bufferbloat grades)."""
        self.ipn("box", "link", "add", "ifb0", "type", "ifb")
        self.ipn("box", "link", "set", "ifb0", "up")
        tc = [self.tc]
        self.run("box", *tc, "qdisc", "add", "dev", "wan", "root", "tbf", "rate",
                 f"{UP_MBIT}mbit", "burst", "3000", "latency", "200ms")
        self.run("box", *tc, "qdisc", "add", "dev", "wan", "handle", "ffff:", "ingress")
        self.run("box", *tc, "filter", "add", "dev", "wan", "parent", "ffff:", "protocol",
                 "all", "u32", "match", "u32", "0", "0", "action", "mirred", "egress",
                 "redirect", "dev", "ifb0")
        self.run("box", *tc, "qdisc", "add", "dev", "ifb0", "root", "handle", "1:", "htb",
                 "default", "10")
        self.run("box", *tc, "class", "add", "dev", "ifb0", "parent", "1:", "classid", "1:10",
                 "htb", "rate", f"{DOWN_MBIT}mbit", "ceil", f"{DOWN_MBIT}mbit")
        # A box's download buffer, like the upload's 200 ms: htb's default leaf queue is
        # ifb's 32 packets (16 ms at 30 Mbit/s), far shallower than any DSL or 4G box,
        # and its tail drops cost speedtest-cli's ~40 fresh connections 1 s SYN retries.
        self.run("box", *tc, "qdisc", "add", "dev", "ifb0", "parent", "1:10", "handle", "10:",
                 "pfifo", "limit", str(DOWN_QUEUE_PACKETS))

    def start_servers(self, helper_dir: Path, iperf3: str) -> None:
        dns = self.start("wan", sys.executable, str(helper_dir / "fake_dns.py"), RESOLVER,
                         ANCHOR1)
        assert dns.stdout is not None and dns.stdout.readline().strip() == "ready"
        self.start("wan", iperf3, "-s", "-B", ANCHOR1, "-p", "5201",
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(50):
            if ":5201" in self.run("wan", "ss", "-ltn"):
                return
            time.sleep(0.1)
        raise RuntimeError("iperf3 server did not start")

    def start_speedtest(self, helper_dir: Path, openssl: str, workdir: Path) -> Path:
        """The fake speedtest.net in wan; returns the CA file a client in gw must trust."""
        if self.speedtest_ca is not None:
            return self.speedtest_ca
        ca, cert, key = make_test_ca(workdir, openssl, SPEEDTEST_NAMES)
        proc = self.start("wan", sys.executable, str(helper_dir / "fake_speedtest.py"),
                          SPEEDTEST_ADDR, str(cert), str(key), SPEEDTEST_SERVER)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        self.speedtest_ca = ca
        return ca

    def start_link_service(self, config_path: Path, log: Path,
                           env: dict[str, str] | None = None) -> subprocess.Popen:
        """`telecentre link run` as a real process in gw (stopped by PID in `close`)."""
        with log.open("w") as out:
            return self.start(
                "gw", sys.executable, "-m", "appliance.cli", "--config", str(config_path),
                "link", "run", stdout=out, stderr=subprocess.STDOUT, cwd=str(ROOT),
                env={**os.environ, **(env or {})},
            )

    def close(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                try:
                    os.kill(proc.pid, signal.SIGTERM)
                    proc.wait(timeout=10)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    try:
                        os.kill(proc.pid, signal.SIGKILL)
                        proc.wait(timeout=5)
                    except (ProcessLookupError, subprocess.TimeoutExpired):
                        pass
            for stream in (proc.stdout, proc.stderr):
                if stream:
                    stream.close()
        for name in self.created:
            subprocess.run([self.ip, "netns", "del", name], capture_output=True, timeout=30)
            shutil.rmtree(Path("/etc/netns") / name, ignore_errors=True)


@contextlib.contextmanager
def running_internet(*extra_tools: str) -> Iterator[Internet]:
    """The whole topology with its servers (fake DNS, iperf3, speedtest), removed even when
    the test fails. Needs root and ip, tc, nft, iperf3 plus `extra_tools` (else skipped,
    or failed under CI=true)."""
    from tests.conftest import require_root, require_tool

    require_root()
    ip, tc = require_tool("ip"), require_tool("tc")
    nft, iperf3 = require_tool("nft"), require_tool("iperf3")
    for tool in extra_tools:
        require_tool(tool)
    net = Internet(ip, tc, nft)
    try:
        net.build()
        net.start_servers(Path(__file__).parent, iperf3)
        yield net
    finally:
        net.close()
