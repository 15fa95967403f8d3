"""From joining the LAN to the internet, for real: dnsmasq's lease (with RFC 8910 option
114), the Android probe landing on the portal, a guest login posted from the client's
namespace, and the time from that login to working internet.

Real dnsmasq and the real portal (waitress) run in `gw`; busybox's udhcpc is the client's
DHCP client; the gateway service runs here, on the namespace's nft and neighbour table.
Needs root; skipped otherwise, failed under CI=true.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from appliance import config as config_mod
from appliance.gateway import dnsmasq
from appliance.gateway.neighbours import NeighbourLookup
from appliance.gateway.presence import LeaseFile
from appliance.gateway.service import GatewayService
from tests.conftest import require_root, require_tool
from tests.gateway.netns import BOX, SERVER, Client, Topology, run, topology_config

pytestmark = pytest.mark.slow

PORTAL_PORT = 8089  # the topology's stand-in "portal" keeps 8088
API_URL = f"http://{BOX}/api/captive"
DHCP_MAC = "02:00:00:00:00:a1"
# A DHCP hostname that would hurt if it ever reached a shell, nft or dnsmasq's config.
HOSTILE_HOSTNAME = "x$(touch /tmp/pwned)`id`;flush-ruleset'\"\\n#"

# udhcpc's event script: record what the server gave, configure the interface as a
# client OS would (address, default route).
UDHCPC_SCRIPT = textwrap.dedent(
    """\
    #!/bin/sh
    case "$1" in
      bound|renew)
        env > "$DUMP"
        ip addr add "$ip/$mask" dev "$interface"
        ip route add default via "$router" dev "$interface"
        ;;
    esac
    exit 0
    """
)

# The "internet": Android's probe answered as Google does, plus a page.
WAN_HTTP = textwrap.dedent(
    """
    import http.server, sys
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/generate_204":
                self.send_response(204); self.end_headers(); return
            body = b"internet"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *a):
            pass
    s = http.server.ThreadingHTTPServer(("0.0.0.0", 80), H)
    print("ready", flush=True)
    s.serve_forever()
    """
)

PORTAL_SERVER = textwrap.dedent(
    """
    import sys
    from appliance import config
    from appliance.web.server import make_portal_server
    cfg = config.load(sys.argv[1])
    server = make_portal_server(cfg, "0.0.0.0", int(sys.argv[2]))
    print("ready", flush=True)
    server.run()
    """
)

# The phone: the OS's probe, the portal page, the guest login, then the internet.
PHONE = textwrap.dedent(
    """
    import http.client, json, re, socket, sys, time
    out = {}
    def get(host, path, port=80):
        c = http.client.HTTPConnection(host, port, timeout=5)
        c.request("GET", path)
        r = c.getresponse()
        body = r.read().decode("utf-8", "replace")
        c.close()
        return r.status, r.getheader("Location"), r.getheader("Content-Type"), body
    def internet():
        try:
            s = socket.create_connection((sys.argv[1], 5001), timeout=0.2)
            s.sendall(b"who\\n")
            got = s.recv(64)
            s.close()
            return got.strip() == b"wan"
        except OSError:
            return False
    out["probe"] = get("connectivitycheck.gstatic.com", "/generate_204")[:2]
    out["api_before"] = json.loads(get(sys.argv[2], "/api/captive")[3])
    status, _, _, page = get(sys.argv[2], "/")
    out["portal"] = status
    token = re.search(r'name="token" value="([^"]+)"', page).group(1)
    out["internet_before"] = internet()
    t0 = time.perf_counter()
    c = http.client.HTTPConnection(sys.argv[2], 80, timeout=5)
    c.request("POST", "/guest", body=f"token={token}&accept=yes",
              headers={"Content-Type": "application/x-www-form-urlencoded"})
    r = c.getresponse(); r.read(); c.close()
    out["login"] = [r.status, r.getheader("Location")]
    t1 = time.perf_counter()
    while not internet():
        if time.perf_counter() - t0 > 5:
            break
    t2 = time.perf_counter()
    out["login_response_ms"] = (t1 - t0) * 1000
    out["login_to_internet_ms"] = (t2 - t0) * 1000
    out["internet_after"] = internet()
    out["probe_after"] = get("connectivitycheck.gstatic.com", "/generate_204")[:2]
    out["api_after"] = json.loads(get(sys.argv[2], "/api/captive")[3])
    out["status_page"] = get(sys.argv[2], "/status")[3]
    print(json.dumps(out))
    """
)


def _needs_root() -> None:
    for tool in ("nft", "ip", "/usr/sbin/dnsmasq", "udhcpc"):
        require_tool(tool)
    require_root()


@pytest.fixture
def topo():
    _needs_root()
    t = Topology()
    try:
        yield t.build(n_clients=1, wan_ports=(5001,))
    finally:
        t.close()


@pytest.fixture
def cfg(tmp_path: Path) -> config_mod.Config:
    return topology_config(
        tmp_path,
        ("portal_port = 8088", f"portal_port = {PORTAL_PORT}"),
        ('dhcp_first = ""', 'dhcp_first = "10.42.0.100"'),
        ('dhcp_last = ""', 'dhcp_last = "10.42.0.120"'),
    )


def _start(topo: Topology, ns: str, *args: str) -> subprocess.Popen:
    """A process in a namespace, owned by the topology (killed by PID in close())."""
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=str(Path(__file__).resolve().parents[2]),
    )
    topo.procs.append(proc)
    return proc


def _bare_client(topo: Topology) -> Client:
    """A client namespace with a MAC and no address: it must get one over DHCP."""
    ns = topo._netns(f"{topo.prefix}d1")
    run("ip", "-n", topo.gw, "link", "add", "pd1", "type", "veth", "peer", "name", "eth0",
        "netns", ns)
    run("ip", "-n", topo.gw, "link", "set", "pd1", "master", "br0", "up")
    run("ip", "-n", ns, "link", "set", "eth0", "address", DHCP_MAC, "up")
    return Client(ns, DHCP_MAC, "", "")


def test_lease_with_option_114_probe_portal_guest_login_internet(topo, cfg, tmp_path):
    gw = topo.gw
    # dnsmasq, from the generated configuration only (no /etc/dnsmasq.conf).
    conf = dnsmasq.write(cfg, tmp_path / "dnsmasq.d")
    leases = tmp_path / "leases"
    dns_log = tmp_path / "dnsmasq.log"  # what the box's journal would get from dnsmasq
    dns = _start(
        topo, gw, "/usr/sbin/dnsmasq", f"--conf-file={conf}", "--keep-in-foreground",
        f"--log-facility={dns_log}", "--pid-file=", f"--dhcp-leasefile={leases}",
        "--user=root",
        # Stands in for the internet's DNS: the probe's name points at the `wan` server.
        f"--address=/connectivitycheck.gstatic.com/{SERVER}",
    )
    wan_http = _start(topo, topo.wan, sys.executable, "-c", WAN_HTTP)
    assert wan_http.stdout is not None and wan_http.stdout.readline().strip() == "ready"
    portal = _start(topo, gw, sys.executable, "-c", PORTAL_SERVER, str(cfg.path),
                    str(PORTAL_PORT))
    assert portal.stdout is not None and portal.stdout.readline().strip() == "ready"
    net = ipaddress.IPv4Interface(cfg.gateway.lan_address).network
    svc = GatewayService(
        cfg, topo.nft(), neighbours=NeighbourLookup("br0", net, ("ip", "-n", gw)),
        leases=LeaseFile(leases),
    ).start(loop=False)
    client = _bare_client(topo)
    netns_etc = Path("/etc/netns") / client.ns
    try:
        assert dns.poll() is None, "dnsmasq did not start"
        # The lease, as a phone asks for it (requesting option 114), with a hostile name.
        script = tmp_path / "udhcpc.sh"
        script.write_text(UDHCPC_SCRIPT)
        script.chmod(0o755)
        dump = tmp_path / "lease.env"
        proc = subprocess.run(
            ["ip", "netns", "exec", client.ns, "env", f"DUMP={dump}", "udhcpc", "-i", "eth0",
             "-f", "-q", "-n", "-t", "5", "-T", "1", "-O", "114", "-s", str(script),
             "-x", f"hostname:{HOSTILE_HOSTNAME}"],
            capture_output=True, text=True, timeout=30, check=False,
        )
        assert proc.returncode == 0, proc.stderr
        lease = dict(line.split("=", 1) for line in dump.read_text().splitlines() if "=" in line)
        ip = lease["ip"]
        assert ipaddress.IPv4Address("10.42.0.100") <= ipaddress.IPv4Address(ip) <= (
            ipaddress.IPv4Address("10.42.0.120"))
        assert (lease["router"].strip(), lease["dns"].strip()) == (BOX, BOX)
        # busybox exports options it has no name for in hex: option 114 is the API's URL.
        assert bytes.fromhex(lease["opt114"]).decode() == API_URL
        assert DHCP_MAC in leases.read_text()

        # The client resolves through the DNS the lease named, as a phone would.
        netns_etc.mkdir(parents=True, exist_ok=True)
        (netns_etc / "resolv.conf").write_text(f"nameserver {lease['dns'].strip()}\n")
        proc = subprocess.run(
            ["ip", "netns", "exec", client.ns, sys.executable, "-c", PHONE, SERVER, BOX],
            capture_output=True, text=True, timeout=60, check=False,
        )
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout)
        # Before login: the Android probe gets the portal, the API says captive.
        assert out["probe"] == [302, f"http://{BOX}/"]
        assert out["api_before"]["captive"] is True
        assert out["api_before"]["user-portal-url"] == f"http://{BOX}/"
        assert out["portal"] == 200 and out["internet_before"] is False
        # The guest login, then the internet: under a second.
        assert out["login"] == [303, "/status"]
        assert out["internet_after"] is True
        assert out["login_to_internet_ms"] < 1000, out
        # After: the probe reaches the real (here: wan's) server, the API says online.
        assert out["probe_after"] == [204, None]
        assert out["api_after"]["captive"] is False
        assert 0 < out["api_after"]["bytes-remaining"] <= 1_000_000_000
        assert "Vous êtes connecté" in out["status_page"]
        # The gateway bound the device by the MAC it read from the kernel, with the lease's IP.
        status = svc.cmd_status({})
        assert [(d["mac"], d["ip"], d["kind"]) for d in status["devices"]] == [
            (DHCP_MAC, ip, "guest")
        ]
        # The gateway learnt the device from the lease file dnsmasq wrote: MAC, IP, and
        # whatever name dnsmasq kept, as data (never a command, never a config line).
        learnt = LeaseFile(leases).current()
        assert str(learnt[DHCP_MAC].ip) == ip
        assert status["devices"][0]["hostname"] == learnt[DHCP_MAC].hostname
        assert svc.check_presence() == [] and svc.metrics.leases._value.get() == 1
        # The hostile hostname changed nothing: one lease line of five fields (no line
        # or field injected), no shell ran it, the table intact.
        assert [len(line.split()) for line in leases.read_text().splitlines()] == [5]
        # dnsmasq logged (it started), but nothing of the lease: `quiet-dhcp` in the
        # generated file keeps the MAC, the IP and the name out of the journal.
        journal = dns_log.read_text()
        assert "started" in journal
        assert DHCP_MAC not in journal and ip not in journal and "DHCPACK" not in journal
        assert "quiet-dhcp" in conf.read_text().splitlines()
        assert not Path("/tmp/pwned").exists()
        assert topo.nft().list_table() is not None
        print(f"\nlogin_to_internet_ms={out['login_to_internet_ms']:.1f} "
              f"login_response_ms={out['login_response_ms']:.1f}")
    finally:
        svc.stop()
        shutil.rmtree(netns_etc, ignore_errors=True)
