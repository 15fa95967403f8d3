"""The link service on a real (namespaced) network: probes, outages and their causes,
and iperf3 throughput through a line shaped to 30/1 Mbit/s.

Needs root (namespaces, raw sockets); skipped otherwise, failed under CI=true.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from appliance import config as config_mod
from appliance import ipc
from appliance.link.throughput import shaped_goodput
from appliance.runtime import init_state
from tests.conftest import require_tool
from tests.link import netns
from tests.link.netns import ANCHOR1, ANCHOR2, ISP_CPE, Internet

pytestmark = pytest.mark.slow
HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def internet():
    with netns.running_internet("ss") as net:
        yield net


@pytest.fixture(scope="module")
def link_service(internet: Internet, tmp_path_factory):
    """`telecentre link run` in the gw namespace, on a 1 s probe interval."""
    with _service(internet, tmp_path_factory.mktemp("site")) as running:
        yield running


@contextlib.contextmanager
def _service(internet: Internet, base: Path, env: dict[str, str] | None = None, **link: str):
    path = netns.link_site_config(base, **link)
    cfg = config_mod.load(path)
    init_state(cfg)
    proc = internet.start_link_service(path, base / "link.log", env)
    try:
        # Up, and a first round of samples in (the layers alone may be up before it).
        wait_for(lambda: (s := _status(cfg)).get("isp_hop") and s["layers"]["dns"]
                 and s.get("samples"), 20,
                 "the service to find the ISP hop and see the line up", base / "link.log")
        yield cfg, base / "link.log"
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def _status(cfg) -> dict:
    try:
        return ipc.call(cfg.link_socket, "status")
    except ipc.IpcError:
        return {}


def wait_for(predicate: Callable[[], object], timeout: float, what: str,
             log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    tail = log.read_text()[-3000:] if log else ""
    pytest.fail(f"timed out waiting for {what}\n{tail}")


def outages(cfg) -> list[sqlite3.Row]:
    conn = sqlite3.connect(f"file:{cfg.db_path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute("SELECT cause, start, end FROM link_outages ORDER BY id").fetchall()
    finally:
        conn.close()


def test_probes_find_the_box_the_isp_hop_and_the_anchors(link_service):
    cfg, _log = link_service
    s = _status(cfg)
    assert s["gateway"] == netns.BOX_LAN
    assert s["isp_hop"] == ISP_CPE
    assert s["outage"] is None and all(s["layers"].values())
    by_role = {(x["role"], x["target"]): x for x in s["samples"]}
    assert set(by_role) == {("gateway", netns.BOX_LAN), ("isp_hop", ISP_CPE),
                            ("anchor", ANCHOR1), ("anchor", ANCHOR2), ("dns", netns.RESOLVER)}
    assert all(x["received"] == x["sent"] == 1 and 0 < x["rtt"] < 0.3 for x in by_role.values())


def _drop_all(internet: Internet) -> None:
    """The ISP's router stops forwarding and answering: the access line is down."""
    internet.nft("isp", [
        {"add": {"table": {"family": "inet", "name": "t4fault"}}},
        {"add": {"chain": {"family": "inet", "table": "t4fault", "name": "fwd", "type": "filter",
                           "hook": "forward", "prio": 0, "policy": "drop"}}},
        {"add": {"chain": {"family": "inet", "table": "t4fault", "name": "in", "type": "filter",
                           "hook": "input", "prio": 0, "policy": "drop"}}},
    ])


def _drop_dns(internet: Internet) -> None:
    internet.nft("isp", [
        {"add": {"table": {"family": "inet", "name": "t4fault"}}},
        {"add": {"chain": {"family": "inet", "table": "t4fault", "name": "fwd", "type": "filter",
                           "hook": "forward", "prio": 0, "policy": "accept"}}},
        {"add": {"rule": {"family": "inet", "table": "t4fault", "chain": "fwd", "expr": [
            {"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}},
                       "right": 53}},
            {"drop": None}]}}},
    ])


def _drop_anchor2(internet: Internet) -> None:
    internet.nft("wan", [
        {"add": {"table": {"family": "inet", "name": "t4fault"}}},
        {"add": {"chain": {"family": "inet", "table": "t4fault", "name": "in", "type": "filter",
                           "hook": "input", "prio": 0, "policy": "accept"}}},
        {"add": {"rule": {"family": "inet", "table": "t4fault", "chain": "in", "expr": [
            {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                       "right": ANCHOR2}},
            {"drop": None}]}}},
    ])


def _clear(ns: str) -> Callable[[Internet], None]:
    def clear(internet: Internet) -> None:
        internet.nft(ns, [{"delete": {"table": {"family": "inet", "name": "t4fault"}}}])
    return clear


def _box_link(state: str) -> Callable[[Internet], None]:
    def set_link(internet: Internet) -> None:
        internet.ipn("box", "link", "set", "lan", state)
    return set_link


@pytest.mark.parametrize(
    "cause,fault,repair",
    [
        ("lan", _box_link("down"), _box_link("up")),
        ("access", _drop_all, _clear("isp")),
        ("dns", _drop_dns, _clear("isp")),
        ("upstream", _drop_anchor2, _clear("wan")),
    ],
    ids=["gateway-link-down", "isp-hop-dropping", "dns-blocked", "one-anchor-dropping"],
)
def test_outage_causes_are_localized_with_start_and_end(link_service, internet, cause, fault,
                                                        repair):
    cfg, log = link_service
    before = len(outages(cfg))
    wait_for(lambda: _status(cfg).get("outage") is None, 15, "a clean line", log)
    fault_at = time.time()
    fault(internet)
    try:
        wait_for(lambda: (_status(cfg).get("outage") or {}).get("cause") == cause, 15,
                 f"a {cause} outage", log)
        time.sleep(2)
        assert (_status(cfg).get("outage") or {}).get("cause") == cause
    finally:
        repair_at = time.time()
        repair(internet)
    wait_for(lambda: _status(cfg).get("outage") is None, 20, "the line to come back", log)
    rows = outages(cfg)[before:]
    assert [r["cause"] for r in rows] == [cause], [tuple(r) for r in rows]
    start, end = rows[0]["start"], rows[0]["end"]
    # Dated back to the first failed round and to the first good one, rounds being dated
    # when their probes leave: within a round (in flight, ~0.9 s) before and a probe
    # interval (1 s) after the real fault. Without the backdating they would be 2 s late.
    assert fault_at - 1.0 <= start <= fault_at + 1.3, (start - fault_at)
    assert repair_at - 1.0 <= end <= repair_at + 1.3, (end - repair_at)


def test_iperf3_through_the_shaped_line_within_ten_percent(link_service):
    cfg, log = link_service
    reply = ipc.call(cfg.link_socket, "test", force=True)
    assert reply["started"] is True
    wait_for(lambda: _status(cfg).get("last_test"), 60, "the test to finish", log)
    result = _status(cfg)["last_test"]
    assert result["result"] == "ok", result
    down_truth = shaped_goodput(netns.DOWN_MBIT * 1e6)
    up_truth = shaped_goodput(netns.UP_MBIT * 1e6)
    print(f"\niperf3: download {result['download_bps'] / 1e6:.2f} Mbit/s "
          f"(truth {down_truth / 1e6:.2f}), upload {result['upload_bps'] / 1e6:.3f} Mbit/s "
          f"(truth {up_truth / 1e6:.3f}), bytes {result['bytes']}, added delay "
          f"{result['added_delay_s']}, grade {result['grade']}")
    assert abs(result["download_bps"] / down_truth - 1) <= 0.10
    assert abs(result["upload_bps"] / up_truth - 1) <= 0.10
    assert result["download_ratio"] == pytest.approx(result["download_bps"] / 30e6)
    assert result["bytes"] > 6 * 28e6 / 8  # at least six seconds of download were paid for
    assert result["grade"] in ("A+", "A", "B", "C", "D", "F")
    assert result["idle_rtt_s"] < result["loaded_rtt_s"]


def _box_buffers(internet: Internet, seconds: float) -> None:
    """Resize both of the box's queues to `seconds` of the line's rate."""
    tc = internet.tc
    internet.run("box", tc, "qdisc", "change", "dev", "wan", "root", "tbf", "rate",
                 f"{netns.UP_MBIT}mbit", "burst", "3000", "latency", f"{seconds * 1000:.0f}ms")
    packets = int(netns.DOWN_MBIT * 1e6 / 8 / 1514 * seconds)
    internet.run("box", tc, "qdisc", "change", "dev", "ifb0", "parent", "1:10", "handle",
                 "10:", "pfifo", "limit", str(packets))


def test_tests_on_a_bloated_line_make_no_outage_and_the_next_test_runs(
        internet: Internet, tmp_path_factory):
    """A box with 1 s of buffer each way: under a test the probes (0.3 s timeout) time
    out, yet no outage is recorded and the next test runs; the test grades it D or F."""
    _box_buffers(internet, 1.0)
    try:
        with _service(internet, tmp_path_factory.mktemp("bloat")) as (cfg, log):
            before = None
            for _ in range(2):  # the second right after the first
                assert ipc.call(cfg.link_socket, "test", force=True)["started"] is True
                wait_for(lambda before=before: (s := _status(cfg)).get("test") is None
                         and (s.get("last_test") or {}).get("at") not in (None, before),
                         60, "the test to finish", log)
                result = _status(cfg)["last_test"]
                assert result["result"] == "ok", result
                assert _status(cfg)["outage"] is None
                before = result["at"]
            print(f"\nloaded RTT {result['loaded_rtt_s']}, grade {result['grade']}, "
                  f"{result.get('loaded_lost')} of {result.get('loaded_samples')} samples lost")
            # 1 s of buffer is 1 s of added delay in the upload: the sampler's echoes wait
            # it out in flight (3 s timeout) instead of being dropped at 1 s, which graded
            # this line A from the few samples that came back fast.
            assert result["grade"] in ("D", "F"), result
            # One median over both directions' samples: it can fall between the phases,
            # so it is held to grade D's floor (0.2 s), not F's; the old sampler read 0.012.
            assert result["loaded_rtt_s"] > 0.2 and result["loaded_samples"] >= 20, result
            time.sleep(2.5)  # the rounds after the second test
            assert _status(cfg)["outage"] is None
            assert outages(cfg) == []
            held = [tuple(map(int, m)) for m in
                    re.findall(r"(\d+) of (\d+) probe rounds under our test's load failed",
                               log.read_text())]
            # The probes under load did time out, enough to have made outages before.
            # (Two tests back to back can make one stretch of held rounds: one line.)
            print(f"failed/held rounds under load: {held}")
            assert held and sum(failed for failed, _total in held) >= 6, held
    finally:
        _box_buffers(internet, 0.2)


def test_cross_traffic_gate_holds_while_a_member_downloads(internet: Internet):
    """The gate reads the gw namespace's real counters (/proc/PID/net/dev of a process
    in it) while an iperf3 client downloads at 2 Mbit/s, well over 25 kB/s."""
    from appliance.link.gate import wait_for_quiet, wan_bytes_reader

    iperf3 = require_tool("iperf3")
    anchor = internet.start("gw", "sleep", "120")
    net_dev = Path(f"/proc/{anchor.pid}/net/dev")
    wait_for(lambda: "lan0:" in net_dev.read_text(), 5, "the helper to enter the namespace")
    read = wan_bytes_reader("lan0", net_dev)
    quiet = wait_for_quiet(read)
    assert quiet.passed and 5.0 <= quiet.waited < 7.0 and quiet.peak_rate < 25_000
    member = internet.start("gw", iperf3, "-c", ANCHOR1, "-R", "-b", "2M", "-t", "10",
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.5)
    started = time.monotonic()
    held = wait_for_quiet(read)
    assert member.wait(timeout=20) == 0
    assert held.passed, held
    # Held for the rest of the download (~8.5 s) plus a 5 s quiet window.
    assert held.waited >= 12.0 and held.peak_rate > 200_000, held
    assert time.monotonic() - started < 30
    busy = internet.start("gw", iperf3, "-c", ANCHOR1, "-R", "-b", "2M", "-t", "40",
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.5)
    skipped = wait_for_quiet(read)
    busy.terminate()
    assert not skipped.passed and skipped.reason == "line busy" and skipped.waited >= 30.0


def test_speedtest_cli_against_a_fake_speedtest_net_within_ten_percent(internet: Internet,
                                                                        tmp_path):
    """speedtest-cli, unmodified and in secure mode, through the link service in gw.

    10 s per direction, Ookla's own test length: speedtest-cli's rates include each
    request's connection set-up and what is still in flight at the deadline, which
    shorter tests do not average out.

    www.speedtest.net, c.speedtest.net and the test server resolve to the fake in wan
    through /etc/netns/<gw>/hosts; the service trusts the test CA through SSL_CERT_FILE
    in its own environment only (certificate checking stays on).
    """
    ca = internet.start_speedtest(HERE, require_tool("openssl"), tmp_path / "pki")
    with _service(internet, tmp_path / "site", {"SSL_CERT_FILE": str(ca)},
                  test_backend='"speedtest"', test_seconds="10") as (cfg, log):
        reply = ipc.call(cfg.link_socket, "test", force=True)
        assert reply["started"] is True
        wait_for(lambda: _status(cfg).get("last_test"), 90, "the test to finish", log)
        result = _status(cfg)["last_test"]
        assert result["result"] == "ok", result
        down_truth = shaped_goodput(netns.DOWN_MBIT * 1e6)
        up_truth = shaped_goodput(netns.UP_MBIT * 1e6)
        print(f"\nspeedtest: download {result['download_bps'] / 1e6:.2f} Mbit/s "
              f"(truth {down_truth / 1e6:.2f}), upload {result['upload_bps'] / 1e6:.3f} Mbit/s "
              f"(truth {up_truth / 1e6:.3f}), bytes {result['bytes']}, grade {result['grade']}")
        assert result["backend"] == "speedtest"
        assert result["server"] == "speedtest:4242 FAI rural"
        assert abs(result["download_bps"] / down_truth - 1) <= 0.10
        assert abs(result["upload_bps"] / up_truth - 1) <= 0.10
        # Paid for: what speedtest-cli counted, i.e. about ten seconds each way.
        expected = (result["download_bps"] + result["upload_bps"]) * 10 / 8
        assert 0.85 * expected <= result["bytes"] <= 1.3 * expected
        conn = sqlite3.connect(f"file:{cfg.db_path}?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT backend, bytes, result FROM link_tests").fetchone()
        finally:
            conn.close()
        assert row == ("speedtest", result["bytes"], "ok")


def test_speedtest_refuses_a_certificate_it_does_not_trust(internet: Internet, tmp_path):
    """Without the test CA the same fake is refused: secure mode really checks."""
    internet.start_speedtest(HERE, require_tool("openssl"), tmp_path / "pki")
    code = ("from appliance.link.speedtest import SpeedtestBackend\n"
            "from appliance.link.iperf import BackendError\n"
            "try:\n    SpeedtestBackend(seconds=2).measure()\n"
            "except BackendError as e:\n    print('refused', e)\n")
    out = internet.run("gw", sys.executable, "-c", code)
    assert out.startswith("refused") and "CERTIFICATE_VERIFY_FAILED" in out, out
