"""The shaping commands, checked without a kernel: tree, classes, rules, safe tokens."""

from __future__ import annotations

import ipaddress
import stat

import pytest

from appliance.gateway import ruleset as rs
from appliance.gateway import shaping as sh

LINE = sh.Line("br-lan", "eth0", 30_000, 1_000, ipaddress.IPv4Network("10.42.0.0/24"))
IP = ipaddress.IPv4Address("10.42.0.11")


def _find(cmds, *head):
    return [c for c in cmds if c[: len(head)] == list(head)]


def _opt(argv, key):
    return argv[argv.index(key) + 1]


def test_root_tree_guest_share_and_borrowing_on_both_sides():
    cmds = sh.root_commands(LINE)
    for dev, line_kbit, guest, member in (
        ("br-lan", 30_000, 12_000, 18_000),
        ("eth0", 1_000, 400, 600),
    ):
        classes = {_opt(c, "classid"): c for c in _find(cmds, "class", "replace", "dev", dev)}
        assert _opt(classes["1:1"], "rate") == _opt(classes["1:1"], "ceil") == f"{line_kbit}kbit"
        # Guests keep 40 % while members are busy, and may borrow the whole line.
        assert _opt(classes["1:20"], "rate") == f"{guest}kbit"
        assert _opt(classes["1:10"], "rate") == f"{member}kbit"
        assert _opt(classes["1:20"], "ceil") == _opt(classes["1:10"], "ceil") == f"{line_kbit}kbit"
        assert _opt(classes["1:20"], "parent") == _opt(classes["1:10"], "parent") == "1:1"
    # The box's own traffic: on the LAN not the line's; on the WAN the line's (a floor,
    # and it borrows up to the line like the groups).
    lan_box, wan_box = (
        {_opt(c, "classid"): c for c in _find(cmds, "class", "replace", "dev", d)}["1:2"]
        for d in ("br-lan", "eth0")
    )
    assert _opt(lan_box, "parent") == "1:"
    assert (_opt(wan_box, "parent"), _opt(wan_box, "rate"), _opt(wan_box, "ceil")) == (
        "1:1", "20kbit", "1000kbit")
    # Unclassified packets go to the box's class; no filter, no ingress, no ifb: the
    # ruleset's priority names each client's leaf.
    for root in _find(cmds, "qdisc", "replace"):
        assert root[-2:] == ["default", "2"]
    assert not [c for c in cmds if c[0] == "filter" or "ingress" in c or "ifb" in " ".join(c)]
    assert {c[3] for c in cmds} == {"br-lan", "eth0"}


def test_other_guest_share():
    line = sh.Line("br-lan", "eth0", 10_000, 1_000, LINE.lan_network, guest_share=0.25)
    classes = {_opt(c, "classid"): c for c in _find(sh.root_commands(line), "class", "replace",
                                                     "dev", "br-lan")}
    assert _opt(classes["1:20"], "rate") == "2500kbit"
    assert _opt(classes["1:10"], "rate") == "7500kbit"


def test_client_classes_caps_and_rules():
    c = sh.ClientClass(5, IP, "guest", down_kbit=5_000, up_kbit=500)
    cmds = sh.client_commands(LINE, c, "cake")
    down, up = (_find(cmds, "class", "replace", "dev", d)[0] for d in ("br-lan", "eth0"))
    assert _opt(down, "classid") == _opt(up, "classid") == "1:1005"
    assert _opt(down, "parent") == "1:20"
    assert (_opt(down, "ceil"), _opt(up, "ceil")) == ("5000kbit", "500kbit")
    qd = _find(cmds, "qdisc", "replace", "dev", "br-lan")[0]
    assert qd[qd.index("handle") + 1 :] == ["1005:", "cake", "unlimited", "besteffort", "flows",
                                             "split-gso"]
    assert not _find(cmds, "filter")  # classified by the priority the ruleset sets


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


def test_remove_deletes_the_class_on_both_sides():
    c = sh.ClientClass(300, ipaddress.IPv4Address("10.42.1.44"), "member")
    cmds = sh.remove_client_commands(LINE, c)
    assert cmds == [["class", "del", "dev", "br-lan", "classid", "1:112c"],
                    ["class", "del", "dev", "eth0", "classid", "1:112c"]]


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
    for kw in ({"lan": "br lan"}, {"wan": "br-lan"}, {"down_kbit": 1}, {"guest_share": 1.0},
               {"lan_network": ipaddress.IPv4Network("10.0.0.0/16")}):
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
    assert text.count("\n") == len(sh.root_commands(LINE)) + 200 * 4


def _fake_tc(tmp_path, fail_on: str | tuple[str, ...] = ""):
    tmp_path.mkdir(parents=True, exist_ok=True)
    patterns = "|".join(f'*"{p}"*' for p in ((fail_on,) if isinstance(fail_on, str) else fail_on))
    log = tmp_path / "calls"
    script = tmp_path / "tc"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {log}\n'
        'if [ "$1" = "-batch" ] || [ "$1" = "-force" ]; then cat >> ' + str(log) + "; fi\n"
        f'case "$*" in {patterns if fail_on else "@@never@@"}) echo nope >&2; exit 2;; esac\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script, log


def test_runner_uses_one_batch_and_probes_the_best_leaf(tmp_path):
    tc, log = _fake_tc(tmp_path, fail_on="cake")
    runner = sh.TcRunner((str(tc),), ("true",))
    # fq_codel, with a splitting tbf in front sized to the default frame (`ip` said nothing).
    assert runner.probe_leaf("eth0", "br0") == sh.Leaf("fq_codel", sh.DEFAULT_FRAME)
    runner.batch([["qdisc", "del", "dev", "br0", "root"], ["class", "del", "dev", "br0",
                                                           "classid", "1:1001"]])
    lines = log.read_text().splitlines()
    assert lines[-3:] == ["-batch -", "qdisc del dev br0 root", "class del dev br0 classid 1:1001"]
    no_tbf, _ = _fake_tc(tmp_path / "x", fail_on=("cake", "fq_codel", "sfq", "tbf"))
    assert sh.TcRunner((str(no_tbf),), ("true",)).probe_leaf("eth0") == sh.Leaf("pfifo")
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

    def probe_leaf(self, dev, *others):
        return "pfifo"


def test_shaper_ids_are_the_ruleset_s_class_ids():
    rec = _Recorder()
    shaper = sh.Shaper(LINE, rec)
    a, b = IP, ipaddress.IPv4Address("10.42.0.12")
    shaper.setup([(a, "member", None, None)])
    assert rec.batches[0] == sh.teardown_commands(LINE)
    client = shaper.add(b, "guest", 5_000, 500)
    assert client.id == 12 and f"1:{client.minor:x}" == rs.class_id(b)
    assert shaper.add(b, "guest", 4_000, 500).id == 12  # same client, same id
    # Moving group: htb cannot re-parent a class, so the old one goes first.
    shaper.add(b, "member", None, None)
    moved = rec.batches[-1]
    assert moved[0] == ["class", "del", "dev", "br-lan", "classid", "1:100c"]
    assert _opt(moved[2], "parent") == "1:10"
    assert shaper.remove(a) and not shaper.remove(a)
    with pytest.raises(ValueError):
        shaper.add(ipaddress.IPv4Address("192.168.1.5"), "guest", None, None)


def test_every_class_has_a_bucket_that_holds_a_millisecond_of_its_rate():
    """tc's default burst wraps to 0 bytes from about 4 Gbit/s (32-bit arithmetic), and
    is one frame at the Pi's rates: every class gets an explicit burst and cburst."""
    assert sh.burst_bytes(30_000) == 3_750
    assert sh.burst_bytes(8) == 2 * sh.QUANTUM
    assert sh.burst_bytes(10_000_000) == 1_250_000
    big = sh.Line("br-lan", "eth0", 100_000_000, 100_000_000, LINE.lan_network)
    cmds = sh.setup_commands(big, [sh.ClientClass(1, IP, "member")], "pfifo")
    classes = _find(cmds, "class", "replace")
    assert len(classes) == 2 * 5
    for c in classes:
        rate, ceil = (int(_opt(c, k).removesuffix("kbit")) for k in ("rate", "ceil"))
        assert _opt(c, "burst") == f"{sh.burst_bytes(rate)}b"
        assert _opt(c, "cburst") == f"{sh.burst_bytes(ceil)}b"
        assert _opt(c, "quantum") == str(sh.SUPER_QUANTUM)  # 100 Gbit/s: not split
    sh.batch_text(cmds)  # every token is still a safe one


def test_leaves_split_super_packets_below_a_gigabit_and_quanta_follow():
    """htb's round robin is per packet once a packet is bigger than the quantum, and a
    forwarded packet may be a 64 KiB GSO super-packet: below 1 Gbit/s each leaf splits
    them into frames (cake itself, else a tbf in front of the queue) and the quantum is
    one frame; from 1 Gbit/s nothing is split and the quantum is a whole super-packet."""
    c = sh.ClientClass(5, IP, "member")
    leaf = sh.Leaf("pfifo", 1518)
    cmds = sh.client_commands(LINE, c, leaf)  # 30 / 1 Mbit/s: both sides split
    for dev in ("br-lan", "eth0"):
        tbf, child = _find(cmds, "qdisc", "replace", "dev", dev)
        # The tbf goes first (a tbf change resets a fifo child's limit), then its queue.
        assert (_opt(tbf, "parent"), _opt(tbf, "handle")) == ("1:1005", "1005:")
        assert tbf[tbf.index("handle") + 2:] == [
            "tbf", "rate", "10gbit", "burst", "1000000b", "peakrate", "1tbit", "mtu", "1518",
            "limit", str(100 * 1518)]
        assert (_opt(child, "parent"), _opt(child, "handle")) == ("1005:1", "2005:")
        assert child[child.index("handle") + 2:] == ["pfifo", "limit", "100"]
        (cls,) = _find(cmds, "class", "replace", "dev", dev)
        assert _opt(cls, "quantum") == str(sh.QUANTUM)
    # A gigabit download: that side keeps super-packets whole, with a quantum to match;
    # the 1 Mbit/s upload side still splits.
    fast = sh.Line("br-lan", "eth0", 1_000_000, 1_000, LINE.lan_network)
    cmds = sh.client_commands(fast, c, leaf)
    assert [q[q.index("handle") + 2] for q in _find(cmds, "qdisc", "replace", "dev", "br-lan")
            ] == ["pfifo"]
    assert [q[q.index("handle") + 2] for q in _find(cmds, "qdisc", "replace", "dev", "eth0")
            ] == ["tbf", "pfifo"]
    assert [_opt(x, "quantum") for x in _find(cmds, "class")] == [str(sh.SUPER_QUANTUM),
                                                                 str(sh.QUANTUM)]
    for x in _find(sh.root_commands(fast), "class", "replace", "dev", "br-lan"):
        assert _opt(x, "quantum") == str(sh.SUPER_QUANTUM)  # every class of the side
    assert sh.SUPER_QUANTUM >= 65_536 + 44 * 66  # 64 KiB and its segments' headers
    # cake splits by itself (said explicitly: not every version's default), or not.
    cake = sh.client_commands(fast, c, sh.Leaf("cake"))
    assert [q[-1] for q in _find(cake, "qdisc")] == ["no-split-gso", "split-gso"]
    # A kernel without tbf: the queue alone, nothing else changes.
    assert [q[q.index("handle") + 2] for q in _find(sh.client_commands(LINE, c, "sfq"), "qdisc")
            ] == ["sfq", "sfq"]
    sh.batch_text(sh.setup_commands(LINE, [c], leaf))  # only safe tokens
    for bad in ({"kind": "netem"}, {"frame": 10}, {"frame": True}, {"frame": 70_000}):
        with pytest.raises(ValueError):
            sh.Leaf(**{"kind": "pfifo", **bad})


def test_the_shaper_sizes_the_splitter_to_the_interfaces_frames(tmp_path):
    tc, log = _fake_tc(tmp_path, fail_on="cake")
    ip = tmp_path / "ip"
    ip.write_text('#!/bin/sh\ncase "$*" in *eth0*) echo \'[{"mtu": 1500}]\';; '
                  '*) echo \'[{"mtu": 2304}]\';; esac\n')
    ip.chmod(ip.stat().st_mode | stat.S_IEXEC)
    runner = sh.TcRunner((str(tc),), (str(ip),))
    assert runner.probe_leaf("eth0", "wlan0") == sh.Leaf("fq_codel", 2304 + 18)
    shaper = sh.Shaper(sh.Line("wlan0", "eth0", 30_000, 1_000, LINE.lan_network), runner)
    shaper.setup([(IP, "member", None, None)])
    text = log.read_text()
    assert "peakrate 1tbit mtu 2322 " in text and "parent 100b:1 handle 200b: fq_codel" in text
