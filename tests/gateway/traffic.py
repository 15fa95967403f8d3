"""iperf3 between the topology's clients and `wan`, for the shaping tests and the benchmark.

Servers and clients run inside the namespaces the caller created; servers are added to
the topology's processes, so `Topology.close()` kills them by PID.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Sequence

from tests.gateway.netns import SERVER, Client, Topology, run

# What htb counts is the whole Ethernet frame: a 1514-byte frame carries 1448 bytes of
# TCP payload (with timestamps), which is what iperf3 reports.
PAYLOAD_PER_FRAME = 1448 / 1514
BASE_PORT = 5201


def iperf3() -> str:
    path = shutil.which("iperf3")
    if path is None:
        raise RuntimeError("iperf3 is not installed (scripts/system-deps.sh)")
    return path


def goodput_bps(rate_kbit: float) -> float:
    """TCP payload rate of a link shaped to `rate_kbit` of whole frames."""
    return rate_kbit * 1000 * PAYLOAD_PER_FRAME


def start_servers(topo: Topology, count: int) -> list[int]:
    """`count` iperf3 servers in `wan` (one test at a time each); their ports."""
    ports = [BASE_PORT + i for i in range(count)]
    for port in ports:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", topo.wan, iperf3(), "-s", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        topo.procs.append(proc)
    deadline = time.monotonic() + 10
    for port in ports:
        while True:
            out = run("ip", "netns", "exec", topo.wan, "ss", "-Hltn", f"sport = :{port}").stdout
            if out.strip():
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"iperf3 server on port {port} did not start")
            time.sleep(0.05)
    return ports


def _iperf_argv(client: Client, port: int, seconds: float, download: bool, streams: int,
                congestion: str | None = None) -> list[str]:
    argv = ["ip", "netns", "exec", client.ns, iperf3(), "-c", SERVER, "-p", str(port),
            "-t", f"{seconds:g}", "-O", "1", "-J", "-P", str(streams)]
    if congestion is not None:  # both ends' TCP congestion control (iperf3 -C)
        argv += ["-C", congestion]
    return argv + (["-R"] if download else [])


def _received_bps(stdout: str) -> float:
    data = json.loads(stdout)
    if "error" in data:
        raise RuntimeError(f"iperf3: {data['error']}")
    return float(data["end"]["sum_received"]["bits_per_second"])


def compete(
    pairs: Sequence[tuple[Client, int]],
    seconds: float,
    *,
    download: bool = True,
    streams: Sequence[int] | None = None,
    congestion: str | None = None,
) -> list[float]:
    """Run iperf3 from every (client, server port) at once; each one's received bit/s.
    `congestion`: the TCP congestion control of both ends (None: the system's)."""
    streams = list(streams or [1] * len(pairs))
    procs = [
        subprocess.Popen(
            _iperf_argv(c, port, seconds, download, n, congestion),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for (c, port), n in zip(pairs, streams, strict=True)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=seconds + 30)
        if proc.returncode != 0 and not out.strip():
            raise RuntimeError(f"iperf3 failed: {err.strip()}")
        results.append(_received_bps(out))
    return results


def jain(values: Sequence[float]) -> float:
    """Jain's fairness index: 1 when all are equal, 1/n when one takes everything."""
    total = sum(values)
    squares = sum(v * v for v in values)
    return total * total / (len(values) * squares) if squares else 0.0
