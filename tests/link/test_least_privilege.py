"""The link service as systemd runs it: an unprivileged user, CAP_NET_RAW and nothing else.

`telecentre link run` runs as its own process in the gw namespace of tests/link/netns.py,
started with `setpriv` from the user, capabilities and command line that
systemd/telecentre-link.service gives it (read from the unit, so the two cannot drift):
an unprivileged uid with no groups, CAP_NET_RAW in the inheritable, ambient and bounding
sets only, no_new_privs. With that it must probe the box, the ISP hop and the anchors,
find the ISP hop with scapy's traceroute, time DNS and localize an outage. Without
CAP_NET_RAW it must refuse to start, with one clear log line and exit status 2 (which
the unit's RestartPreventExitStatus=2 does not restart: a restart cannot fix it).

Needs root (namespaces, setpriv); skipped otherwise, failed under CI=true.
"""

from __future__ import annotations

import os
import pwd
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance import config as config_mod
from appliance import ipc
from appliance.cli import build_parser
from appliance.runtime import init_state
from tests.conftest import require_tool
from tests.link import netns
from tests.link.netns import ANCHOR1, ANCHOR2, BOX_LAN, ISP_CPE, RESOLVER, Internet
from tests.link.test_netns import _clear, _drop_all, wait_for

pytestmark = pytest.mark.slow
UNIT = netns.ROOT / "systemd" / "telecentre-link.service"
NET_RAW_BIT = 1 << 13  # CAP_NET_RAW in /proc/PID/status capability masks


def unit_service() -> dict[str, list[str]]:
    """The [Service] section of the link unit: key → values (a key may repeat)."""
    out: dict[str, list[str]] = {}
    section = None
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


def capability_flags(unit: dict[str, list[str]]) -> list[str]:
    """setpriv flags for the unit's capabilities: what AmbientCapabilities grants, inside
    CapabilityBoundingSet, e.g. CAP_NET_RAW → +net_raw."""
    ambient = [c.removeprefix("CAP_").lower() for v in unit["AmbientCapabilities"]
               for c in v.split()]
    bounding = [c.removeprefix("CAP_").lower() for v in unit["CapabilityBoundingSet"]
                for c in v.split()]
    assert ambient == ["net_raw"] and bounding == ["net_raw"], (ambient, bounding)
    return ["--inh-caps=" + ",".join("+" + c for c in ambient),
            "--ambient-caps=" + ",".join("+" + c for c in ambient),
            "--bounding-set=-all," + ",".join("+" + c for c in bounding)]


NO_CAPABILITIES = ["--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all"]


@pytest.fixture(scope="module")
def internet() -> Iterator[Internet]:
    with netns.running_internet("setpriv") as net:
        yield net


class Unprivileged:
    """A site directory owned by an unprivileged user, and the service run as that user."""

    def __init__(self, internet: Internet, base: Path) -> None:
        self.internet = internet
        self.user = pwd.getpwnam("nobody")
        self.site = base / "site"
        self.config_path = netns.link_site_config(self.site)
        self.cfg = config_mod.load(self.config_path)
        init_state(self.cfg)
        for root, dirs, files in os.walk(self.site):
            for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
                os.chown(name, self.user.pw_uid, self.user.pw_gid)
        self.log = base / "link.log"
        self.proc: subprocess.Popen | None = None

    def start(self, caps: list[str]) -> subprocess.Popen:
        unit = unit_service()
        # The unit's command line after the program (`link run`), with this site's config.
        args = unit["ExecStart"][-1].split()[1:]
        assert build_parser().parse_args(args).link_cmd == "run"
        no_new_privs = ["--no-new-privs"] if unit["NoNewPrivileges"] == ["yes"] else []
        argv = [require_tool("setpriv"), f"--reuid={self.user.pw_uid}",
                f"--regid={self.user.pw_gid}", "--clear-groups", *caps, *no_new_privs, "--",
                sys.executable, "-m", "appliance.cli", "--config", str(self.config_path), *args]
        env = {**os.environ, "HOME": self.user.pw_dir, "PYTHONDONTWRITEBYTECODE": "1"}
        with self.log.open("w") as out:
            self.proc = self.internet.start("gw", *argv, stdout=out, stderr=subprocess.STDOUT,
                                            cwd=str(netns.ROOT), env=env)
        return self.proc

    def status(self) -> dict:
        try:
            return ipc.call(self.cfg.link_socket, "status")
        except ipc.IpcError:
            return {}

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


@pytest.fixture
def unprivileged(internet: Internet) -> Iterator[Unprivileged]:
    # Not under pytest's tmp_path: its parents are private to root.
    base = Path(tempfile.mkdtemp(prefix="t4-least-privilege-"))
    os.chmod(base, 0o755)
    service = Unprivileged(internet, base)
    try:
        yield service
    finally:
        service.stop()
        shutil.rmtree(base, ignore_errors=True)


def proc_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, v in (line.split(":", 1) for line in lines)}


def test_with_only_cap_net_raw_it_probes_traces_resolves_and_localizes(unprivileged,
                                                                       internet):
    svc = unprivileged
    proc = svc.start(capability_flags(unit_service()))
    wait_for(lambda: (s := svc.status()) and s.get("isp_hop") and s["layers"]["dns"]
             and len(s["samples"]) == 5, 25,
             "the unprivileged service to find the ISP hop and see the line up", svc.log)

    # The process that answers is the service itself, with exactly the unit's privileges.
    assert "appliance.cli" in Path(f"/proc/{proc.pid}/cmdline").read_text()
    st = proc_status(proc.pid)
    uid, gid = svc.user.pw_uid, svc.user.pw_gid
    assert st["Uid"].split() == [str(uid)] * 4 and st["Gid"].split() == [str(gid)] * 4
    assert st["Groups"] == ""
    for mask in ("CapEff", "CapPrm", "CapBnd", "CapAmb"):
        assert int(st[mask], 16) == NET_RAW_BIT, (mask, st[mask])
    assert st["NoNewPrivs"] == "1"
    assert svc.cfg.db_path.stat().st_uid == uid

    # Probes to every target answered, the traceroute (scapy) found the ISP hop, DNS works.
    s = svc.status()
    assert s["gateway"] == BOX_LAN and s["isp_hop"] == ISP_CPE
    by_role = {(x["role"], x["target"]): x for x in s["samples"]}
    assert set(by_role) == {("gateway", BOX_LAN), ("isp_hop", ISP_CPE), ("anchor", ANCHOR1),
                            ("anchor", ANCHOR2), ("dns", RESOLVER)}
    assert all(x["received"] >= 1 and 0 < x["rtt"] < 0.3 for x in by_role.values()), by_role
    assert s["outage"] is None and all(s["layers"].values())

    # An access outage (the ISP router drops everything) is localized, start and end.
    fault_at = time.time()
    _drop_all(internet)
    try:
        wait_for(lambda: (svc.status().get("outage") or {}).get("cause") == "access", 15,
                 "an access outage", svc.log)
    finally:
        repair_at = time.time()
        _clear("isp")(internet)
    wait_for(lambda: svc.status().get("outage") is None and svc.status()["layers"]["dns"], 20,
             "the line to come back", svc.log)
    conn = sqlite3.connect(f"file:{svc.cfg.db_path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT cause, start, end FROM link_outages").fetchall()
    finally:
        conn.close()
    assert len(rows) == 1 and rows[0][0] == "access", rows
    assert fault_at - 1.0 <= rows[0][1] <= fault_at + 1.3
    assert repair_at - 1.0 <= rows[0][2] <= repair_at + 1.3
    log = svc.log.read_text()
    assert "Traceback" not in log and "traceroute failed" not in log, log[-3000:]
    assert f"first ISP hop: {ISP_CPE}" in log


def test_without_cap_net_raw_it_refuses_to_start_and_says_why(unprivileged):
    svc = unprivileged
    proc = svc.start(NO_CAPABILITIES)
    assert proc.wait(timeout=30) == 2, svc.log.read_text()  # RestartPreventExitStatus=2
    assert unit_service()["RestartPreventExitStatus"] == ["2"]
    log = svc.log.read_text()
    assert "Traceback" not in log, log
    errors = [line for line in log.splitlines() if " ERROR " in line]
    assert len(errors) == 1, log
    assert ("link service not started: no raw ICMP socket (Operation not permitted): the link "
            "service needs CAP_NET_RAW") in errors[0]
    # It stopped before doing anything: no socket, no probe stored.
    assert not svc.cfg.link_socket.exists()
    conn = sqlite3.connect(f"file:{svc.cfg.db_path}?mode=ro", uri=True)
    try:
        assert conn.execute("SELECT COUNT(*) FROM link_probes").fetchone()[0] == 0
    finally:
        conn.close()


def test_the_unit_allows_the_socket_family_of_scapys_traceroute():
    """scapy's sr() sends and sniffs through a PF_PACKET socket (CAP_NET_RAW covers it):
    RestrictAddressFamilies without AF_PACKET would make every traceroute fail."""
    from scapy.config import conf
    from scapy.sendrecv import sr  # noqa: F401  (sets up conf.L3socket)

    families = " ".join(unit_service()["RestrictAddressFamilies"]).split()
    if "PF_PACKET" in (conf.L3socket.__doc__ or ""):
        assert "AF_PACKET" in families
    assert {"AF_INET", "AF_UNIX"} <= set(families)
