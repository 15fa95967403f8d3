"""The gateway service over a real kernel table: IPC, restore after restart and reboot,
midnight reset with an injected clock, metrics without personal labels."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import pytest

from appliance import config as config_mod
from appliance import ipc
from appliance.gateway import ruleset as rs
from appliance.gateway.service import GatewayService
from tests.gateway.netns import SERVER, topology_config

pytestmark = pytest.mark.slow


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def cfg(tmp_path: Path) -> config_mod.Config:
    return topology_config(
        tmp_path,
        ("daily_quota_mb = 1000", "daily_quota_mb = 1"),  # guests: 1 MB
        ("daily_quota_mb = 20000", "daily_quota_mb = 2"),  # members: 2 MB
        ('when_spent = "throttle"', 'when_spent = "block"'),  # cut, not slowed
    )


NOON = dt.datetime(2026, 5, 4, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))).timestamp()


def test_member_devices_share_a_quota_restored_after_restart_and_reboot(topo, cfg):
    c1, c2 = topo.clients
    clock = Clock(NOON)
    svc = GatewayService(
        cfg, topo.nft(), wall=clock, neighbours=topo.neighbours()
    ).start(loop=False)
    try:
        assert topo.who(c1, SERVER, 80) == "portal"
        ipc.call(cfg.gateway_socket, "authorize", kind="member", owner_id=5, mac=c1.mac, ip=c1.ip)
        ipc.call(cfg.gateway_socket, "authorize", kind="member", owner_id=5, mac=c2.mac, ip=c2.ip)
        assert topo.who(c1, SERVER, 5001) == "wan"
        # Both devices count against the member's one quota (2 MB).
        got1 = topo.fetch(c1, SERVER, 5001, "600000", idle=2)["received"]
        got2 = topo.fetch(c2, SERVER, 5001, "600000", idle=2)["received"]
        assert got1 == got2 == 600_000
        svc.persist()
        used = svc.ledgers[rs.Owner("member", 5)].used_bytes
        assert 1_200_000 < used < 1_300_000
        status = ipc.call(cfg.gateway_socket, "status")
        assert len(status["devices"]) == 2 and status["quotas"][0]["used_bytes"] == used
    finally:
        svc.stop()

    # Service restart: the table stayed; the kernel's count is taken, devices still work.
    svc = GatewayService(
        cfg, topo.nft(), wall=clock, neighbours=topo.neighbours()
    ).start(socket=False, loop=False)
    try:
        assert svc.ledgers[rs.Owner("member", 5)].used_bytes == used
        assert topo.who(c1, SERVER, 5001) == "wan"
        svc.persist()
        used = svc.ledgers[rs.Owner("member", 5)].used_bytes
    finally:
        svc.stop()

    # Reboot: no table at all. The stored count comes back exactly through `used`.
    topo.nft().delete_tables()
    assert topo.nft().read_quotas() == {}
    svc = GatewayService(
        cfg, topo.nft(), wall=clock, neighbours=topo.neighbours()
    ).start(socket=False, loop=False)
    try:
        assert topo.nft().read_quotas()[rs.Owner("member", 5)].used_bytes == used
        left = 2_000_000 - used
        got = topo.fetch(c1, SERVER, 5001, "2000000", idle=2)["received"]
        assert left - 65536 <= got <= left + 1514
        svc.persist()
        assert svc.ledgers[rs.Owner("member", 5)].spent
        assert svc.metrics.exhausted.labels("member")._value.get() == 1
    finally:
        svc.stop()


def test_midnight_reset_guest_by_mac_kick_and_extend(topo, cfg):
    c1, _ = topo.clients
    clock = Clock(NOON)
    svc = GatewayService(
        cfg, topo.nft(), wall=clock, neighbours=topo.neighbours()
    ).start(socket=False, loop=False)
    try:
        owner = svc.guest_owner(c1.mac)
        assert svc.guest_owner(c1.mac.upper()) == owner  # one guest id per device
        svc.authorize(owner, c1.mac, c1.ip)
        got = topo.fetch(c1, SERVER, 5001, "3000000", idle=2)["received"]
        assert got <= 1_000_000 + 1514
        svc.persist()
        assert svc.ledgers[owner].spent
        assert topo.who(c1, SERVER, 5001, idle=1) is None

        # The admin extends by 500 kB: exactly that much more gets through (the server's
        # retransmissions of the cut download aborted first: they would use some of it).
        topo.end_server_connections(5001)
        ext = svc.extend(owner, 500_000)
        assert ext.total_limit == 1_500_000 and not ext.spent
        got = topo.fetch(c1, SERVER, 5001, "3000000", idle=2)["received"]
        assert 500_000 - 65536 <= got <= 500_000 + 1514

        # Midnight (local): a new day, a fresh quota, nothing used.
        clock.t = NOON + 12 * 3600 + 60
        svc.step()
        assert svc.day == dt.date(2026, 5, 5)
        fresh = svc.ledgers[owner]
        assert (fresh.used_bytes, fresh.total_limit) == (0, 1_000_000)
        assert topo.who(c1, SERVER, 5001) == "wan"

        assert svc.kick(c1.mac)
        assert topo.who(c1, SERVER, 5001, idle=1) is None
        assert topo.who(c1, SERVER, 80) == "portal"
        assert not svc.kick(c1.mac)
        row = svc.conn.execute("SELECT end_reason FROM wifi_sessions").fetchone()
        assert row["end_reason"] == "kicked"
    finally:
        svc.stop()


def _spent4(topo) -> list:
    """The kernel's spent4 set (devices redirected to the "quota reached" page)."""
    listing = topo.nft().list_table() or []
    sets = [o["set"] for o in listing if "set" in o and o["set"]["name"] == "spent4"]
    return [e["concat"] for e in sets[0].get("elem", [])]


def test_the_admin_s_reset_over_the_socket_gives_a_spent_quota_back(topo, cfg):
    """A member (2 MB, "block") downloads past the quota: the kernel cuts it and the
    device meets the "quota reached" page. The panel's reset, over the gateway socket,
    zeroes the kernel's quota: traffic flows again, nothing is spent or marked."""
    c1, _ = topo.clients
    member = rs.Owner("member", 6)
    svc = GatewayService(
        cfg, topo.nft(), wall=Clock(NOON), neighbours=topo.neighbours()
    ).start(loop=False)
    try:
        ipc.call(cfg.gateway_socket, "authorize", kind="member", owner_id=6, mac=c1.mac, ip=c1.ip)
        got = topo.fetch(c1, SERVER, 5001, "3000000", idle=2)["received"]
        assert 1_000_000 < got <= 2_000_000 + 1514  # cut by the kernel
        svc.persist()
        assert svc.ledgers[member].spent and set(svc.spent_marked) == {c1.mac}
        assert _spent4(topo) == [[c1.mac, c1.ip]]
        assert topo.who(c1, SERVER, 5001, idle=1) is None
        assert topo.who(c1, SERVER, 80) == "portal"  # the "quota reached" redirect

        topo.end_server_connections(5001)
        out = ipc.call(cfg.gateway_socket, "reset", kind="member", owner_id=6)
        assert out["ok"] and not out["spent"] and out["policy"] == "block"
        assert (out["used_bytes"], out["limit_bytes"]) == (0, 2_000_000)
        assert not svc.ledgers[member].spent and svc.spent_marked == {}
        assert _spent4(topo) == []
        # Counted from zero (a stray retransmission of the cut download may pass now).
        reading = topo.nft().read_quotas()[member]
        assert reading.used_bytes < 100_000 and not reading.spent
        # Traffic flows again, the web included, and the new count starts from zero.
        assert topo.who(c1, SERVER, 80) == "wan"
        assert topo.fetch(c1, SERVER, 5001, "1000000", idle=2)["received"] == 1_000_000
        svc.persist()
        ledger = svc.ledgers[member]
        assert 1_000_000 < ledger.used_bytes < 1_200_000 and not ledger.spent
        quota = ipc.call(cfg.gateway_socket, "status")["quotas"][0]
        assert (quota["id"], quota["spent"]) == (6, False)
        # A reset of an owner with no quota today is refused, not created.
        with pytest.raises(ipc.IpcError, match="no quota today"):
            ipc.call(cfg.gateway_socket, "reset", kind="member", owner_id=99)
    finally:
        svc.stop()


def test_metrics_have_no_personal_labels(topo, cfg):
    c1, _ = topo.clients
    svc = GatewayService(
        cfg, topo.nft(), wall=Clock(NOON), neighbours=topo.neighbours()
    ).start(socket=False, loop=False)
    try:
        svc.authorize(rs.Owner("member", 5), c1.mac, c1.ip)
        topo.fetch(c1, SERVER, 5001, "100000", idle=2)
        svc.persist()
        labels = {k for fam in svc.registry.collect() for s in fam.samples for k in s.labels}
        values = {
            v for fam in svc.registry.collect() for s in fam.samples for v in s.labels.values()
        }
        assert labels <= {"class", "result", "reason", "direction"}
        reasons = {s.labels["reason"] for fam in svc.registry.collect() for s in fam.samples
                   if "reason" in s.labels}
        assert reasons == {"left", "expired"}  # why a session ended, never whose
        assert not any(c1.mac in v or c1.ip in v for v in values)
        assert svc.metrics.bytes.labels("member", "down")._value.get() >= 100_000
    finally:
        svc.stop()


def test_bad_commands_are_refused(topo, cfg):
    svc = GatewayService(
        cfg, topo.nft(), wall=Clock(NOON), neighbours=topo.neighbours()
    ).start(loop=False)
    try:
        for args in (
            {"kind": "member", "owner_id": 1, "mac": "nope", "ip": "10.42.0.50"},
            {"kind": "member", "owner_id": 1, "mac": "02:00:00:00:00:09", "ip": "fd00::5"},
            {"kind": "admin", "owner_id": 1, "mac": "02:00:00:00:00:09", "ip": "10.42.0.50"},
            {
                "kind": "member",
                "owner_id": "1; drop",
                "mac": "02:00:00:00:00:09",
                "ip": "10.42.0.5",
            },
        ):
            with pytest.raises(ipc.IpcError):
                ipc.call(cfg.gateway_socket, "authorize", **args)
        with pytest.raises(ipc.IpcError):
            ipc.call(cfg.gateway_socket, "extend", kind="member", owner_id=99, extra_bytes=5)
        assert ipc.call(cfg.gateway_socket, "status")["devices"] == []
    finally:
        svc.stop()


def test_portal_commands_find_the_mac_in_the_kernel_and_vouchers_cap_devices(topo, cfg):
    """The portal names a device by its IP only; the MAC comes from gw's neighbour table."""
    import ipaddress

    from appliance import wifi_accounts
    from appliance.gateway.neighbours import NeighbourLookup
    from tests.gateway.netns import BOX, PORTAL_PORT

    c1, c2 = topo.clients
    net = ipaddress.IPv4Interface(cfg.gateway.lan_address).network
    lookup = NeighbourLookup("br0", net, ("ip", "-n", topo.gw))
    svc = GatewayService(cfg, topo.nft(), wall=Clock(NOON), neighbours=lookup).start(
        socket=False, loop=False
    )
    try:
        for c in (c1, c2):  # each device talks to the portal first, as a phone does
            assert topo.who(c, BOX, PORTAL_PORT) == "portal"
        assert lookup.mac_of(c1.ip) == c1.mac
        assert svc.cmd_client({"ip": c1.ip}) == {"ok": True, "known": True, "authorized": False}
        assert svc.cmd_client({"ip": SERVER})["known"] is False  # not on the LAN
        assert svc.cmd_portal_authorize({"kind": "guest", "ip": "10.42.0.77"})["ok"] is False
        assert svc.cmd_client({"ip": "fd00::1"})["ok"] is False

        vid, _code = wifi_accounts.create_voucher(svc.conn, batch="b", quota_bytes=3_000_000)
        got = svc.cmd_portal_authorize({"kind": "voucher", "owner_id": vid, "ip": c1.ip})
        assert got["authorized"] and got["kind"] == "voucher"
        assert got["limit_bytes"] == 3_000_000 and got["reset_in_seconds"] == 12 * 3600
        assert svc.devices[c1.mac].owner == rs.Owner("voucher", vid)
        assert topo.who(c1, SERVER, 5001) == "wan"
        # One device per voucher: the second is refused, the first may come back.
        refused = svc.cmd_portal_authorize({"kind": "voucher", "owner_id": vid, "ip": c2.ip})
        assert refused["ok"] is False and "maximum" in refused["error"]
        assert topo.who(c2, SERVER, 5001, idle=1) is None
        assert svc.cmd_portal_authorize({"kind": "voucher", "owner_id": vid, "ip": c1.ip})["ok"]
        row = svc.conn.execute("SELECT first_used_at FROM vouchers WHERE id = ?", (vid,)).fetchone()
        assert row[0] == NOON

        # Logout by IP: only the device bound with that IP, and the session says why.
        assert svc.cmd_portal_logout({"ip": c2.ip}) == {"ok": True, "logged_out": False}
        assert svc.cmd_portal_logout({"ip": c1.ip}) == {"ok": True, "logged_out": True}
        assert topo.who(c1, SERVER, 80) == "portal"
        reasons = [r[0] for r in svc.conn.execute(
            "SELECT end_reason FROM wifi_sessions ORDER BY id")]
        assert reasons[-1] == "logout"
    finally:
        svc.stop()


def test_the_gateway_puts_the_box_on_the_lan_and_retries_a_late_interface(topo, cfg, tmp_path):
    """On the box nothing else gives the LAN its address: the gateway does, at start, so
    a client meets the portal; a LAN interface that is not there yet (a late Wi-Fi
    driver) is reported in `status` and retried until it comes."""
    import ipaddress

    from appliance.gateway.lan import Lan
    from tests.gateway.netns import BOX

    c1, _ = topo.clients
    ip_cmd = ("ip", "-n", topo.gw)
    subprocess.run([*ip_cmd, "addr", "flush", "dev", "br0"], check=True)
    assert topo.who(c1, SERVER, 80) is None  # no box on the LAN: nothing answers
    forward = tmp_path / "ip_forward"
    forward.write_text("1")
    box = ipaddress.IPv4Interface(f"{BOX}/24")
    clock = Clock(NOON)
    svc = GatewayService(
        cfg, topo.nft(), wall=clock, neighbours=topo.neighbours(),
        lan=Lan("br0", box, bridge=True, command=ip_cmd, ip_forward=forward),
    ).start(loop=False)
    try:
        assert topo.who(c1, SERVER, 80) == "portal"
        lan = ipc.call(cfg.gateway_socket, "status")["lan"]
        assert lan == {"ready": True, "interface": "br0", "address": f"{BOX}/24",
                       "forwarding": True}
    finally:
        svc.stop()

    late = Lan("wlan7", box, command=ip_cmd, ip_forward=forward)
    svc = GatewayService(cfg, topo.nft(), wall=clock, neighbours=topo.neighbours(),
                         lan=late).start(socket=False, loop=False)
    try:
        assert svc.lan_state["ready"] is False
        assert "wlan7 does not exist" in svc.lan_state["error"]
        subprocess.run([*ip_cmd, "link", "add", "wlan7", "type", "veth", "peer", "name",
                        "w7peer"], check=True)
        clock.t += 10
        svc.step()
        assert svc.lan_state["ready"] is False  # not retried before LAN_RETRY_SECONDS
        clock.t += 25
        svc.step()
        assert svc.lan_state["ready"] is True
        out = subprocess.run([*ip_cmd, "-4", "-o", "addr", "show", "dev", "wlan7"],
                             capture_output=True, text=True, check=True).stdout
        assert f" {BOX}/24 " in out
    finally:
        svc.stop()
