"""Per-device bytes up and down in the legal log, and the current rate per device, on a
real kernel table: a known transfer shows up in the device's session row, a restart
and a reboot keep the counts, the metrics by class and direction follow them.

Why the tolerances: the kernel counts IP packets in the forward hook (headers
included, Ethernet not). A download of N payload bytes therefore counts N plus at
most 52 bytes (IP 20, TCP with timestamps 32) per 1,448-byte segment (3.6 %; less
with GRO, which merges segments under one header) plus the handshake; the upload side
is the ACKs, at most one 52-byte ACK per segment (3.6 % of N).
"""

from __future__ import annotations

import datetime as dt
import subprocess
import time
from pathlib import Path

import pytest

from appliance import config as config_mod
from appliance import ipc
from appliance.gateway import ruleset as rs
from appliance.gateway.service import GatewayService
from tests.conftest import require_tool
from tests.gateway.netns import SERVER, topology_config
from tests.gateway.traffic import iperf3, start_servers

pytestmark = pytest.mark.slow

NOON = dt.datetime(2026, 5, 4, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))).timestamp()
HEADERS = 52 / 1448


def down_bounds(n: int) -> tuple[int, int]:
    return n, round(n * (1 + HEADERS)) + 4096


@pytest.fixture
def cfg(tmp_path: Path) -> config_mod.Config:
    return topology_config(tmp_path)


def _row(svc: GatewayService, mac: str, open_only: bool = True):
    sql = "SELECT * FROM wifi_sessions WHERE mac = ?" + (" AND ended_at IS NULL" if open_only
                                                         else " ORDER BY id DESC LIMIT 1")
    return svc.conn.execute(sql, (mac,)).fetchone()


def _device(status: dict, mac: str) -> dict:
    (d,) = [d for d in status["devices"] if d["mac"] == mac]
    return d


def _metric(svc: GatewayService, kind: str, direction: str) -> float:
    return svc.metrics.bytes.labels(kind, direction)._value.get()


def test_known_transfer_in_the_session_row_kept_across_restart_and_reboot(topo, cfg):
    c1, c2 = topo.clients
    member = rs.Owner("member", 5)
    svc = GatewayService(cfg, topo.nft(), wall=lambda: NOON).start(loop=False)
    try:
        ipc.call(cfg.gateway_socket, "authorize", kind="member", owner_id=5, mac=c1.mac, ip=c1.ip)
        ipc.call(cfg.gateway_socket, "authorize", kind="guest", mac=c2.mac, ip=c2.ip)
        n = 3_000_000
        assert topo.fetch(c1, SERVER, 5001, str(n), idle=2)["received"] == n
        d1 = _device(ipc.call(cfg.gateway_socket, "status"), c1.mac)
        lo, hi = down_bounds(n)
        assert lo <= d1["bytes_down"] <= hi
        assert 0 < d1["bytes_up"] <= n * HEADERS + 4096
        # The other device moved nothing, and the counters see what the quota sees.
        d2 = _device(ipc.call(cfg.gateway_socket, "status"), c2.mac)
        assert d2["bytes_up"] == d2["bytes_down"] == 0
        svc.persist()
        assert svc.ledgers[member].used_bytes == d1["bytes_up"] + d1["bytes_down"]
        row = _row(svc, c1.mac)
        assert (row["bytes_up"], row["bytes_down"]) == (d1["bytes_up"], d1["bytes_down"])
        assert _metric(svc, "member", "down") == d1["bytes_down"]
        assert _metric(svc, "member", "up") == d1["bytes_up"]
        assert _metric(svc, "guest", "down") == 0
    finally:
        svc.stop()

    # The gateway is down, the table stays and keeps counting: a restart takes the
    # kernel's count (ahead of the database), not the last save.
    m = 1_000_000
    assert topo.fetch(c1, SERVER, 5001, str(m), idle=2)["received"] == m
    svc = GatewayService(cfg, topo.nft(), wall=lambda: NOON).start(socket=False, loop=False)
    try:
        after = _device(svc.cmd_status({}), c1.mac)
        lo, hi = down_bounds(n + m)
        assert lo <= after["bytes_down"] <= hi
        assert after["bytes_down"] >= d1["bytes_down"] + m
        assert _row(svc, c1.mac)["bytes_down"] == after["bytes_down"]  # saved at restore
    finally:
        svc.stop()

    # Reboot: no table. The database's count comes back in the new counters.
    topo.nft().delete_tables()
    svc = GatewayService(cfg, topo.nft(), wall=lambda: NOON).start(socket=False, loop=False)
    try:
        restored = _device(svc.cmd_status({}), c1.mac)
        assert restored["bytes_down"] == after["bytes_down"]
        assert restored["bytes_up"] == after["bytes_up"]
        assert topo.fetch(c1, SERVER, 5001, str(m), idle=2)["received"] == m
        # The session ends: its row is closed with the last bytes the kernel counted.
        assert svc.kick(c1.mac)
        row = _row(svc, c1.mac, open_only=False)
        assert row["end_reason"] == "kicked" and row["ended_at"] is not None
        lo, hi = down_bounds(n + 2 * m)
        assert lo <= row["bytes_down"] <= hi
        assert row["bytes_down"] >= restored["bytes_down"] + m
        # A new session of the same device starts from zero.
        svc.authorize(member, c1.mac, c1.ip)
        again = _device(svc.cmd_status({}), c1.mac)
        assert again["bytes_down"] == again["bytes_up"] == 0
    finally:
        svc.stop()


def test_current_rate_per_device_from_counter_deltas(topo, cfg):
    require_tool("iperf3")
    c1, c2 = topo.clients
    (port,) = start_servers(topo, 1)
    svc = GatewayService(cfg, topo.nft(), wall=lambda: NOON).start(socket=False, loop=False)
    try:
        svc.authorize(rs.Owner("member", 1), c1.mac, c1.ip)
        svc.authorize(rs.Owner("member", 2), c2.mac, c2.ip)
        assert "rate_down_bps" not in _device(svc.cmd_status({}), c1.mac)  # one read: no rate
        target = 20_000_000  # iperf3 paces the server at this many bit/s of payload
        proc = subprocess.Popen(
            ["ip", "netns", "exec", c1.ns, iperf3(), "-c", SERVER, "-p", str(port), "-R",
             "-b", str(target), "-t", "6", "-J"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        topo.procs.append(proc)
        try:
            time.sleep(2.0)
            svc.cmd_status({})
            time.sleep(3.0)
            d1 = _device(svc.cmd_status({}), c1.mac)
            d2 = _device(svc.cmd_status({}), c2.mac)
        finally:
            proc.communicate(timeout=30)
        # Payload at the target rate, plus headers: within 15 % (iperf3's pacing is
        # per burst, and the two reads are not aligned with its intervals).
        assert target * 0.85 <= d1["rate_down_bps"] <= target * (1 + HEADERS) * 1.15
        assert 0 < d1["rate_up_bps"] < d1["rate_down_bps"] * 0.1
        assert d2["rate_down_bps"] == d2["rate_up_bps"] == 0
    finally:
        svc.stop()
