"""The ruleset's JSON, checked without a kernel: names, bindings, validation."""

from __future__ import annotations

import ipaddress
import json

import pytest

from appliance.gateway import ruleset as rs

NET = rs.Network("br-lan", "eth0", ipaddress.IPv4Interface("10.42.0.1/24"), lan_is_bridge=True)
M = rs.Owner("member", 12)
G = rs.Owner("guest", 3)


def _objects(cmds, kind):
    return [c[verb][kind] for c in cmds for verb in c if kind in c[verb]]


def test_owner_names_are_built_from_numbers_only():
    assert (M.chain, M.quota, M.limit) == ("o_m12", "q_m12", "l_m12")
    assert rs.Owner("voucher", 7).tag == "v7"
    assert rs.Owner.from_tag("g3") == G
    for bad in ("x3", "m", "m1a", "", "m-1"):
        assert rs.Owner.from_tag(bad) is None
    for kind, id_ in (
        ("admin", 1),
        ("member", 0),
        ("member", -1),
        ("member", "1"),
        ("guest", True),
    ):
        with pytest.raises(ValueError):
            rs.Owner(kind, id_)


@pytest.mark.parametrize(
    "mac",
    ["aa:bb:cc:dd:ee", "zz:bb:cc:dd:ee:ff", '"; flush ruleset', "01:00:5e:00:00:01", 5, ""],
)
def test_bad_macs_are_refused(mac):
    with pytest.raises(ValueError):
        rs.normalize_mac(mac)


def test_mac_forms_normalized():
    assert rs.normalize_mac(" AA-BB-CC-DD-EE-02 ") == "aa:bb:cc:dd:ee:02"


@pytest.mark.parametrize("ip", ["fd00::1", "10.0.0.0/24", "10.0.0.1; drop", "", "256.1.1.1"])
def test_bad_ips_are_refused(ip):
    with pytest.raises(ValueError):
        rs.parse_ipv4(ip)


@pytest.mark.parametrize("name", ["eth0; nft flush", "", "a" * 16, "wl an0", 'x"'])
def test_bad_interface_names_are_refused(name):
    with pytest.raises(ValueError):
        rs.Network(name, "eth0", ipaddress.IPv4Interface("10.42.0.1/24"))


def test_full_ruleset_replaces_the_table_atomically_and_binds_mac_and_ip():
    d = rs.Device.parse("aa:bb:cc:dd:ee:01", "10.42.0.10", M)
    cmds = rs.full_ruleset(NET, [rs.OwnerQuota(M, 1000, 10, "throttle")], [d])
    table = {"family": "inet", "name": "telecentre"}
    assert cmds[:3] == [
        {"add": {"table": table}},
        {"delete": {"table": table}},
        {"add": {"table": table}},
    ]
    quota = _objects(cmds, "quota")
    assert quota[0] == {
        "family": "inet",
        "table": "telecentre",
        "name": "q_m12",
        "bytes": 1000,
        "used": 10,
        "inv": True,
    }
    limit = _objects(cmds, "limit")[0]
    # 256 kbit/s exactly: 32,000 bytes a second (nft's "kbytes" are KiB: 262 kbit/s).
    assert (limit["rate"], limit["rate_unit"], limit["per"], limit["inv"]) == (
        32_000, "bytes", "second", True)
    assert (limit["burst"], limit["burst_unit"]) == (32_000, "bytes")
    elements = {e["name"]: e["elem"] for e in _objects(cmds, "element")}
    assert elements["allowed4"] == [{"concat": ["aa:bb:cc:dd:ee:01", "10.42.0.10"]}]
    assert elements["up4"] == [
        [{"concat": ["aa:bb:cc:dd:ee:01", "10.42.0.10"]}, {"goto": {"target": "du_aabbccddee01"}}]
    ]
    assert elements["down4"] == [["10.42.0.10", {"goto": {"target": "dd_aabbccddee01"}}]]
    # Both of the device's chains end in its owner's chain.
    device_rules = {r["chain"]: r["expr"] for r in _objects(cmds, "rule")
                    if r["chain"].startswith("d")}
    assert {c: e[-1] for c, e in device_rules.items()} == {
        "du_aabbccddee01": {"goto": {"target": "o_m12"}},
        "dd_aabbccddee01": {"goto": {"target": "o_m12"}},
    }
    # Chains that are jumped to (by a rule or a map element) exist before.
    seen = set()
    for c in cmds:
        obj = c.get("add", {})
        if "chain" in obj:
            seen.add(obj["chain"]["name"])
        targets = [e[k]["target"] for e in obj.get("rule", {}).get("expr", [])
                   for k in ("jump", "goto") if k in e]
        targets += [v[k]["target"] for _, v in obj.get("element", {}).get("elem", [])
                    if isinstance(v, dict) for k in ("jump", "goto") if k in v] if (
            obj.get("element", {}).get("name") in ("up4", "down4")) else []
        for target in targets:
            assert target in seen
    # The bridge table is there when the LAN is a bridge.
    assert {"add": {"table": {"family": "bridge", "name": "telecentre"}}} in cmds


def test_block_policy_has_no_limit_and_the_owner_chain_drops_when_spent():
    cmds = rs.owner_commands(rs.OwnerQuota(G, 500))
    assert _objects(cmds, "limit") == []
    rules = [r["expr"] for r in _objects(cmds, "rule")]
    assert rules == [[{"quota": "q_g3"}, {"drop": None}], [{"accept": None}]]


def test_unauthorized_rules_and_ipv6_drops_present():
    rules = _objects(rs.table_commands(NET), "rule")
    by_chain: dict[str, list] = {}
    for r in rules:
        by_chain.setdefault(r["chain"], []).append(r["expr"])
    ipv6_drop = [
        {"match": {"op": "==", "left": {"meta": {"key": "nfproto"}}, "right": "ipv6"}},
        {"drop": None},
    ]
    for chain in ("from_lan", "to_lan", "lan_to_box"):
        assert by_chain[chain][0] == ipv6_drop
        assert by_chain[chain][-1] == [{"drop": None}]
    redirects = [e for r in by_chain["prerouting"] for e in r if "redirect" in e]
    assert {"redirect": {"port": 8088}} in redirects
    assert any("masquerade" in e for r in by_chain["postrouting"] for e in r)


def test_https_to_the_box_alone_goes_to_the_portal_s_tls_port():
    def rules(net):
        return [r["expr"] for r in _objects(rs.table_commands(net), "rule")]

    def mentions_443(expr):
        return any(e.get("match", {}).get("right") == 443 for e in expr)

    assert not any(mentions_443(e) for e in rules(NET))  # plain http: 443 untouched
    assert "8443" not in json.dumps(rules(NET))
    tls = rs.Network("br-lan", "eth0", ipaddress.IPv4Interface("10.42.0.1/24"),
                     portal_tls_port=8443)
    https = [e for e in rules(tls) if mentions_443(e)]
    assert https == [[
        {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "br-lan"}},
        {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                   "right": "10.42.0.1"}},
        {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}},
                   "right": 443}},
        {"redirect": {"port": 8443}},
    ]]  # never an unauthorized device's 443 to another site
    to_box = [r["expr"] for r in _objects(rs.table_commands(tls), "rule")
              if r["chain"] == "lan_to_box"]
    assert any({"set": [53, 8088, 8443]} == e.get("match", {}).get("right") for r in to_box
               for e in r)
    with pytest.raises(ValueError):
        rs.Network("br-lan", "eth0", ipaddress.IPv4Interface("10.42.0.1/24"),
                   portal_tls_port=70000)


def test_user_text_never_reaches_a_name():
    """Whatever a device sends, only validated MAC/IP values reach the JSON, as values."""
    with pytest.raises(ValueError):
        rs.Device.parse('aa:bb:cc:dd:ee:01"; flush ruleset', "10.42.0.10", M)
    d = rs.Device.parse("aa:bb:cc:dd:ee:01", "10.42.0.10", M)
    names = {
        obj[kind].get("name")
        for c in rs.device_commands(d) + rs.owner_commands(rs.OwnerQuota(M, 1))
        for obj in c.values()
        for kind in obj
    }
    assert names == {"allowed4", "up4", "down4", "cu_aabbccddee01", "cd_aabbccddee01",
                     "du_aabbccddee01", "dd_aabbccddee01", "q_m12", "o_m12", None}


def test_priority_names_the_client_s_htb_leaf_both_ways():
    """The class id is the address's low 12 bits, the same number shaping.py uses."""
    ip = ipaddress.IPv4Address("10.42.0.11")
    assert rs.client_id(ip) == 11 and rs.class_id(ip) == "1:100b"
    assert rs.class_id(ipaddress.IPv4Address("10.42.7.254")) == "1:17fe"  # in a /20
    with pytest.raises(ValueError):
        rs.client_id(ipaddress.IPv4Address("10.42.16.0"))
    with pytest.raises(ValueError):  # bigger than a /20: two clients could share an id
        rs.Network("br-lan", "eth0", ipaddress.IPv4Interface("10.42.0.1/19"))
    d = rs.Device.parse("aa:bb:cc:dd:ee:01", "10.42.0.11", M)
    rules = {r["chain"]: r["expr"] for r in _objects(rs.device_commands(d), "rule")}
    prio = {"mangle": {"key": {"meta": {"key": "priority"}}, "value": "1:100b"}}
    # Both ways: counted, then the leaf set, then the owner's chain (a goto).
    assert rules == {
        "du_aabbccddee01": [{"counter": "cu_aabbccddee01"}, prio, {"goto": {"target": "o_m12"}}],
        "dd_aabbccddee01": [{"counter": "cd_aabbccddee01"}, prio, {"goto": {"target": "o_m12"}}],
    }


def test_one_map_lookup_per_packet_and_direction():
    """The forward path looks up one verdict map per packet (the device's chain holds its
    counter, class and owner); the box's networks only when a connection is not established."""
    rules: dict[str, list] = {}
    for r in _objects(rs.table_commands(NET), "rule"):
        rules.setdefault(r["chain"], []).append(r["expr"])
    for chain, vmap in (("from_lan", "@up4"), ("to_lan", "@down4")):
        lookups = [e for rule in rules[chain] for e in rule
                   if "@" in json.dumps(e) and "@blocked4" not in json.dumps(e)]
        assert lookups == [{"vmap": {"key": lookups[0]["vmap"]["key"], "data": vmap}}]
    (blocked,) = [r for r in rules["from_lan"] if "@blocked4" in json.dumps(r)]
    assert blocked[0] == {"match": {"op": "!=", "left": {"ct": {"key": "state"}},
                                    "right": "established"}}
    assert blocked[-1] == {"drop": None}


def test_device_counters_start_at_the_session_bytes_and_go_with_the_device():
    d = rs.Device.parse("AA-BB-CC-DD-EE-01", "10.42.0.10", M)
    cmds = rs.device_commands(d, rs.DeviceBytes(up=1_234, down=56_789))
    counters = {c["name"]: c for c in _objects(cmds, "counter")}
    assert counters == {
        "cu_aabbccddee01": {"family": "inet", "table": "telecentre", "name": "cu_aabbccddee01",
                            "packets": 0, "bytes": 1_234},
        "cd_aabbccddee01": {"family": "inet", "table": "telecentre", "name": "cd_aabbccddee01",
                            "packets": 0, "bytes": 56_789},
    }
    # Counters are created before the rules that name them, and a new device's start at 0.
    kinds = [next(iter(c["add"])) for c in cmds]
    assert kinds.index("counter") < kinds.index("rule") < kinds.index("element")
    fresh = {c["name"]: c["bytes"] for c in _objects(rs.device_commands(d), "counter")}
    assert fresh == {"cu_aabbccddee01": 0, "cd_aabbccddee01": 0}
    # Removal: the map elements first (a chain a map still names cannot go), then the
    # chains emptied and deleted (a counter a rule still names cannot go), then counters.
    removed = [(verb, kind, spec["name"]) for c in rs.remove_device_commands(d)
               for verb, obj in c.items() for kind, spec in obj.items()]
    assert removed == [
        ("delete", "element", "allowed4"), ("delete", "element", "up4"),
        ("delete", "element", "down4"),
        ("flush", "chain", "du_aabbccddee01"), ("flush", "chain", "dd_aabbccddee01"),
        ("delete", "chain", "du_aabbccddee01"), ("delete", "chain", "dd_aabbccddee01"),
        ("delete", "counter", "cu_aabbccddee01"), ("delete", "counter", "cd_aabbccddee01"),
    ]
    with pytest.raises(ValueError):
        rs.DeviceBytes(up=-1)


def test_devices_are_counted_before_their_owner_s_quota():
    """The device's counter comes first in its chain, so a packet that the owner's spent
    quota then drops is counted too, as the quota counts it."""
    d = rs.Device.parse("aa:bb:cc:dd:ee:01", "10.42.0.10", M)
    for r in _objects(rs.device_commands(d), "rule"):
        assert "counter" in r["expr"][0] and r["expr"][-1] == {"goto": {"target": "o_m12"}}


def test_parse_device_bytes_ignores_foreign_objects():
    def counter(name, n, table="telecentre"):
        return {"counter": {"family": "inet", "table": table, "name": name, "packets": 1,
                            "bytes": n}}

    listing = [
        {"metainfo": {}},
        counter("cu_aabbccddee01", 10),
        counter("cd_aabbccddee01", 2_000),
        counter("cd_020000000002", 5),
        counter("cu_aabbccddee03", 7, table="other"),
        counter("cu_nothex000000", 1),
        counter("cu_aabbcc", 1),
        {"quota": {"family": "inet", "table": "telecentre", "name": "q_m12", "bytes": 9}},
    ]
    assert rs.parse_device_bytes(listing) == {
        "aa:bb:cc:dd:ee:01": rs.DeviceBytes(10, 2_000),
        "02:00:00:00:00:02": rs.DeviceBytes(0, 5),
    }


def test_bindings_checked():
    a = rs.Device.parse("aa:bb:cc:dd:ee:01", "10.42.0.10", M)
    same_ip = rs.Device.parse("aa:bb:cc:dd:ee:02", "10.42.0.10", M)
    with pytest.raises(ValueError):
        rs.full_ruleset(NET, [rs.OwnerQuota(M, 1)], [a, same_ip])
    with pytest.raises(ValueError):
        rs.full_ruleset(NET, [rs.OwnerQuota(G, 1)], [a])
    with pytest.raises(ValueError):
        rs.full_ruleset(NET, [rs.OwnerQuota(M, 1), rs.OwnerQuota(M, 2)], [])


@pytest.mark.parametrize(
    "kw", [{"limit_bytes": 0}, {"limit_bytes": -1}, {"used_bytes": -5}, {"policy": "slow"}]
)
def test_quota_values_checked(kw):
    args = {"owner": M, "limit_bytes": 10, **kw}
    with pytest.raises(ValueError):
        rs.OwnerQuota(**args)


def test_extend_and_reset_commands():
    assert rs.extend_commands(M, 5000) == [
        {
            "add": {
                "quota": {
                    "family": "inet",
                    "table": "telecentre",
                    "name": "q_m12",
                    "bytes": 5000,
                    "inv": True,
                }
            }
        }
    ]
    with pytest.raises(ValueError):
        rs.extend_commands(M, 0)
    assert rs.reset_commands([M]) == [
        {"reset": {"quota": {"family": "inet", "table": "telecentre", "name": "q_m12"}}}
    ]


def test_parse_quotas_ignores_foreign_objects():
    listing = [
        {"metainfo": {}},
        {
            "quota": {
                "family": "inet",
                "table": "telecentre",
                "name": "q_m12",
                "bytes": 9,
                "used": 9,
            }
        },
        {"quota": {"family": "inet", "table": "other", "name": "q_m1", "bytes": 9, "used": 1}},
        {"quota": {"family": "inet", "table": "telecentre", "name": "mine", "bytes": 9, "used": 1}},
    ]
    readings = rs.parse_quotas(listing)
    assert readings == {M: rs.QuotaReading(9, 9)} and readings[M].spent


def test_runner_uses_an_argument_list_and_stdin(tmp_path):
    """A fake nft (a script given as the command) sees argv and the JSON on stdin."""
    import sys

    log = tmp_path / "seen.json"
    script = tmp_path / "fake_nft.py"
    script.write_text(
        "import json, sys\n"
        "seen = {'argv': sys.argv[1:], 'stdin': sys.stdin.read()}\n"
        f"open({str(log)!r}, 'w').write(json.dumps(seen))\n"
    )
    runner = rs.NftRunner((sys.executable, str(script)))
    runner.apply(rs.reset_commands([M]))
    seen = json.loads(log.read_text())
    assert seen["argv"] == ["-j", "-f", "-"]
    assert json.loads(seen["stdin"])["nftables"][1] == rs.reset_commands([M])[0]


def test_runner_raises_with_nft_message(tmp_path):
    import sys

    script = tmp_path / "fail.py"
    script.write_text("import sys; sys.stderr.write('Error: nope'); sys.exit(1)\n")
    with pytest.raises(rs.NftError, match="nope"):
        rs.NftRunner((sys.executable, str(script))).apply([])
