"""The ruleset in a real kernel: namespaces, a bridge, NAT, quotas cut by nftables.

Needs root (namespaces, nftables); skipped otherwise, failed under CI=true.
"""

from __future__ import annotations

import ipaddress

import pytest

from appliance.gateway import ruleset as rs
from tests.gateway.netns import (
    BOX,
    ISP_BOX,
    PANEL_PORT,
    PORTAL_PORT,
    SERVER,
    SERVER6,
    run,
)

pytestmark = pytest.mark.slow

# Largest frame on the LAN: 1500-byte IP packet + 14-byte Ethernet header.
FULL_FRAME = 1514
# The quota counts what the forward hook sees; with GRO that can be one aggregated
# packet of up to 64 KiB, dropped whole when it would cross the limit. So a client may
# get up to that much *less* than its quota, never more than one packet over it.
GRO_MAX = 65536


def _net() -> rs.Network:
    return rs.Network(
        lan="br0",
        wan="wan0",
        lan_address=ipaddress.IPv4Interface(f"{BOX}/24"),
        portal_port=PORTAL_PORT,
        lan_is_bridge=True,
    )


def test_topology_forwards_everything_before_the_ruleset(topo):
    """The baseline: without the table, every path the later tests close is open."""
    c1, c2 = topo.clients
    # Generous timeouts: the first packets wait for neighbour discovery on a fresh bridge.
    assert topo.who(c1, SERVER, 5001, idle=5) == "wan"
    assert topo.who(c1, SERVER6, 5001, idle=5) == "wan"
    assert topo.who(c1, ISP_BOX, 5001, idle=5) == "wan"
    assert topo.who(c1, BOX, PANEL_PORT, idle=5) == "panel"
    assert topo.who(c1, c2.ip, 5001, idle=5) == "client"
    assert topo.fetch(c1, SERVER, 5001, "peer", idle=5)["data"].strip() == c1.ip


def test_portal_authorize_spoof_isolation_and_ipv6(topo):
    c1, c2 = topo.clients
    nft = topo.nft()
    member = rs.Owner("member", 7)
    nft.apply(rs.full_ruleset(_net(), [rs.OwnerQuota(member, 10_000_000)], []))

    # Unauthorized: nothing through; HTTP anywhere lands on the portal.
    assert topo.who(c1, SERVER, 5001, idle=1) is None
    assert topo.who(c1, SERVER, 80) == "portal"
    assert topo.who(c1, BOX, PORTAL_PORT) == "portal"
    assert topo.who(c1, BOX, PANEL_PORT, idle=1) is None

    device = rs.Device.parse(c1.mac, c1.ip, member)
    nft.apply(rs.device_commands(device))
    assert topo.who(c1, SERVER, 5001) == "wan"
    assert topo.who(c1, SERVER, 80) == "wan"
    # Masqueraded: the WAN sees the gateway's address, not the client's.
    assert topo.fetch(c1, SERVER, 5001, "peer")["data"].strip() == "192.168.1.2"
    # Authorized, still not: the panel, the ISP box's network, another client, IPv6.
    assert topo.who(c1, BOX, PANEL_PORT, idle=1) is None
    assert topo.who(c1, ISP_BOX, 5001, idle=1) is None
    assert topo.who(c1, c2.ip, 5001, idle=1) is None
    assert topo.who(c1, SERVER6, 5001, idle=1) is None
    assert topo.who(c1, "fd00:42::1", PORTAL_PORT, idle=1) is None

    # Kicked (and authorized again): back to the portal on the next connection.
    nft.apply(rs.remove_device_commands(device))
    assert topo.who(c1, SERVER, 5001, idle=1) is None
    assert topo.who(c1, SERVER, 80) == "portal"
    nft.apply(rs.device_commands(device))
    assert topo.who(c1, SERVER, 5001) == "wan"

    # c2 copies c1's IP with its own MAC: no internet, the portal at most. (It does
    # poison the gateway's neighbour entry for c1: that is ARP, not a way around.)
    run("ip", "-n", c2.ns, "addr", "add", f"{c1.ip}/32", "dev", "eth0")
    assert topo.who(c2, SERVER, 5001, source=c1.ip, idle=1) is None
    assert topo.who(c2, SERVER, 80, source=c1.ip) == "portal"
    assert topo.who(c2, SERVER6, 5001, idle=1) is None


def test_quota_cut_by_the_kernel_within_one_packet(topo, record_property):
    c1, _ = topo.clients
    nft = topo.nft()
    guest = rs.Owner("guest", 1)
    quota = 200_000
    nft.apply(rs.full_ruleset(_net(), [rs.OwnerQuota(guest, quota)], []))
    nft.apply(rs.device_commands(rs.Device.parse(c1.mac, c1.ip, guest)))

    out = topo.fetch(c1, SERVER, 5001, str(2_000_000), idle=2)
    received = out["received"]
    overshoot = received - quota
    record_property("quota_overshoot_bytes", overshoot)
    print(f"quota {quota} B, client received {received} B, overshoot {overshoot} B")
    assert out["end"] == "timeout", "the download should stall at the quota, not finish"
    assert received <= quota + FULL_FRAME
    # Cut at the quota, not long before it (headers, ACKs and GRO aside).
    assert received >= quota - GRO_MAX
    reading = nft.read_quotas()[guest]
    assert reading.spent and reading.limit_bytes == quota
    # Spent means spent: a new connection gets nothing either.
    assert topo.who(c1, SERVER, 5001, idle=1) is None


def test_used_restored_extend_and_reset_in_the_kernel(topo):
    c1, _ = topo.clients
    nft = topo.nft()
    member = rs.Owner("member", 3)
    # As after a restart: 150 kB of a 200 kB quota already used today.
    nft.apply(rs.full_ruleset(_net(), [rs.OwnerQuota(member, 200_000, 150_000)], []))
    nft.apply(rs.device_commands(rs.Device.parse(c1.mac, c1.ip, member)))
    out = topo.fetch(c1, SERVER, 5001, str(500_000), idle=2)
    assert out["received"] <= 50_000 + FULL_FRAME
    assert out["received"] > 0

    # Extend in place: the kernel keeps its count, the limit moves.
    topo.end_server_connections(5001)  # no retransmission of the cut download after it
    before = nft.read_quotas()[member]
    nft.apply(rs.extend_commands(member, before.used_bytes + 100_000))
    after = nft.read_quotas()[member]
    assert after.used_bytes >= before.used_bytes and not after.spent
    out = topo.fetch(c1, SERVER, 5001, str(500_000), idle=2)
    assert 100_000 - GRO_MAX <= out["received"] <= 100_000 + FULL_FRAME

    # Reset (midnight): nft reports the bytes before the reset (capped at the limit by
    # the kernel's dump), then counts from zero.
    topo.end_server_connections(5001)
    reported = rs.parse_quotas(nft.apply(rs.reset_commands([member])))
    assert reported[member].used_bytes == after.limit_bytes
    assert nft.read_quotas()[member].used_bytes < 2_000
    assert topo.who(c1, SERVER, 5001) == "wan"


def test_throttle_policy_polices_to_256_kbit(topo):
    import time

    c1, _ = topo.clients
    nft = topo.nft()
    member = rs.Owner("member", 9)
    nft.apply(rs.full_ruleset(_net(), [rs.OwnerQuota(member, 100_000, policy="throttle")], []))
    nft.apply(rs.device_commands(rs.Device.parse(c1.mac, c1.ip, member)))
    t0 = time.monotonic()
    out = topo.fetch(c1, SERVER, 5001, str(400_000), idle=3)
    elapsed = time.monotonic() - t0
    assert out["end"] == "eof", "throttled, not blocked: the download completes"
    assert out["received"] == 400_000
    # About 300 kB (plus headers and ACKs, counted too) past the quota at 32,000 bytes/s
    # (256 kbit/s), less the bucket the limit starts with (a second's rate plus the
    # burst): 8-9.3 s measured. Neither a blocked line nor free, and not much faster:
    # the lower bound is 6.6 s; 384 kbit/s took 5.7 s, 300 kbit/s 6.5 s (both fail).
    rate, bucket = 32_000, 64_000
    assert (300_000 - bucket) / rate * 0.9 <= elapsed <= 300_000 / rate * 2, elapsed


def test_the_image_s_base_ruleset_is_closed_until_the_gateway_replaces_it(topo):
    """systemd/nftables.conf (the image's /etc/nftables.conf), loaded by the real nft:
    nothing is forwarded and the LAN reaches only DHCP and DNS on the box; the gateway's
    full ruleset then replaces it in one transaction (no base chain of it is left to
    drop what the gateway lets through), and loading it again closes the box again."""
    from pathlib import Path

    base = Path(__file__).resolve().parents[2] / "systemd" / "nftables.conf"
    sysctl = base.parent / "sysctl.d" / "60-telecentre.conf"
    assert "net.ipv4.ip_forward = 1" in sysctl.read_text().splitlines()
    c1, _ = topo.clients
    run("ip", "-n", topo.gw, "link", "set", "br0", "name", "br-lan")
    load = ("ip", "netns", "exec", topo.gw, "nft", "-f", str(base))
    run(*load)
    assert topo.who(c1, SERVER, 5001, idle=1) is None
    assert topo.who(c1, BOX, PANEL_PORT, idle=1) is None
    assert topo.who(c1, BOX, PORTAL_PORT, idle=1) is None
    net = rs.Network("br-lan", "wan0", ipaddress.IPv4Interface(f"{BOX}/24"), PORTAL_PORT,
                     lan_is_bridge=True)
    member = rs.Owner("member", 7)
    nft = topo.nft()
    nft.apply(rs.full_ruleset(net, [rs.OwnerQuota(member, 10**9)],
                              [rs.Device.parse(c1.mac, c1.ip, member)]))
    assert topo.who(c1, SERVER, 5001) == "wan"
    assert topo.who(c1, BOX, PORTAL_PORT) == "portal"
    # A restart of nftables.service: closed again (the device with it), never open.
    run(*load)
    assert topo.who(c1, SERVER, 5001, idle=1) is None
    assert topo.who(c1, BOX, PANEL_PORT, idle=1) is None
