"""Wi-Fi gateway benchmark in namespaces (tests/gateway/netns.py: clients, a bridge in
gw, wan); prints one JSON object as its last line. Needs root (namespaces, nft, tc).

- `quota_overshoot_bytes`: the kernel quota measure of tests/gateway/test_kernel.py
  (a 200,000-byte guest quota, a 2 MB download; bytes received minus the quota).
- `login_to_internet_ms` (`p50`, `p99`): the real `telecentre gateway` process runs in
  gw; a client process in a client namespace is told "go" and then retries a TCP
  exchange with the wan server every few ms; right after "go" the benchmark sends the
  portal's `portal_authorize` (guest, by the client's IP) over the gateway socket. The
  time is "go" → first answer from wan, so it includes the nft transaction and the
  shaping classes. Why the socket and not a portal POST: the portal's Flask app adds
  its own ~30 ms (measured in test_dhcp_portal.py) and needs dnsmasq per run; the
  socket is what the portal calls. The device is kicked between rounds.
- `forwarding_ratio`: iperf3 download (-R, `-O 1`: slow start not counted) of one
  client through the running gateway (full table, 200 other authorized guests with
  quotas, per-device counters and shaping classes, the measured client a member whose
  class has no cap: the member policy and the line are set above what the VM forwards)
  divided by the same client's download with no telecentre table and no qdisc (bare
  forwarding). The runs go in rounds of gateway, bare, bare, gateway (the gateway is
  stopped, its table and qdiscs removed, then started again: it restores everything
  from its database, and its runs start once it is in its steady state, see `settle`;
  `gateway_service_cpu_s_per_measure` is the service's own CPU time during each pair
  of gateway runs); a round's ratio is its gateway throughput over its bare
  throughput, and the figure is the median of `ROUNDS` rounds
  (`forwarding_ratio_rounds` lists them all). Why: single runs on this 2-core VM move by
  ±15 % from one to the next, more than the gateway's cost; a round's four runs are
  within a minute of each other, and a slow drift of the machine's speed during a round
  falls on both sides alike. `forwarding_ratio_up` is the same for the client's upload
  (shaped on the WAN interface). Both ends use cubic (`RUNS`): on veth the path is then
  CPU-bound (about 20-28 Gbit/s), so the ratio measures the datapath's cost per packet;
  `forwarding_ratio_bbr` and `forwarding_ratio_up_bbr` are the same with BBR.
- `jain_fairness`: three members sharing a 20 Mbit/s line, one of them with 8
  connections (tests/gateway/test_shaping_kernel.py's setting).
- `gateway_service_rss_mb`: VmRSS of the gateway process with the 201 devices.

    python benchmarks/gateway.py            # the full run (about 11 minutes)
    python benchmarks/gateway.py --quick    # a smoke run with small numbers
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from appliance import config as config_mod  # noqa: E402
from appliance import ipc  # noqa: E402
from appliance.gateway import ruleset as rs  # noqa: E402
from appliance.gateway import shaping as sh  # noqa: E402
from tests.gateway.netns import (  # noqa: E402
    BOX,
    PORTAL_PORT,
    SERVER,
    Topology,
    run,
    topology_config,
)
from tests.gateway.traffic import compete, jain, start_servers  # noqa: E402

FILLERS = 200
ROUNDS = 7
# The forwarding runs of a measure: (name, TCP congestion control of both ends). cubic is
# what the figure is: Debian's default and the clients' (Windows, macOS, iOS, Android),
# and on veth it fills the path until a CPU is busy, so the ratio is the datapath's cost.
# BBR (this VM's kernel default) is listed too: it paces by its estimate of the path's
# bandwidth and round trip, which on veth are ~12 Gbit/s and ~20 µs, so it runs below
# what the CPU forwards (~12 against ~22 Gbit/s with cubic, through the same gateway)
# and its ratio says how a few µs more per packet move BBR's estimates.
RUNS = (("down", "cubic"), ("up", "cubic"), ("down_bbr", "bbr"), ("up_bbr", "bbr"))

# Waits for "go" lines; after each, retries "who" to the wan server until it answers.
PROBE_CODE = textwrap.dedent(
    """
    import socket, sys, time
    host = sys.argv[1]
    for line in sys.stdin:
        while True:
            try:
                with socket.create_connection((host, 5001), timeout=0.05) as s:
                    s.sendall(b"who\\n")
                    if s.recv(16).startswith(b"wan"):
                        break
            except OSError:
                time.sleep(0.002)
        print("done", flush=True)
    """
)


def filler(i: int) -> tuple[str, str]:
    """The MAC and IP of the i-th of the FILLERS guests authorized beside the measured
    client (gateway_parts.py builds the same ones)."""
    return f"02:00:00:01:{i // 256:02x}:{i % 256:02x}", f"10.42.0.{20 + i}"


def net() -> rs.Network:
    return rs.Network("br0", "wan0", ipaddress.IPv4Interface(f"{BOX}/24"), PORTAL_PORT,
                      lan_is_bridge=True)


def quota_overshoot(topo: Topology) -> int:
    c1 = topo.clients[0]
    guest, quota = rs.Owner("guest", 1), 200_000
    nft = topo.nft()
    nft.apply(rs.full_ruleset(net(), [rs.OwnerQuota(guest, quota)],
                              [rs.Device.parse(c1.mac, c1.ip, guest)]))
    received = topo.fetch(c1, SERVER, 5001, str(2_000_000), idle=2)["received"]
    nft.delete_tables()
    return received - quota


def fairness(topo: Topology, ports: list[int], seconds: float) -> tuple[float, list[float]]:
    owners = [rs.Owner("member", i + 1) for i in range(3)]
    devices = [rs.Device.parse(c.mac, c.ip, o) for c, o in zip(topo.clients, owners, strict=True)]
    nft = topo.nft()
    nft.apply(rs.full_ruleset(net(), [rs.OwnerQuota(o, 10**12) for o in owners], devices))
    line = sh.Line("br0", "wan0", 20_000, 10_000, ipaddress.IPv4Network("10.42.0.0/24"))
    runner = sh.TcRunner(("ip", "netns", "exec", topo.gw, "tc"), ("ip", "-n", topo.gw))
    shaper = sh.Shaper(line, runner, lan_is_bridge=True)
    shaper.setup([(ipaddress.IPv4Address(c.ip), "member", None, None) for c in topo.clients])
    rates = compete(list(zip(topo.clients, ports, strict=True)), seconds, streams=[8, 1, 1])
    runner.batch(sh.teardown_commands(shaper.line), force=True)
    nft.delete_tables()
    return jain(rates), rates


def gateway_config(base: Path) -> config_mod.Config:
    return topology_config(
        base,
        # The line above what the VM forwards: the ratio measures the rules, not a cap.
        ("line_down_mbit = 30", "line_down_mbit = 100000"),
        ("line_up_mbit = 1", "line_up_mbit = 100000"),
        # The member policy (the measured client's class) at the line too: no cap.
        ("down_mbit = 25", "down_mbit = 100000"),
        ("up_mbit = 1\n", "up_mbit = 100000\n"),
        # Nor a quota: the runs move tens of GB (spent, the member would be throttled).
        ("daily_quota_mb = 20000", "daily_quota_mb = 10000000"),
    )


def leaf_classes(topo: Topology) -> int:
    classes = run("ip", "netns", "exec", topo.gw, "tc", "class", "show", "dev", "br0").stdout
    return sum(1 for x in classes.splitlines() if " parent 1:10 " in x or " parent 1:20 " in x)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


GATEWAY_UNIT = ROOT / "systemd" / "telecentre-gateway.service"


def unit_environment(unit: Path) -> dict[str, str]:
    """A unit's `Environment=` settings (MALLOC_ARENA_MAX...): the service runs as on the
    box, so its memory figure is the box's."""
    env: dict[str, str] = {}
    for line in unit.read_text().splitlines():
        if line.startswith("Environment="):
            for item in shlex.split(line.removeprefix("Environment=")):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def wait_socket(cfg: config_mod.Config, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the gateway exited at start")
        try:
            if ipc.call(cfg.gateway_socket, "status").get("ok"):
                return
        except ipc.IpcError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the gateway socket did not answer")


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (its waited-for children included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def settle(pid: int, quiet_cpu_s: float = 0.02, timeout: float = 30) -> float:
    """Wait until the service is in its steady state; returns the seconds waited.

    Right after its socket answers, the gateway runs its first loop turn: the first
    presence round imports scapy and probes every device (about 0.4 s of CPU here),
    the first check of the spent quotas lists the kernel's sets. A service that has
    run for more than a second never does that again, so a forwarding run started
    then would charge a one-off start-up cost to the datapath. Steady state: a whole
    second in which the service used less than `quiet_cpu_s` of CPU (its periodic
    work, every 5 and 30 s, still falls in the runs, as it would on a site).
    """
    t0 = time.monotonic()
    before = cpu_seconds(pid)
    while time.monotonic() - t0 < timeout:
        time.sleep(1.0)
        now = cpu_seconds(pid)
        if now - before < quiet_cpu_s:
            return time.monotonic() - t0
        before = now
    raise RuntimeError("the gateway did not settle")


def call(cfg: config_mod.Config, command: str, **kw: Any) -> dict[str, Any]:
    reply = ipc.call(cfg.gateway_socket, command, **kw)
    if not reply.get("ok"):
        raise RuntimeError(f"{command}: {reply}")
    return reply


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small numbers: a smoke run")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("benchmarks/gateway.py needs root (network namespaces)")
    # iperf3 seconds: the fairness runs need time to settle on a 20 Mbit/s line; the
    # forwarding runs are many short ones (more rounds beat longer runs against noise).
    fair_seconds, seconds, logins, rounds = (3.0, 2.0, 5, 1) if args.quick else (
        8.0, 3.0, 50, ROUNDS)
    topo = Topology()
    work = Path(tempfile.mkdtemp(prefix="t5bench"))
    result: dict[str, Any] = {}
    service: subprocess.Popen | None = None
    try:
        topo.build(n_clients=3)
        c1, c2, _ = topo.clients
        ports = start_servers(topo, 3)
        result["quota_overshoot_bytes"] = quota_overshoot(topo)
        result["jain_fairness"], rates = fairness(topo, ports, fair_seconds)
        result["jain_rates_bps"] = [round(r) for r in rates]

        cfg = gateway_config(work)
        log_path = work / "gateway.log"

        def start_gateway() -> subprocess.Popen:
            with log_path.open("a") as log:
                proc = subprocess.Popen(
                    ["ip", "netns", "exec", topo.gw, sys.executable, "-m", "appliance.cli",
                     "--config", str(cfg.path), "gateway"],
                    stdout=log, stderr=subprocess.STDOUT, cwd=str(ROOT),
                    env={**os.environ, **unit_environment(GATEWAY_UNIT)},
                )
            topo.procs.append(proc)
            wait_socket(cfg, proc)
            return proc

        service_cpu: list[float] = []  # the service's CPU seconds in each gateway run

        def stop_gateway(proc: subprocess.Popen) -> None:
            """Stop the gateway and remove all it left (its table stays on a stop)."""
            proc.terminate()
            proc.wait(timeout=20)
            topo.nft().delete_tables()
            sh.TcRunner(("ip", "netns", "exec", topo.gw, "tc")).batch(
                sh.teardown_commands(sh.line_from_config(cfg.gateway)), force=True
            )

        service = start_gateway()
        call(cfg, "authorize", kind="member", owner_id=1, mac=c1.mac, ip=c1.ip)
        for i in range(FILLERS):
            mac, ip = filler(i)
            call(cfg, "authorize", kind="guest", mac=mac, ip=ip)
        result["shaping_leaf_classes"] = leaf_classes(topo)

        # Login to internet: the client is known to the gateway's neighbour table first,
        # as a device that just loaded the portal is (a TCP exchange with the box's portal
        # port before each round, outside the timing: a kick also removes the gateway's
        # pinned neighbour entry).
        def meet_portal() -> None:
            if topo.who(c2, BOX, PORTAL_PORT) != "portal":
                raise RuntimeError("the client does not reach the box")
        probe = subprocess.Popen(
            ["ip", "netns", "exec", c2.ns, sys.executable, "-c", PROBE_CODE, SERVER],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        topo.procs.append(probe)
        assert probe.stdin is not None and probe.stdout is not None
        times = []
        for _ in range(logins):
            meet_portal()
            t0 = time.perf_counter()
            probe.stdin.write("go\n")
            probe.stdin.flush()
            reply = call(cfg, "portal_authorize", kind="guest", ip=c2.ip)
            if not reply.get("authorized"):
                raise RuntimeError(f"portal_authorize: {reply}")
            if probe.stdout.readline().strip() != "done":
                raise RuntimeError("the probe client stopped")
            times.append((time.perf_counter() - t0) * 1000)
            call(cfg, "kick", mac=c2.mac)
            time.sleep(0.05)
        qs = statistics.quantiles(times, n=100, method="inclusive")
        result["login_to_internet_ms"] = {"p50": round(statistics.median(times), 1),
                                          "p99": round(qs[98], 1), "n": len(times)}
        result["gateway_service_rss_mb"] = round(rss_mb(service.pid), 1)

        # Forwarding: rounds of gateway, bare, bare, gateway runs (ABBA: a drift in the
        # machine's speed during a round falls on both sides alike); a round's ratio is
        # its gateway bytes over its bare bytes, the figure is the median round.
        runs: dict[str, dict[str, list[float]]] = {
            side: {d: [] for d, _ in RUNS} for side in ("gateway", "bare")
        }
        per_round: dict[str, list[float]] = {d: [] for d, _ in RUNS}

        def measure(side: str) -> dict[str, float]:
            if side == "gateway":
                assert service is not None
                settle(service.pid)
                cpu0 = cpu_seconds(service.pid)
            got = {}
            for direction, cc in RUNS:
                (got[direction],) = compete([(c1, ports[0])], seconds, congestion=cc,
                                            download=direction.startswith("down"))
                runs[side][direction].append(got[direction])
            if side == "gateway":
                service_cpu.append(round(cpu_seconds(service.pid) - cpu0, 2))
            return got

        for r in range(rounds):
            if r > 0:
                service = start_gateway()  # restores the 201 devices from its database
                if (n := len(call(cfg, "status")["devices"])) != FILLERS + 1:
                    raise RuntimeError(f"the gateway restored {n} devices")
                if (n := leaf_classes(topo)) != result["shaping_leaf_classes"]:
                    raise RuntimeError(f"the gateway restored {n} shaping classes")
            g1 = measure("gateway")
            stop_gateway(service)
            b1, b2 = measure("bare"), measure("bare")
            service = start_gateway()
            g2 = measure("gateway")
            stop_gateway(service)
            for d in per_round:
                per_round[d].append((g1[d] + g2[d]) / (b1[d] + b2[d]))
        result["forwarding_ratio"] = round(statistics.median(per_round["down"]), 3)
        result["forwarding_ratio_up"] = round(statistics.median(per_round["up"]), 3)
        result["forwarding_ratio_bbr"] = round(statistics.median(per_round["down_bbr"]), 3)
        result["forwarding_ratio_up_bbr"] = round(statistics.median(per_round["up_bbr"]), 3)
        result["forwarding_ratio_rounds"] = {
            d: [round(x, 3) for x in v] for d, v in per_round.items()
        }
        result["forwarding_bps"] = {
            side: {d: [round(b) for b in v] for d, v in x.items()} for side, x in runs.items()
        }
        result["seconds_per_iperf3"] = seconds
        result["gateway_service_cpu_s_per_measure"] = service_cpu
    finally:
        if service is not None and service.poll() is None:
            service.terminate()
            try:
                service.wait(timeout=20)
            except subprocess.TimeoutExpired:
                service.kill()
        topo.close()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
