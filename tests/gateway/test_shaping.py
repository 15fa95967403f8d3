"""The shaping commands, checked without a kernel: tree, classes, rules, safe tokens."""

from __future__ import annotations

import ipaddress
import stat

import pytest

from appliance.gateway import shaping as sh

LINE = sh.Line("br-lan", "ifb-tc", 30_000, 1_000, ipaddress.IPv4Network("10.42.0.0/24"))
IP = ipaddress.IPv4Address("10.42.0.11")


def _find(cmds, *head):
    return [c for c in cmds if c[: len(head)] == list(head)]


def _opt(argv, key):
    return argv[argv.index(key) + 1]


def test_root_tree_guest_share_and_borrowing_on_both_sides():
    cmds = sh.root_commands(LINE)
    for dev, line_kbit, guest, member in (
        ("br-lan", 30_000, 12_000, 18_000),
        ("ifb-tc", 1_000, 400, 600),
    ):
        classes = {_opt(c, "classid"): c for c in _find(cmds, "class", "replace", "dev", dev)}
        assert _opt(classes["1:1"], "rate") == _opt(classes["1:1"], "ceil") == f"{line_kbit}kbit"
        # Guests keep 40 % while members are busy, and may borrow the whole line.
        assert _opt(classes["1:20"], "rate") == f"{guest}kbit"
        assert _opt(classes["1:10"], "rate") == f"{member}kbit"
        assert _opt(classes["1:20"], "ceil") == _opt(classes["1:10"], "ceil") == f"{line_kbit}kbit"
        assert _opt(classes["1:20"], "parent") == _opt(classes["1:10"], "parent") == "1:1"
        # The box's own traffic is not the line's.
        assert _opt(classes["1:2"], "parent") == "1:"
    # Upload: everything IPv4 arriving on the LAN goes through the ifb.
    (redirect,) = _find(cmds, "filter", "add", "dev", "br-lan", "parent", "ffff:")
    assert redirect[-4:] == ["egress", "redirect", "dev", "ifb-tc"]
    hashes = [c for c in cmds if "hashkey" in c]
    assert [(_opt(c, "dev"), c[c.index("match") + 2], _opt(c, "at")) for c in hashes] == [
        ("br-lan", "dst", "16"),
        ("ifb-tc", "src", "12"),
    ]


def test_other_guest_share():
    line = sh.Line("br-lan", "ifb-tc", 10_000, 1_000, LINE.lan_network, guest_share=0.25)
    classes = {_opt(c, "classid"): c for c in _find(sh.root_commands(line), "class", "replace",
                                                     "dev", "br-lan")}
    assert _opt(classes["1:20"], "rate") == "2500kbit"
    assert _opt(classes["1:10"], "rate") == "7500kbit"


def test_client_classes_caps_and_rules():
    c = sh.ClientClass(5, IP, "guest", down_kbit=5_000, up_kbit=500)
    cmds = sh.client_commands(LINE, c, "cake")
    down, up = (_find(cmds, "class", "replace", "dev", d)[0] for d in ("br-lan", "ifb-tc"))
    assert _opt(down, "classid") == _opt(up, "classid") == "1:1005"
    assert _opt(down, "parent") == "1:20"
    assert (_opt(down, "ceil"), _opt(up, "ceil")) == ("5000kbit", "500kbit")
    qd = _find(cmds, "qdisc", "replace", "dev", "br-lan")[0]
    assert qd[qd.index("handle") + 1 :] == ["1005:", "cake", "unlimited", "besteffort", "flows"]
    rules = _find(cmds, "filter", "replace")
    # Hashed on the address's last byte (11 = 0xb), node = the client's id.
    assert [_opt(r, "handle") for r in rules] == ["2:b:5", "2:b:5"]
    assert [(r[r.index("match") + 2], r[r.index("match") + 3]) for r in rules] == [
        ("dst", "10.42.0.11/32"),
        ("src", "10.42.0.11/32"),
    ]
    assert all(_opt(r, "flowid") == "1:1005" for r in rules)


def test_uncapped_client_gets_the_line_and_caps_never_exceed_it():
    member = sh.ClientClass(1, IP, "member")
    cmds = sh.client_commands(LINE, member, "pfifo")
    ceilings = [_opt(c, "ceil") for c in _find(cmds, "class", "replace")]
    assert ceilings == ["30000kbit", "1000kbit"]
    big = sh.ClientClass(1, IP, "member", down_kbit=100_000, up_kbit=100_000)
    assert [_opt(c, "ceil") for c in _find(sh.client_commands(LINE, big, "pfifo"), "class")] == [
        "30000kbit",
        "1000kbit",
    ]


def test_every_leaf_of_a_group_has_the_same_floor_and_quantum():
    """Equal floors and quanta are what makes htb share a group's excess equally."""
    a = sh.client_commands(LINE, sh.ClientClass(1, IP, "member", 25_000, 1_000), "pfifo")
    b = sh.client_commands(
        LINE, sh.ClientClass(2, ipaddress.IPv4Address("10.42.0.12"), "member", 5_000, 500), "pfifo"
    )
    for x, y in zip(_find(a, "class"), _find(b, "class"), strict=True):
        assert _opt(x, "rate") == _opt(y, "rate")
        assert _opt(x, "quantum") == _opt(y, "quantum") == str(sh.QUANTUM)
    # 256 leaves' floors fit in their group's guaranteed rate.
    floor = int(_opt(_find(a, "class")[0], "rate").removesuffix("kbit"))
    assert floor * sh.MAX_PER_GROUP <= 18_000


def test_remove_deletes_rule_then_class_on_both_sides():
    c = sh.ClientClass(300, ipaddress.IPv4Address("10.42.0.200"), "member")
    cmds = sh.remove_client_commands(LINE, c)
    assert [x[:2] + [x[3]] for x in cmds] == [
        ["filter", "del", "br-lan"],
        ["class", "del", "br-lan"],
        ["filter", "del", "ifb-tc"],
        ["class", "del", "ifb-tc"],
    ]
    assert _opt(cmds[0], "handle") == "2:c8:12c"
    assert _opt(cmds[1], "classid") == "1:112c"


def test_setup_refuses_duplicates_and_bad_values():
    a = sh.ClientClass(1, IP, "member")
    with pytest.raises(ValueError):
        sh.setup_commands(LINE, [a, sh.ClientClass(1, ipaddress.IPv4Address("10.42.0.9"),
                                                   "guest")], "pfifo")
    with pytest.raises(ValueError):
        sh.setup_commands(LINE, [a, sh.ClientClass(2, IP, "guest")], "pfifo")
    for kw in ({"id": 0}, {"id": sh.MAX_CLIENT_ID + 1}, {"id": True}, {"group": "admin"},
               {"down_kbit": 0}, {"ip": "10.42.0.11"}):
        with pytest.raises(ValueError):
            sh.ClientClass(**{"id": 1, "ip": IP, "group": "member", **kw})
    for kw in ({"lan": "br lan"}, {"ifb": "br-lan"}, {"down_kbit": 1}, {"guest_share": 1.0}):
        with pytest.raises(ValueError):
            sh.Line(**{**LINE.__dict__, **kw})
    with pytest.raises(ValueError):
        sh.leaf_qdisc("netem")


def test_batch_text_refuses_tokens_that_could_split_a_line():
    assert sh.batch_text([["qdisc", "del", "dev", "br0", "root"]]) == "qdisc del dev br0 root\n"
    for bad in ("a b", "x\nqdisc del dev eth0 root", '"', "", "a;b", 5):
        with pytest.raises(ValueError):
            sh.batch_text([["class", "del", "dev", bad]])


def test_whole_setup_is_only_safe_tokens():
    clients = [
        sh.ClientClass(i, ipaddress.IPv4Address(f"10.42.0.{10 + i}"), "guest" if i % 2 else
                       "member", 5_000, 500)
        for i in range(1, 201)
    ]
    text = sh.batch_text(sh.setup_commands(LINE, clients, "cake"))
    assert text.count("\n") == len(sh.root_commands(LINE)) + 200 * 6


def _fake_tc(tmp_path, fail_on: str = ""):
    log = tmp_path / "calls"
    script = tmp_path / "tc"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {log}\n'
        'if [ "$1" = "-batch" ] || [ "$1" = "-force" ]; then cat >> ' + str(log) + "; fi\n"
        f'case "$*" in *"{fail_on or "@@never@@"}"*) echo nope >&2; exit 2;; esac\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script, log


def test_runner_uses_one_batch_and_probes_the_best_leaf(tmp_path):
    tc, log = _fake_tc(tmp_path, fail_on="cake")
    runner = sh.TcRunner((str(tc),), ("true",))
    assert runner.probe_leaf("ifb-tc") == "fq_codel"
    runner.batch([["qdisc", "del", "dev", "br0", "root"], ["class", "del", "dev", "br0",
                                                           "classid", "1:1001"]])
    lines = log.read_text().splitlines()
    assert lines[-3:] == ["-batch -", "qdisc del dev br0 root", "class del dev br0 classid 1:1001"]
    tc2, _ = _fake_tc(tmp_path / "..", fail_on="-batch")
    with pytest.raises(sh.TcError):
        sh.TcRunner((str(tc2),)).batch([["qdisc", "del", "dev", "br0", "root"]])
    sh.TcRunner((str(tc2),)).batch([["qdisc", "del", "dev", "br0", "root"]], force=True)


class _Recorder(sh.TcRunner):
    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[list[str]]] = []

    def batch(self, commands, *, force=False):
        self.batches.append([list(c) for c in commands])

    def ensure_ifb(self, name):
        pass

    def probe_leaf(self, dev):
        return "pfifo"


def test_shaper_keeps_ids_per_ip_and_reuses_freed_ones():
    rec = _Recorder()
    shaper = sh.Shaper(LINE, rec)
    a, b = IP, ipaddress.IPv4Address("10.42.0.12")
    shaper.setup([(a, "member", None, None)])
    assert shaper.add(b, "guest", 5_000, 500).id == 2
    assert shaper.add(b, "guest", 4_000, 500).id == 2  # same client, same id
    # Moving group: htb cannot re-parent a class, so the old one goes first.
    moved = rec.batches[-1] if shaper.add(b, "member", None, None) else None
    assert moved is not None and moved[0][:2] == ["filter", "del"]
    assert shaper.remove(a) and not shaper.remove(a)
    assert shaper.add(ipaddress.IPv4Address("10.42.0.13"), "guest", None, None).id == 1
