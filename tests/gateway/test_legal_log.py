"""The Wi-Fi legal log's retention and the gateway's voucher commands (no kernel needed:
a stand-in nft runner; the ruleset itself is tested in test_kernel/test_service)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from appliance import config as config_mod
from appliance import db, ipc, wifi_accounts, wifilog
from appliance.config import Config, ConfigError
from appliance.gateway import ruleset as rs
from appliance.gateway.service import GatewayService
from appliance.runtime import init_state
from tests.conftest import write_site_config

DAY = 86400.0
NOW = 1_800_000_000.0


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class FakeNft:
    """Accepts every transaction and reports no counters: enough for the service's bookkeeping."""

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []

    def apply(self, commands) -> list[dict[str, Any]]:
        self.batches.append(list(commands))
        return []

    def read_quotas(self) -> dict:
        return {}

    def list_table(self) -> None:  # no table: no quota or device counter to read
        return None


def _session(conn, kind: str, owner: int, mac: str, start: float, end: float | None) -> None:
    conn.execute(
        "INSERT INTO wifi_sessions (owner_kind, owner_id, mac, ip, started_at, ended_at)"
        " VALUES (?, ?, ?, '10.42.0.20', ?, ?)",
        (kind, owner, mac, start, end),
    )


def test_purge_by_date_keeps_a_year_from_the_end_and_open_sessions(tmp_path: Path) -> None:
    conn = db.open_db(tmp_path / "t.db")
    conn.executemany(
        "INSERT INTO guest_devices (id, mac, first_seen) VALUES (?, ?, ?)",
        [(1, "02:00:00:00:00:01", NOW - 400 * DAY), (2, "02:00:00:00:00:02", NOW - 400 * DAY)],
    )
    _session(conn, "guest", 1, "02:00:00:00:00:01", NOW - 400 * DAY, NOW - 366 * DAY)  # gone
    _session(conn, "guest", 2, "02:00:00:00:00:02", NOW - 400 * DAY, NOW - 364 * DAY)  # kept
    _session(conn, "member", 5, "02:00:00:00:00:03", NOW - 500 * DAY, None)  # open: kept
    _session(conn, "member", 5, "02:00:00:00:00:03", NOW - 10 * DAY, NOW - 9 * DAY)  # kept
    assert wifilog.purge(conn, 365, now=NOW) == 1
    left = sorted(r[0] for r in conn.execute("SELECT mac FROM wifi_sessions"))
    assert left == ["02:00:00:00:00:02", "02:00:00:00:00:03", "02:00:00:00:00:03"]
    # the guest device whose last session went is forgotten; the other is still referenced
    assert [r[0] for r in conn.execute("SELECT id FROM guest_devices")] == [2]
    assert wifilog.purge(conn, 365, now=NOW) == 0
    assert wifilog.purge(conn, 365, now=NOW + 2 * DAY) == 1
    conn.close()


def test_config_key_defaults_to_a_year_and_refuses_less_or_more() -> None:
    cfg = config_mod.parse(tomllib.loads(config_mod.default_config_text()))
    assert cfg.wifi_sessions_days == 365
    cfg = config_mod.parse(tomllib.loads("[retention]\nwifi_sessions_days = 366"), "s.toml")
    assert cfg.wifi_sessions_days == 366
    for days in (90, 364, 367, 730):  # the portal's terms promise a year, then deleted
        with pytest.raises(ConfigError, match="wifi_sessions_days"):
            config_mod.parse(tomllib.loads(f"[retention]\nwifi_sessions_days = {days}"),
                             "s.toml")


@pytest.fixture
def service(tmp_path: Path):
    config: Config = config_mod.load(write_site_config(tmp_path))
    init_state(config)
    config.runtime_dir.mkdir(parents=True, exist_ok=True)
    clock = Clock(NOW)
    svc = GatewayService(config, FakeNft(), wall=clock)  # type: ignore[arg-type]
    svc.clock = clock  # type: ignore[attr-defined]
    svc.start(socket=True, loop=False)
    try:
        yield svc
    finally:
        svc.stop()


def test_gateway_purges_in_its_loop_hourly(service: GatewayService) -> None:
    _session(service.conn, "guest", 1, "02:00:00:00:00:09", NOW - 400 * DAY, NOW - 380 * DAY)
    service.step()
    assert service.conn.execute("SELECT COUNT(*) FROM wifi_sessions").fetchone()[0] == 0
    _session(service.conn, "guest", 1, "02:00:00:00:00:09", NOW - 400 * DAY, NOW - 380 * DAY)
    service.step()  # within the hour: not again
    assert service.conn.execute("SELECT COUNT(*) FROM wifi_sessions").fetchone()[0] == 1
    service.clock.t += 3601  # type: ignore[attr-defined]
    service.step()
    assert service.conn.execute("SELECT COUNT(*) FROM wifi_sessions").fetchone()[0] == 0


def test_voucher_create_and_revoke_over_the_socket(service: GatewayService) -> None:
    sock = service.config.gateway_socket
    reply = ipc.call(sock, "voucher_create", count=3, quota_mb=200, max_devices=2,
                     valid_days=7, batch="  Fête\n du  village ", created_by="alice")
    assert reply["batch"] == "Fête du village" and reply["valid_until"] == NOW + 7 * DAY
    codes = [v["code"] for v in reply["vouchers"]]
    assert len(set(codes)) == 3
    rows = service.conn.execute("SELECT * FROM vouchers ORDER BY id").fetchall()
    assert [(r["quota_bytes"], r["max_devices"], r["created_by"]) for r in rows] == [
        (200_000_000, 2, "alice")] * 3
    vid = wifi_accounts.find_voucher(service.conn, codes[0], NOW)
    assert vid == reply["vouchers"][0]["id"]
    # a device on the voucher is taken off when it is revoked
    service.authorize(rs.Owner("voucher", vid), "02:00:00:00:00:0a", "10.42.0.30")
    assert ipc.call(sock, "voucher_revoke", id=vid) == {"ok": True, "revoked": True,
                                                         "kicked": 1}
    assert service.devices == {}
    assert wifi_accounts.find_voucher(service.conn, codes[0], NOW) is None
    end = service.conn.execute("SELECT end_reason FROM wifi_sessions").fetchone()[0]
    assert end == "revoked"
    assert ipc.call(sock, "voucher_revoke", id=vid)["revoked"] is False
    with pytest.raises(ValueError, match="revoked"):
        service.authorize(rs.Owner("voucher", vid), "02:00:00:00:00:0b", "10.42.0.31")


@pytest.mark.parametrize("bad", [
    {"count": 0}, {"count": 201}, {"quota_mb": "100"}, {"max_devices": 11},
    {"valid_days": True}, {"valid_days": 400},
])
def test_voucher_create_refuses_out_of_bounds(service: GatewayService, bad: dict) -> None:
    args = {"count": 1, "quota_mb": 100, "max_devices": 1, "valid_days": 1, **bad}
    with pytest.raises(ipc.IpcError, match="must be a whole number"):
        ipc.call(service.config.gateway_socket, "voucher_create", **args)
    assert service.conn.execute("SELECT COUNT(*) FROM vouchers").fetchone()[0] == 0
    with pytest.raises(ipc.IpcError):
        ipc.call(service.config.gateway_socket, "voucher_revoke", id="1 OR 1=1")
