"""A device's life on the real kernel: it leaves (ARP probes stop being answered) and its
session ends "left"; a voucher expires and its devices go; the IP→MAC pin stops a client
that copies an IP from reaching the box at all."""

from __future__ import annotations

import ipaddress
import json
import socket
import sqlite3

import pytest

from appliance.gateway import ruleset as rs
from appliance.gateway.neighbours import NeighbourLookup
from appliance.gateway.presence import ArpProber, LeaseFile
from appliance.gateway.service import SPENT_CHECK_SECONDS, GatewayService
from tests.gateway.netns import BOX, SERVER, run, socket_in_netns
from tests.gateway.test_service import NOON, Clock, cfg  # noqa: F401 (the fixture)

pytestmark = pytest.mark.slow

LAN = ipaddress.IPv4Network("10.42.0.0/24")


def _service(topo, cfg, clock, tmp_path, *, prober=None):  # noqa: F811
    lookup = NeighbourLookup("br0", LAN, command=("ip", "-n", topo.gw))
    return GatewayService(
        cfg, topo.nft(), wall=clock, neighbours=lookup, prober=prober,
        leases=LeaseFile(tmp_path / "dnsmasq.leases"),
    ).start(socket=False, loop=False)


def _neigh(topo, ip: str) -> dict:
    out = run("ip", "-n", topo.gw, "-j", "neigh", "show", "to", ip, "dev", "br0").stdout
    entries = json.loads(out) if out.strip() else []
    return entries[0] if entries else {}


def _session(cfg, mac: str) -> sqlite3.Row:  # noqa: F811
    conn = sqlite3.connect(cfg.db_path)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(
            "SELECT * FROM wifi_sessions WHERE mac = ? ORDER BY id DESC LIMIT 1", (mac,)
        ).fetchone()
    finally:
        conn.close()


def _add_client(topo, name: str, mac: str, ip: str) -> str:
    """One more client namespace on the LAN bridge (removed with the topology)."""
    ns = topo._netns(f"{topo.prefix}{name}")
    run("ip", "-n", topo.gw, "link", "add", f"p{name}", "type", "veth", "peer", "name",
        "eth0", "netns", ns)
    run("ip", "-n", topo.gw, "link", "set", f"p{name}", "master", "br0", "up")
    run("ip", "-n", ns, "link", "set", "eth0", "address", mac, "up")
    run("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
    run("ip", "-n", ns, "route", "add", "default", "via", BOX)
    return ns


def test_a_device_that_left_has_its_session_ended_and_its_ip_freed(topo, cfg, tmp_path):  # noqa: F811
    c1, c2 = topo.clients
    clock = Clock(NOON)
    prober = ArpProber("br0", ipaddress.IPv4Address(BOX), timeout=1.0,
                       socket_factory=socket_in_netns(topo.gw))
    svc = _service(topo, cfg, clock, tmp_path, prober=prober)
    try:
        svc.authorize(svc.guest_owner(c1.mac), c1.mac, c1.ip)
        svc.authorize(rs.Owner("member", 3), c2.mac, c2.ip)
        assert topo.who(c2, SERVER, 5001) == "wan"
        assert svc.check_presence() == []  # both answer
        assert svc.last_seen == {c1.mac: NOON, c2.mac: NOON}

        # c2 walks out: its link is gone, its ARP probes go unanswered.
        run("ip", "-n", topo.gw, "link", "del", "p2")
        clock.t = NOON + 300
        assert svc.check_presence() == []  # silent, but not for long enough yet
        assert svc.last_seen[c1.mac] == NOON + 300 and svc.last_seen[c2.mac] == NOON
        clock.t = NOON + cfg.gateway.absent_after_seconds + 1
        assert svc.check_presence() == [c2.mac]
        assert set(svc.devices) == {c1.mac}
        row = _session(cfg, c2.mac)
        # Ended when it last answered (the legal log's end), not when found missing.
        assert (row["end_reason"], row["ended_at"]) == ("left", NOON)
        assert _session(cfg, c1.mac)["ended_at"] is None  # the present one stays
        assert topo.who(c1, SERVER, 5001) == "wan"
        assert svc.metrics.sessions_ended.labels("left")._value.get() == 1
        assert _neigh(topo, c2.ip).get("lladdr") != c2.mac or "PERMANENT" not in _neigh(
            topo, c2.ip).get("state", [])

        # The next device handed c2's IP is a stranger: the portal, not c2's session.
        ns = _add_client(topo, "n", "02:00:00:00:00:7e", c2.ip)
        newcomer = type(c2)(ns, "02:00:00:00:00:7e", c2.ip, "")
        assert topo.who(newcomer, SERVER, 5001) is None
        assert topo.who(newcomer, SERVER, 80) == "portal"

        # A probe that cannot run calls nobody absent, however long it lasts.
        def broken(_lan: str) -> socket.socket:
            raise OSError(19, "No such device")

        svc.prober = ArpProber("br0", ipaddress.IPv4Address(BOX), socket_factory=broken)
        clock.t += 10 * cfg.gateway.absent_after_seconds
        assert svc.check_presence() == [] and set(svc.devices) == {c1.mac}
        assert svc.metrics.probe_errors._value.get() == 1
    finally:
        svc.stop()


def test_a_device_whose_ip_dnsmasq_leased_to_another_has_left(topo, cfg, tmp_path):  # noqa: F811
    c1, c2 = topo.clients
    clock = Clock(NOON)
    prober = ArpProber("br0", ipaddress.IPv4Address(BOX), timeout=0.5,
                       socket_factory=socket_in_netns(topo.gw))
    svc = _service(topo, cfg, clock, tmp_path, prober=prober)
    try:
        svc.authorize(svc.guest_owner(c1.mac), c1.mac, c1.ip)
        run("ip", "-n", topo.gw, "link", "del", "p1")  # gone, and its IP leased again:
        (tmp_path / "dnsmasq.leases").write_text(
            f"{int(NOON) + 3600} 02:00:00:00:00:55 {c1.ip} phone;$(reboot) *\n"
            f"0 {c2.mac} {c2.ip} * 01:{c2.mac}\n"
        )
        assert svc.check_presence() == [c1.mac]  # no need to wait the absence out
        assert _session(cfg, c1.mac)["end_reason"] == "left"
        assert svc.metrics.leases._value.get() == 2
    finally:
        svc.stop()


def test_an_expired_voucher_disconnects_its_devices(topo, cfg, tmp_path):  # noqa: F811
    c1, _ = topo.clients
    clock = Clock(NOON)
    svc = _service(topo, cfg, clock, tmp_path)
    try:
        _, valid_until, [(vid, _code)] = svc.create_vouchers(
            count=1, quota_mb=5, max_devices=2, valid_days=1, batch="", created_by=None)
        assert valid_until == NOON + 86400
        svc.authorize(rs.Owner("voucher", vid), c1.mac, c1.ip)
        assert topo.who(c1, SERVER, 5001) == "wan"
        clock.t = valid_until - 1
        svc.step()  # the service's loop turn
        assert c1.mac in svc.devices and topo.who(c1, SERVER, 5001) == "wan"
        clock.t = valid_until
        svc.step()
        assert c1.mac not in svc.devices
        row = _session(cfg, c1.mac)
        assert (row["end_reason"], row["ended_at"]) == ("expired", valid_until)
        assert topo.who(c1, SERVER, 5001) is None
        assert topo.who(c1, SERVER, 80) == "portal"
        with pytest.raises(ValueError, match="expired"):
            svc.authorize(rs.Owner("voucher", vid), c1.mac, c1.ip)
        assert svc.metrics.sessions_ended.labels("expired")._value.get() == 1
    finally:
        svc.stop()


def test_a_copied_ip_cannot_take_over_the_box_s_arp_entry(topo, cfg, tmp_path):  # noqa: F811
    victim, attacker = topo.clients
    svc = _service(topo, cfg, Clock(NOON), tmp_path)
    try:
        svc.authorize(rs.Owner("member", 9), victim.mac, victim.ip)
        entry = _neigh(topo, victim.ip)
        assert entry["lladdr"] == victim.mac and "PERMANENT" in entry["state"]

        # The attacker takes the victim's IP and talks to the box (its ARP requests would
        # point the box's entry at itself): it cannot even reach the portal to log in.
        run("ip", "-n", attacker.ns, "addr", "flush", "dev", "eth0")
        run("ip", "-n", attacker.ns, "addr", "add", f"{victim.ip}/24", "dev", "eth0")
        run("ip", "-n", attacker.ns, "route", "replace", "default", "via", BOX)
        thief = type(attacker)(attacker.ns, attacker.mac, victim.ip, "")
        assert topo.who(thief, SERVER, 80) is None
        assert topo.who(thief, SERVER, 5001) is None
        entry = _neigh(topo, victim.ip)
        assert entry["lladdr"] == victim.mac and "PERMANENT" in entry["state"]
        assert topo.who(victim, SERVER, 5001) == "wan"  # the victim is untouched

        # Control (this test can fail): without the pin, the same attacker reaches the
        # portal, from where a login would have replaced the victim's binding.
        assert svc.kick(victim.mac)
        assert "PERMANENT" not in _neigh(topo, victim.ip).get("state", [])
        run("ip", "-n", victim.ns, "addr", "flush", "dev", "eth0")  # no ARP race
        assert topo.who(thief, SERVER, 80) == "portal"
        assert _neigh(topo, victim.ip)["lladdr"] == attacker.mac
    finally:
        svc.stop()


def test_a_blocked_owner_s_http_meets_the_quota_reached_page(topo, cfg, tmp_path):  # noqa: F811
    c1, c2 = topo.clients
    svc = _service(topo, cfg, Clock(NOON), tmp_path)
    try:
        owner = svc.guest_owner(c1.mac)  # guests: 1 MB a day, "block" (the fixture)
        svc.authorize(owner, c1.mac, c1.ip)
        svc.authorize(rs.Owner("member", 4), c2.mac, c2.ip)
        assert topo.who(c1, SERVER, 80) == "wan"
        got = topo.fetch(c1, SERVER, 5001, "3000000", idle=2)["received"]
        assert got <= 1_000_000 + 1514
        # Spent in the kernel, not yet read by the service: HTTP is simply dropped.
        assert topo.who(c1, SERVER, 80, idle=1) is None
        # The loop's quick read (every SPENT_CHECK_SECONDS), not the minute's save.
        saved = svc.last_persist
        clock = svc.wall
        clock.t += SPENT_CHECK_SECONDS
        svc._last_probe = svc._last_purge = clock.t  # this turn: only the spent check
        svc.last_persist = clock.t
        svc.step()
        assert svc.ledgers[owner].spent and set(svc.spent_marked) == {c1.mac}
        svc.last_persist = saved
        # Now any web address leads to the portal (which shows /quota); nothing else passes.
        assert topo.who(c1, SERVER, 80) == "portal"
        assert topo.who(c1, "203.0.113.9", 80) == "portal"
        assert topo.who(c1, SERVER, 5001, idle=1) is None
        assert topo.who(c2, SERVER, 80) == "wan"  # another owner is untouched
        # Extended: the web is back, the redirect gone.
        svc.extend(owner, 500_000)
        assert svc.spent_marked == {}
        assert topo.who(c1, SERVER, 80) == "wan"
        # Spent again, then kicked: the mark goes with the device.
        topo.fetch(c1, SERVER, 5001, "3000000", idle=2)
        svc.persist()
        assert set(svc.spent_marked) == {c1.mac}
        svc.kick(c1.mac)
        assert svc.spent_marked == {}
        assert topo.who(c1, SERVER, 80) == "portal"  # the unauthorized redirect, as before
        assert topo.who(c1, SERVER, 5001, idle=1) is None
    finally:
        svc.stop()
