"""The gateway's dry-run backend: nft JSON in memory, emulated devices and their traffic,
under the real gateway service (no kernel, no privilege)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from appliance import config as config_mod
from appliance import ipc, members
from appliance.cli import main as cli_main
from appliance.config import ConfigError
from appliance.gateway import dryrun
from appliance.gateway import ruleset as rs
from appliance.gateway.cli import emulate_request
from appliance.gateway.dryrun import PACKET, DryRun, DryRunNft
from appliance.runtime import init_state
from tests.conftest import write_site_config

NET = rs.Network("wlan0", "eth0", __import__("ipaddress").IPv4Interface("10.42.0.1/24"))
GUEST = rs.Owner("guest", 1)
PHONE = rs.Device.parse("02:aa:bb:cc:dd:01", "10.42.0.20", GUEST)


def _config(tmp_path: Path, *, backend: str = "dry-run", guest_mb: int = 2,
            member_mb: int = 20000, member_when: str = "throttle"):
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = write_site_config(tmp_path)
    text = path.read_text("utf-8")
    text = text.replace('backend = "kernel"', f'backend = "{backend}"')
    text = text.replace("daily_quota_mb = 1000\n", f"daily_quota_mb = {guest_mb}\n")
    text = text.replace("daily_quota_mb = 20000\n", f"daily_quota_mb = {member_mb}\n")
    text = text.replace('when_spent = "throttle"', f'when_spent = "{member_when}"')
    path.write_text(text, "utf-8")
    cfg = config_mod.load(path)
    init_state(cfg)
    return cfg


def _up(device: rs.Device) -> dict:
    return {"meta iifname": "wlan0", "meta oifname": "eth0", "meta nfproto": "ipv4",
            "payload ether saddr": device.mac, "payload ip saddr": str(device.ip),
            "payload ip daddr": dryrun.INTERNET, "payload tcp dport": 443}


def _down(device: rs.Device) -> dict:
    return {"meta iifname": "eth0", "meta oifname": "wlan0", "meta nfproto": "ipv4",
            "payload ip saddr": dryrun.INTERNET, "payload ip daddr": str(device.ip),
            "ct state": "established"}


# --- the runner -------------------------------------------------------------------------------


def test_runner_keeps_the_table_as_nft_json_and_applies_batches_whole():
    nft = DryRunNft()
    assert nft.list_table() is None and nft.read_quotas() == {}
    quota = rs.OwnerQuota(GUEST, 10 * PACKET, 3 * PACKET)
    nft.apply(rs.full_ruleset(NET, [quota], [PHONE]))
    listing = nft.list_table()
    kinds = {next(iter(x)) for x in listing}
    assert {"metainfo", "table", "chain", "set", "map", "quota", "rule"} <= kinds
    assert nft.read_quotas() == {GUEST: rs.QuotaReading(10 * PACKET, 3 * PACKET)}
    allowed = next(x["set"] for x in listing if x.get("set", {}).get("name") == "allowed4")
    assert allowed["elem"] == [{"concat": [PHONE.mac, "10.42.0.20"]}]
    # A batch that fails half-way (the second device's removal) changes nothing.
    other = rs.Device.parse("02:aa:bb:cc:dd:02", "10.42.0.21", GUEST)
    with pytest.raises(rs.NftError):
        nft.apply(rs.remove_device_commands(PHONE) + rs.remove_device_commands(other))
    assert nft.list_table() == listing
    # Re-adding an existing quota with `used` changes the limit, never the count.
    nft.apply([rs._add("quota", name=GUEST.quota, bytes=20 * PACKET, used=0, inv=True)])
    assert nft.read_quotas()[GUEST] == rs.QuotaReading(20 * PACKET, 3 * PACKET)
    # reset answers the values before and zeroes the count.
    before = nft.apply(rs.reset_commands([GUEST]))
    assert rs.parse_quotas(before)[GUEST].used_bytes == 3 * PACKET
    assert nft.read_quotas()[GUEST].used_bytes == 0
    nft.delete_tables()
    assert nft.list_table() is None


def test_packets_cross_only_when_authorized_and_the_quota_cuts_exactly():
    nft = DryRunNft()
    nft.apply(rs.full_ruleset(NET, [rs.OwnerQuota(GUEST, 10 * PACKET)], [PHONE]))
    stranger = rs.Device.parse("02:aa:bb:cc:dd:09", "10.42.0.20", GUEST)  # same IP, other MAC
    assert nft.forward(_up(stranger), 5) == 0
    assert nft.forward({**_up(PHONE), "payload ip daddr": "192.168.1.1"}, 5) == 0  # the box
    assert nft.forward({**_up(PHONE), "meta nfproto": "ipv6"}, 5) == 0
    assert nft.read_quotas()[GUEST].used_bytes == 0
    assert nft.forward(_up(PHONE), 4) == 4
    assert nft.forward({**_down(PHONE), "ct state": "new"}, 4) == 0  # not a reply: dropped
    # 4 + 5 packets pass: the 10th would take the count to the limit (the kernel's rule).
    assert nft.forward(_down(PHONE), 100) == 5
    assert nft.read_quotas()[GUEST] == rs.QuotaReading(10 * PACKET, 10 * PACKET)  # capped
    assert nft.forward(_down(PHONE), 10) == 0
    # An extension after the spend: reset and a fresh limit in one batch, then it flows.
    nft.apply(rs.reset_commands([GUEST]) + rs.extend_commands(GUEST, 3 * PACKET))
    assert nft.forward(_down(PHONE), 10) == 2
    nft.apply(rs.remove_device_commands(PHONE))
    assert nft.forward(_up(PHONE), 3) == 0


def test_throttle_policy_lets_256_kbit_through_once_spent():
    member = rs.Owner("member", 4)
    laptop = rs.Device.parse("02:aa:bb:cc:dd:04", "10.42.0.30", member)
    t = [100.0]
    nft = DryRunNft(clock=lambda: t[0])
    nft.apply(rs.full_ruleset(NET, [rs.OwnerQuota(member, 2 * PACKET, 2 * PACKET,
                                                  "throttle")], [laptop]))
    first = nft.forward(_down(laptop), 1000)  # the bucket starts full: a second's worth
    passed = 0
    for _ in range(10):
        t[0] += 1.0
        passed += nft.forward(_down(laptop), 1000)
    rate = 32_000  # 256 kbit/s
    assert first * PACKET <= 2 * rate + PACKET
    assert abs(passed * PACKET - 10 * rate) <= 2 * PACKET


def test_rules_of_any_shape_count_in_their_counters():
    """Per-device counters, a named counter, a jump: what a richer ruleset may add."""
    nft = DryRunNft()
    nft.apply(rs.full_ruleset(NET, [rs.OwnerQuota(GUEST, 10**9)], [PHONE]) + [
        rs._add("counter", name="c_wan"),
        rs._add("chain", name="count_dev"),
        {"insert": rs._base("rule", chain="from_lan", expr=[
            {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}},
                       "right": str(PHONE.ip)}},
            {"counter": None}, {"jump": {"target": "count_dev"}}])},
        rs._rule("count_dev", {"counter": "c_wan"}),
    ])
    assert nft.forward(_up(PHONE), 7) == 7
    listing = nft.list_table()
    named = next(x["counter"] for x in listing if "counter" in x)
    assert (named["packets"], named["bytes"]) == (7, 7 * PACKET)
    rule = next(x["rule"] for x in listing if x.get("rule", {}).get("chain") == "from_lan")
    assert {"counter": {"packets": 7, "bytes": 7 * PACKET}} in rule["expr"]


# --- the service on it ------------------------------------------------------------------------


def test_emulated_traffic_spends_a_guest_quota_which_then_blocks(tmp_path):
    cfg = _config(tmp_path, guest_mb=2)
    dry = DryRun(cfg).start(traffic=False)
    try:
        emu = dry.emulator
        assert emu.command({"action": "add", "role": "guest"})["ok"]
        assert emu.command({"action": "download", "name": "guest-1", "mb": 10})["ok"]
        for _ in range(6):  # 5 Mbit/s: 2 MB in about 3 s
            emu.tick(1.0)
        owner = dry.service.devices[emu.devices["guest-1"].mac].owner
        # The real shaper ran too, its tc commands kept by the dry-run runner.
        assert any("5000kbit" in c for c in dry.tc.commands)  # a leaf at the guests' 5 Mbit/s
        reading = dry.nft.read_quotas()[owner]
        assert reading.used_bytes == reading.limit_bytes == 2_000_000
        device = emu.devices["guest-1"]
        assert 2_000_000 - PACKET < device.bytes_down + device.bytes_up < 2_000_000
        info = dry.service.client_info(device.ip)
        assert info["spent"] and info["policy"] == "block"
        before = device.bytes_down
        emu.tick(1.0)
        assert device.bytes_down == before and device.stalled
        dry.service.persist()
        text = _metrics(dry)
        assert 'telecentre_wifi_quotas_exhausted{class="guest"} 1.0' in text
        assert 'telecentre_wifi_devices{class="guest"} 1.0' in text
        assert device.mac not in text and device.ip not in text
        # An admin's extension: the device gets through again, for exactly that much more.
        dry.service.extend(owner, 1_000_000)
        for _ in range(4):
            emu.tick(1.0)
        assert 3_000_000 - 2 * PACKET < device.bytes_down + device.bytes_up < 3_000_000
        assert dry.service.client_info(device.ip)["used_bytes"] == 3_000_000
    finally:
        dry.stop()


def test_usage_is_restored_with_used_after_a_restart(tmp_path):
    cfg = _config(tmp_path, guest_mb=50)
    dry = DryRun(cfg).start(traffic=False)
    emu = dry.emulator
    emu.add("guest")
    mac = emu.devices["guest-1"].mac
    emu.command({"action": "download", "name": "guest-1", "mb": 10})
    for _ in range(3):
        emu.tick(1.0)
    owner = dry.service.devices[mac].owner
    used = dry.nft.read_quotas()[owner].used_bytes
    assert used > 1_000_000
    dry.stop()  # saves the counts; the in-memory "kernel" is gone, as after a reboot

    again = DryRun(cfg).start(traffic=False)
    try:
        assert again.nft.read_quotas()[owner].used_bytes == used
        assert again.emulator.devices["guest-1"].mac == mac  # the device is still there
        again.emulator.tick(1.0)
        assert again.nft.read_quotas()[owner].used_bytes > used
    finally:
        again.stop()


def test_members_devices_share_one_quota_and_a_kick_cuts_traffic(tmp_path):
    cfg = _config(tmp_path)
    conn = __import__("appliance.db", fromlist=["db"]).open_db(cfg.db_path)
    members.add_member(conn, {"name": "Ana", "email": "ana@example.org"})
    conn.close()
    dry = DryRun(cfg).start(traffic=False)
    try:
        emu = dry.emulator
        emu.add("member", 2, owner="ana@example.org")
        owners = {dry.service.devices[d.mac].owner for d in emu.devices.values()
                  if d.role == "member"}
        assert owners == {rs.Owner("member", 1)}
        emu.tick(1.0)
        assert dry.nft.read_quotas()[rs.Owner("member", 1)].used_bytes > 0
        assert dry.service.kick(emu.devices["member-1"].mac)
        emu.tick(1.0)
        before = emu.devices["member-1"].bytes_down
        emu.tick(1.0)
        assert emu.devices["member-1"].bytes_down == before
        with pytest.raises(ValueError, match="no member"):
            emu.add("member", owner="nobody@example.org")
        # A device that leaves stops answering presence probes: its session ends "left".
        gone = emu.devices["member-2"].mac
        assert emu.command({"action": "remove", "name": "member-2"})["ok"]
        assert not emu.command({"action": "remove", "name": "browser"})["ok"]
        later = __import__("time").time() + cfg.gateway.absent_after_seconds + 1
        assert dry.service.check_presence(later) == [gone]
        row = dry.service.conn.execute(
            "SELECT end_reason, bytes_down FROM wifi_sessions WHERE mac = ?", (gone,)).fetchone()
        assert row["end_reason"] == "left" and row["bytes_down"] > 0
    finally:
        dry.stop()


def test_a_spent_member_quota_throttles_to_256_kbit(tmp_path):
    cfg = _config(tmp_path, member_mb=1, member_when="throttle")
    conn = __import__("appliance.db", fromlist=["db"]).open_db(cfg.db_path)
    members.add_member(conn, {"name": "Ana", "email": "ana@example.org"})
    conn.close()
    t = [0.0]
    dry = DryRun(cfg, clock=lambda: t[0]).start(traffic=False)
    try:
        emu = dry.emulator
        emu.add("member")
        emu.command({"action": "download", "name": "member-1", "mb": 100})
        for _ in range(3):  # 25 Mbit/s: 1 MB spent in the first second
            t[0] += 1.0
            emu.tick(1.0)
        assert dry.service.client_info(emu.devices["member-1"].ip)["spent"]
        device = emu.devices["member-1"]
        before = device.bytes_down + device.bytes_up
        for _ in range(10):
            t[0] += 1.0
            emu.tick(1.0)
        rate = (device.bytes_down + device.bytes_up - before) / 10
        assert 0.8 * 32_000 <= rate <= 1.1 * 32_000, rate  # 256 kbit/s, still online
        dry.service.persist()
        assert 'telecentre_wifi_quotas_exhausted{class="member"} 1.0' in _metrics(dry)
    finally:
        dry.stop()


def test_failures_are_logged_without_a_client_s_address(tmp_path, caplog):
    """tc's, nft's or a parser's message may carry a client's MAC or IP: the service
    logs the error's type (and, for the loop, where it failed), never that text."""
    import logging
    import time

    from appliance.gateway import shaping as sh

    cfg = _config(tmp_path)
    dry = DryRun(cfg).start(traffic=False)
    svc = dry.service
    try:
        svc.authorize(svc.guest_owner(PHONE.mac), PHONE.mac, str(PHONE.ip))
        leak = f"RTNETLINK answers: File exists (dst {PHONE.ip}, {PHONE.mac})"

        class FailingShaper:
            def setup(self, shapes):
                list(shapes)
                raise sh.TcError(leak)

            add = remove = setup

        def failing_step():
            raise ValueError(f"not a MAC address: {PHONE.mac!r} ({PHONE.ip})")

        svc.shaper = FailingShaper()
        with caplog.at_level(logging.ERROR, logger="appliance.gateway"):
            svc._shape_all()
            svc.step = failing_step  # the service's loop calls it every second
            deadline = time.monotonic() + 5
            while "loop step failed" not in caplog.text and time.monotonic() < deadline:
                time.sleep(0.1)
        assert "shaping not set up (TcError)" in caplog.text
        assert "gateway loop step failed (ValueError)" in caplog.text
        assert "failing_step" in caplog.text  # where: the traceback's frames stay
        assert PHONE.mac not in caplog.text and str(PHONE.ip) not in caplog.text
    finally:
        dry.stop()


def _metrics(dry: DryRun) -> str:
    import prometheus_client

    return prometheus_client.generate_latest(dry.service.registry).decode()


# --- selection, the socket command, refusal with the kernel -----------------------------------


def test_backend_is_chosen_by_config_and_validated(tmp_path):
    assert config_mod.load(write_site_config(tmp_path)).gateway.backend == "kernel"
    path = write_site_config(tmp_path)
    path.write_text(path.read_text("utf-8").replace('backend = "kernel"', 'backend = "fake"'))
    with pytest.raises(ConfigError, match="backend"):
        config_mod.load(path)
    kernel = _config(tmp_path / "k", backend="kernel")
    with pytest.raises(ValueError, match="dry-run"):
        DryRun(kernel)
    # The portal uses the socket's peer as it is with the kernel; in dry-run, a loopback
    # visitor is "this browser".
    assert dryrun.portal_peer(kernel, "127.0.0.1") == "127.0.0.1"
    dry = _config(tmp_path / "d")
    assert dryrun.portal_peer(dry, "127.0.0.1") == "10.42.0.10"
    assert dryrun.portal_peer(dry, "10.42.0.55") == "10.42.0.55"


def test_emulate_over_the_socket_and_refused_with_the_kernel(tmp_path, capsys):
    cfg = _config(tmp_path)
    dry = DryRun(cfg).start(traffic=False)
    try:
        assert cli_main(["--config", str(cfg.path), "gateway", "emulate", "add", "guest",
                         "2"]) == 0
        out = capsys.readouterr().out
        assert "guest-2" in out and "guest #2" in out and "browser" in out
        assert cli_main(["--config", str(cfg.path), "gateway", "emulate", "remove",
                         "guest-9"]) == 1
        assert "no emulated device" in capsys.readouterr().err
        reply = ipc.call(cfg.gateway_socket, "emulate", action="status")
        assert [d["name"] for d in reply["devices"]] == ["browser", "guest-1", "guest-2"]
    finally:
        dry.stop()
    kernel = _config(tmp_path / "k", backend="kernel")
    assert cli_main(["--config", str(kernel.path), "gateway", "emulate", "status"]) == 2
    assert 'backend = "kernel"' in capsys.readouterr().err


def test_emulate_arguments():
    assert emulate_request("add", ["voucher", "3"]) == {"action": "add", "role": "voucher",
                                                        "count": 3}
    assert emulate_request("login", ["browser", "member"], "M0001") == {
        "action": "login", "name": "browser", "kind": "member", "owner": "M0001"}
    assert emulate_request("rate", ["guest-1", "2", "0.5"])["up_mbit"] == 0.5
    for action, args in (("download", ["guest-1"]), ("rate", ["g", "x", "1"]),
                         ("add", ["guest", "two"]), ("status", ["x"])):
        with pytest.raises(ValueError):
            emulate_request(action, args)
    with pytest.raises(ValueError, match="--as"):
        emulate_request("download", ["guest-1", "5"], "M0001")
    assert sys.modules["appliance.gateway.dryrun"] is dryrun


# --- per-device counters and priorities through maps; sessions ended in one read ---------------


def test_device_counters_and_priority_are_reached_through_their_chains():
    """The ruleset's per-device chains (`counter name ...`, `meta priority set ...`),
    reached through the `up4`/`down4` verdict maps and evaluated generically: each
    device's bytes land in its own counters, its packets carry its htb class, and a
    packet with no element in the map is dropped with nothing counted or set."""
    laptop = rs.Device.parse("02:aa:bb:cc:dd:02", "10.42.0.21", GUEST)
    nft = DryRunNft()
    nft.apply(rs.full_ruleset(NET, [rs.OwnerQuota(GUEST, 10**9)], [PHONE, laptop]) + [
        # A later base chain sees the priority an earlier one set (skb->priority).
        rs._add("counter", name="c_prio"),
        rs._base_chain("later", "filter", "forward", 10),
        rs._rule("later", rs._match(rs._meta("priority"), rs.class_id(PHONE.ip)),
                 {"counter": "c_prio"}),
    ])
    assert nft.forward(_up(PHONE), 3) == 3
    assert nft.last_set == {"meta priority": rs.class_id(PHONE.ip)} == {"meta priority": "1:1014"}
    assert nft.forward(_down(PHONE), 5) == 5
    assert nft.last_set == {"meta priority": "1:1014"}
    _quotas, counts = rs.read_counts(nft)
    assert counts == {PHONE.mac: rs.DeviceBytes(3 * PACKET, 5 * PACKET),
                      laptop.mac: rs.DeviceBytes(0, 0)}
    c_prio = next(x["counter"] for x in nft.list_table()
                  if x.get("counter", {}).get("name") == "c_prio")
    assert (c_prio["packets"], c_prio["bytes"]) == (8, 8 * PACKET)
    # Another MAC with the laptop's IP: up4 is keyed on MAC and IP, so nothing is
    # counted nor set; then dropped.
    stranger = rs.Device.parse("02:aa:bb:cc:dd:09", "10.42.0.21", GUEST)
    assert nft.forward(_up(stranger), 4) == 0
    assert nft.last_set == {}
    assert rs.read_counts(nft)[1][laptop.mac] == rs.DeviceBytes(0, 0)
    unknown = rs.Device.parse("02:aa:bb:cc:dd:0a", "10.42.0.99", GUEST)
    assert nft.forward(_up(unknown), 4) == 0
    assert nft.last_set == {}  # no element in up4: dropped, nothing set
    assert nft.forward(_up(laptop), 2) == 2 and nft.last_set == {"meta priority": "1:1015"}
    assert rs.read_counts(nft)[1][laptop.mac] == rs.DeviceBytes(2 * PACKET, 0)
    # A device gone: its elements, chains and counters with it.
    nft.apply(rs.remove_device_commands(PHONE))
    assert PHONE.mac not in rs.read_counts(nft)[1]


def _counting_lists(nft: DryRunNft) -> list[int]:
    calls = [0]
    real = nft.list_table

    def list_table(*args, **kw):
        calls[0] += 1
        return real(*args, **kw)

    nft.list_table = list_table  # type: ignore[method-assign]
    return calls


def test_status_and_the_legal_log_have_each_device_s_bytes_and_rate(tmp_path):
    cfg = _config(tmp_path, guest_mb=500)
    dry = DryRun(cfg).start(traffic=False)
    try:
        emu = dry.emulator
        emu.add("guest", 2)
        emu.command({"action": "download", "name": "guest-1", "mb": 20})
        emu.tick(1.0)
        dry.service.cmd_status({})  # a first sample for the rates
        __import__("time").sleep(1.1)  # rates need two reads a second apart
        emu.tick(1.0)
        devices = {d["mac"]: d for d in dry.service.cmd_status({})["devices"]}
        for name in ("guest-1", "guest-2"):
            d = emu.devices[name]
            seen = devices[d.mac]
            # The kernel's (here the emulator's) counters, exactly what crossed.
            assert (seen["bytes_up"], seen["bytes_down"]) == (d.bytes_up, d.bytes_down)
            assert seen["bytes_down"] > 0 and seen["rate_down_bps"] > 0
        assert devices[emu.devices["guest-1"].mac]["rate_down_bps"] > devices[
            emu.devices["guest-2"].mac]["rate_down_bps"]  # the one downloading
        dry.service.persist()
        rows = {r["mac"]: r for r in dry.service.conn.execute(
            "SELECT mac, bytes_up, bytes_down FROM wifi_sessions WHERE ended_at IS NULL")}
        for d in (emu.devices["guest-1"], emu.devices["guest-2"]):
            assert (rows[d.mac]["bytes_up"], rows[d.mac]["bytes_down"]) == (d.bytes_up,
                                                                             d.bytes_down)
    finally:
        dry.stop()


def test_a_round_ending_many_sessions_reads_the_counters_once(tmp_path):
    cfg = _config(tmp_path, guest_mb=500)
    dry = DryRun(cfg).start(traffic=False)
    try:
        emu, svc = dry.emulator, dry.service
        emu.add("guest", 4)
        emu.add("voucher", 2)
        emu.tick(1.0)
        emu.tick(1.0)
        lists = _counting_lists(dry.nft)
        # Four devices leave the Wi-Fi: one presence round ends their sessions.
        leaving = [emu.devices[f"guest-{i}"] for i in range(1, 5)]
        sent = {d.mac: (d.bytes_up, d.bytes_down) for d in leaving}
        for d in leaving:
            emu.remove(d.name)
        later = __import__("time").time() + cfg.gateway.absent_after_seconds + 1
        assert sorted(svc.check_presence(later)) == sorted(sent)
        assert lists[0] == 1  # one `nft list` for the round, not one per device
        rows = {r["mac"]: r for r in svc.conn.execute(
            "SELECT mac, end_reason, bytes_up, bytes_down FROM wifi_sessions")}
        for mac, (up, down) in sent.items():
            assert rows[mac]["end_reason"] == "left"
            assert (rows[mac]["bytes_up"], rows[mac]["bytes_down"]) == (up, down) != (0, 0)
        # Two vouchers expire at once (another round): one read again.
        vouchers = [d for d in emu.devices.values() if d.role == "voucher"]
        owners = {svc.devices[d.mac].owner.id for d in vouchers}
        svc.conn.execute(f"UPDATE vouchers SET valid_until = 1 WHERE id IN "  # noqa: S608
                         f"({','.join('?' * len(owners))})", sorted(owners))
        lists[0] = 0
        assert sorted(svc.expire_vouchers()) == sorted(d.mac for d in vouchers)
        assert lists[0] == 1
        assert {r["end_reason"] for r in svc.conn.execute(
            "SELECT end_reason FROM wifi_sessions WHERE mac IN (?, ?)",
            [d.mac for d in vouchers])} == {"expired"}
        # A single kick still reads its own device's last bytes, once.
        (late,) = emu.add("guest")
        emu.tick(1.0)
        lists[0] = 0
        assert svc.kick(late.mac) and lists[0] == 1
        row = svc.conn.execute("SELECT bytes_down FROM wifi_sessions WHERE mac = ?",
                               (late.mac,)).fetchone()
        assert row["bytes_down"] == late.bytes_down > 0
    finally:
        dry.stop()
