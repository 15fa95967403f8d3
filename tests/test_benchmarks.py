"""The benchmark scripts keep working (figures are printed, not asserted here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import IN_CI, require_tool

ROOT = Path(__file__).resolve().parent.parent


def run_root_benchmark(script: str, *args: str, tools: tuple[str, ...]) -> dict:
    """Run a benchmark that needs root (namespaces) and these tools; its last line's JSON.
    Not root: a failure in CI (which runs as root), a skip elsewhere."""
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail(f"benchmarks/{script} needs root (CI runs as root)")
        pytest.skip(f"benchmarks/{script} needs root (network namespaces)")
    for name in tools:
        require_tool(name)
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        capture_output=True, text=True, timeout=400, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_door_benchmark_quick_run_prints_its_figures():
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "door.py"), "--quick"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    for key in ("tap_to_unlock_p50_ms", "tap_to_unlock_p99_ms", "spi_transfers_per_idle_poll",
                "idle_cpu_percent", "door_service_rss_mb"):
        assert isinstance(figures[key], int | float) and figures[key] >= 0, key
    assert figures["taps"] == 20 and figures["panel_request_errors"] == 0
    # Exact and machine-independent: the reader's empty poll is bounded by design.
    assert figures["spi_transfers_per_idle_poll"] <= 10


@pytest.mark.slow
def test_link_benchmark_quick_run_prints_its_figures():
    figures = run_root_benchmark("link.py", "--quick",
                                 tools=("ip", "tc", "nft", "iperf3", "openssl"))
    for backend in ("iperf3", "speedtest"):
        fig = figures[backend]
        # Loose bounds for a 4 s smoke run; the full run is what the targets are about.
        assert 0 <= fig["download_error_ratio"] < 0.25, fig
        assert 0 <= fig["upload_error_ratio"] < 0.25, fig
        assert fig["bytes_per_test"] > 4 * 20e6 / 8, fig
    # Probes are measured: 4 echoes and a DNS query every 10 s are at least ~2.5 MB/day.
    assert 2e6 < figures["probe_line_bytes_per_day"] <= figures["probe_bytes_per_day"]
    assert figures["probe_bytes_per_day"] <= figures["probe_frame_bytes_per_day"] < 10e6
    assert 10 < figures["link_service_rss_mb"] < 500


@pytest.mark.slow
def test_gateway_benchmark_quick_run_prints_its_figures():
    figures = run_root_benchmark("gateway.py", "--quick", tools=("ip", "tc", "nft", "iperf3"))
    # Keys and kinds only: timings belong to the full run.
    for key in ("quota_overshoot_bytes", "forwarding_ratio", "forwarding_ratio_up",
                "forwarding_ratio_bbr", "forwarding_ratio_up_bbr", "jain_fairness",
                "gateway_service_rss_mb"):
        assert isinstance(figures[key], int | float), key
    assert set(figures["login_to_internet_ms"]) >= {"p50", "p99"}
    assert 0 < figures["forwarding_ratio"] and 0 < figures["jain_fairness"] <= 1
    assert figures["shaping_leaf_classes"] == 201
    # The service's own CPU time in each measure of the gateway (two, one round).
    assert len(figures["gateway_service_cpu_s_per_measure"]) == 2


@pytest.mark.slow
def test_gateway_parts_benchmark_smoke_run_checks_each_part():
    """One short round: every part is checked to be what it says (its NAT, counters, the
    measured client's own htb classes) before its figures count."""
    figures = run_root_benchmark("gateway_parts.py", "--rounds", "1", "--seconds", "1",
                                 tools=("ip", "tc", "nft", "iperf3"))
    assert set(figures["parts"]) == {"ctnat", "table", "htb", "full"}
    for part in figures["parts"].values():
        assert set(part) == {"down", "up"} and all(r > 0 for r in part.values())
    assert all(len(v) == 2 for d in figures["bps"].values() for v in d.values())
