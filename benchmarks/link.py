"""Line-monitor benchmark on a namespaced line shaped to 30/1 Mbit/s; prints one JSON
object as its last line. Needs root (network namespaces, raw sockets, nft, tc).

The topology is the tests' (tests/link/netns.py): gw (the appliance) - box (shapes
the access line: htb through ifb down, tbf up) - isp - wan (anchors, a resolver,
iperf3, a fake speedtest.net over HTTPS with a throwaway CA).

- `<backend>.download_error_ratio`, `.upload_error_ratio`: |measured / truth - 1|, the
  truth being the shaped rate's TCP goodput, rate x 1448/1514 (a 1514-byte frame, which
  is what htb and tbf count, carries 1448 bytes of TCP payload with timestamps), so
  30 Mbit/s is 28.69 Mbit/s of payload and 1 Mbit/s is 0.956. Each backend runs through
  the real link service (`telecentre link run` in gw, a forced test over its socket).
- `<backend>.bytes_per_test`: the bytes the service recorded for that test (what the
  monthly budget is charged).
- `probe_bytes_per_day`: measured, not computed. nft named counters in gw count the IP
  bytes (IP header included, no Ethernet header) of every ICMP and DNS packet in and out
  (gw's input and output hooks) while the service probes at its default interval (10 s,
  1 s timeout) and nothing else runs: all light-probe traffic, the box's echoes
  included. The steady rate over the window is extrapolated to 86,400 s, plus 24 times
  the start-up (the hourly traceroute and the first two rounds: conservative) taken
  from gw's /proc/net/dev, because scapy sends the traceroute through a packet socket
  that the netfilter output hook never sees. Two cross-checks:
  `probe_frame_bytes_per_day`, the same from /proc/net/dev alone (whole Ethernet frames,
  ARP included: an upper bound), and `probe_line_bytes_per_day`, the ICMP and DNS IP
  bytes crossing the access line (counted at the box), what an ISP's volume cap sees.
- `link_service_rss_mb`: VmRSS of the service process after its test, the larger of
  the two runs (the speedtest run also imports speedtest-cli); VmHWM is given too.

    python benchmarks/link.py            # the full run (about 8 minutes)
    python benchmarks/link.py --quick    # a smoke run with small numbers
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from appliance import config as config_mod  # noqa: E402
from appliance import ipc  # noqa: E402
from appliance.link.gate import read_net_dev  # noqa: E402
from appliance.link.throughput import shaped_goodput  # noqa: E402
from appliance.runtime import init_state  # noqa: E402
from tests.link import netns  # noqa: E402

HELPERS = ROOT / "tests" / "link"
METER = "t4meter"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SystemExit(f"{name} is not installed (scripts/system-deps.sh)")
    return path


def status(cfg: config_mod.Config) -> dict[str, Any]:
    try:
        return ipc.call(cfg.link_socket, "status")
    except ipc.IpcError:
        return {}


def wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {what}")


def _match(proto: str, field: str, value: object) -> dict[str, Any]:
    return {"match": {"op": "==", "left": {"payload": {"protocol": proto, "field": field}},
                      "right": value}}


def _l4(name: str) -> dict[str, Any]:
    return {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": name}}


def install_meter(net: netns.Internet) -> None:
    """Named counters: probe packets leaving and entering gw, and crossing the line."""
    base = [{"add": {"table": {"family": "inet", "name": METER}}}]
    gw = list(base)
    for chain, hook, port_field in (("out", "output", "dport"), ("in", "input", "sport")):
        gw += [
            {"add": {"counter": {"family": "inet", "table": METER, "name": chain}}},
            {"add": {"chain": {"family": "inet", "table": METER, "name": chain,
                               "type": "filter", "hook": hook, "prio": -300,
                               "policy": "accept"}}},
            {"add": {"rule": {"family": "inet", "table": METER, "chain": chain,
                              "expr": [_l4("icmp"), {"counter": chain}]}}},
            {"add": {"rule": {"family": "inet", "table": METER, "chain": chain,
                              "expr": [_match("udp", port_field, 53), {"counter": chain}]}}},
        ]
    net.nft("gw", gw)
    box = list(base) + [
        {"add": {"counter": {"family": "inet", "table": METER, "name": "line"}}},
        {"add": {"chain": {"family": "inet", "table": METER, "name": "fwd", "type": "filter",
                           "hook": "forward", "prio": -300, "policy": "accept"}}},
    ]
    for expr in (_l4("icmp"), _match("udp", "dport", 53), _match("udp", "sport", 53)):
        box.append({"add": {"rule": {"family": "inet", "table": METER, "chain": "fwd", "expr": [
            {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "lan"}},
            expr, {"counter": "line"}]}}})
        box.append({"add": {"rule": {"family": "inet", "table": METER, "chain": "fwd", "expr": [
            {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "lan"}},
            expr, {"counter": "line"}]}}})
    net.nft("box", box)


def read_meter(net: netns.Internet, ns: str) -> int:
    out = json.loads(net.run(ns, net.nft_bin, "-j", "list", "counters", "table", "inet", METER))
    return sum(item["counter"]["bytes"] for item in out["nftables"] if "counter" in item)


def lan_bytes(net: netns.Internet) -> int:
    """Bytes received plus sent on gw's interface, from gw's own /proc/net/dev."""
    rx, tx = read_net_dev_text(net.run("gw", "cat", "/proc/net/dev"))["lan0"]
    return rx + tx


def read_net_dev_text(text: str) -> dict[str, tuple[int, int]]:
    with tempfile.NamedTemporaryFile("w", suffix=".dev") as fh:
        fh.write(text)
        fh.flush()
        return read_net_dev(fh.name)


def rss_mb(pid: int) -> tuple[float, float]:
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)


def run_service(net: netns.Internet, base: Path, env: dict[str, str] | None,
                **link: str) -> tuple[config_mod.Config, Any]:
    path = netns.link_site_config(base, **link)
    cfg = config_mod.load(path)
    init_state(cfg)
    proc = net.start_link_service(path, base / "link.log", env)
    wait(lambda: status(cfg).get("isp_hop") and status(cfg).get("last_round_at"), 60,
         "the link service to find the ISP hop and finish a round")
    return cfg, proc


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def throughput(cfg: config_mod.Config, seconds: float) -> dict[str, Any]:
    reply = ipc.call(cfg.link_socket, "test", force=True)
    if not reply.get("started"):
        raise RuntimeError(f"test not started: {reply}")
    wait(lambda: status(cfg).get("last_test"), 4 * seconds + 90, "the test to finish")
    result = status(cfg)["last_test"]
    if result["result"] != "ok":
        raise RuntimeError(f"test failed: {result}")
    down, up = shaped_goodput(netns.DOWN_MBIT * 1e6), shaped_goodput(netns.UP_MBIT * 1e6)
    return {
        "download_error_ratio": round(abs(result["download_bps"] / down - 1), 4),
        "upload_error_ratio": round(abs(result["upload_bps"] / up - 1), 4),
        "bytes_per_test": int(result["bytes"]),
        "download_bps": round(result["download_bps"]),
        "upload_bps": round(result["upload_bps"]),
        "grade": result["grade"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small numbers: a smoke run")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("benchmarks/link.py needs root (network namespaces)")
    window, seconds = (30.0, 4.0) if args.quick else (300.0, 10.0)
    net = netns.Internet(tool("ip"), tool("tc"), tool("nft"))
    work = Path(tempfile.mkdtemp(prefix="t4bench"))
    procs: list[subprocess.Popen] = []
    result: dict[str, Any] = {}
    try:
        net.build()
        net.start_servers(HELPERS, tool("iperf3"))
        ca = net.start_speedtest(HELPERS, tool("openssl"), work / "pki")
        install_meter(net)
        meters = lambda: (lan_bytes(net), read_meter(net, "gw"), read_meter(net, "box"))  # noqa: E731
        before = meters()
        # Light probes at the product's defaults (10 s, 1 s timeout), no test running.
        cfg, proc = run_service(net, work / "iperf3", None, probe_interval="10",
                                probe_timeout="1.0", test_seconds=f"{seconds:g}")
        procs.append(proc)
        first_round = status(cfg)["last_round_at"]
        wait(lambda: status(cfg).get("last_round_at") != first_round, 30, "a second round")
        # Start-up (traceroute and two rounds), then a steady window from just after a round.
        at_window = meters()
        t0 = time.monotonic()
        time.sleep(window)
        elapsed = time.monotonic() - t0
        after = meters()
        startup = at_window[0] - before[0]
        per_day = 86400 / elapsed
        result["probe_bytes_per_day"] = round((after[1] - at_window[1]) * per_day + 24 * startup)
        result["probe_frame_bytes_per_day"] = round((after[0] - at_window[0]) * per_day
                                                    + 24 * startup)
        result["probe_line_bytes_per_day"] = round((after[2] - at_window[2]) * per_day
                                                   + 24 * (at_window[2] - before[2]))
        result["probe_window_s"] = round(elapsed, 1)
        result["startup_bytes"] = startup
        result["iperf3"] = throughput(cfg, seconds)
        rss = [rss_mb(proc.pid)]
        stop(proc)
        cfg, proc = run_service(net, work / "speedtest", {"SSL_CERT_FILE": str(ca)},
                                test_backend='"speedtest"', test_seconds=f"{seconds:g}")
        procs.append(proc)
        result["speedtest"] = throughput(cfg, seconds)
        rss.append(rss_mb(proc.pid))
        stop(proc)
        result["link_service_rss_mb"] = round(max(r for r, _ in rss), 1)
        result["link_service_hwm_mb"] = round(max(h for _, h in rss), 1)
        result["truth_bps"] = {"download": round(shaped_goodput(netns.DOWN_MBIT * 1e6)),
                               "upload": round(shaped_goodput(netns.UP_MBIT * 1e6))}
        result["test_seconds"] = seconds
    finally:
        for proc in procs:
            if proc.poll() is None:
                stop(proc)
        net.close()
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
