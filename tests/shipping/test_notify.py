"""What the units rely on from the services: `Type=notify` readiness, watchdog pings only
while healthy, and `telecentre door --relock` (ExecStopPost=), run as systemd would."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from appliance import config as config_mod
from appliance.hardware import board
from appliance.watchdog import Watchdog, watchdog_interval
from tests.conftest import write_site_config
from tests.shipping.units import SYSTEMD_DIR, parse_unit


@pytest.fixture
def notify_socket(tmp_path):
    """A datagram socket standing in for systemd's $NOTIFY_SOCKET."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.2)
    yield path, sock
    sock.close()


def collect(sock: socket.socket, until: set[str], timeout: float = 20.0) -> list[str]:
    messages: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not until <= set(messages):
        try:
            messages.append(sock.recv(4096).decode())
        except TimeoutError:
            pass
    return messages


# Runs `python -m appliance ARGS` with only the socket families the unit allows, as
# systemd's RestrictAddressFamilies= does (EAFNOSUPPORT): a module that opens a netlink
# socket at import (scapy does) would stop the door or the panel at start on the appliance.
RESTRICTED = """
import errno, runpy, socket, sys
allowed = {getattr(socket, name) for name in sys.argv.pop(1).split()}
class Restricted(socket.socket):
    def __init__(self, family=-1, type=-1, proto=-1, fileno=None):
        if fileno is None and (socket.AF_INET if family == -1 else family) not in allowed:
            raise OSError(errno.EAFNOSUPPORT, "Address family not supported by protocol")
        super().__init__(family, type, proto, fileno)
socket.socket = Restricted
sys.argv[0] = "appliance"
runpy.run_module("appliance", run_name="__main__", alter_sys=True)
"""


def appliance_argv(unit_name: str, *args: str) -> list[str]:
    """`python -m appliance ARGS` under the unit's RestrictAddressFamilies=."""
    unit = parse_unit((SYSTEMD_DIR / unit_name).read_text())
    families = " ".join(unit["Service"]["RestrictAddressFamilies"])
    assert families, unit_name
    return [sys.executable, "-c", RESTRICTED, families, *args]


def start(cfg_path: Path, command: str, notify_path: Path, **env: str) -> subprocess.Popen:
    environ = {**os.environ, "NOTIFY_SOCKET": str(notify_path), **env}
    return subprocess.Popen(
        appliance_argv(f"telecentre-{command}.service", "--config", str(cfg_path), command),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environ,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


def init(tmp_path: Path, **door) -> Path:
    cfg_path = write_site_config(tmp_path, **door)
    result = subprocess.run(
        [sys.executable, "-m", "appliance", "--config", str(cfg_path), "init",
         "--generate-password"], capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return cfg_path


def test_the_door_says_ready_then_pings_the_watchdog(tmp_path, notify_socket):
    path, sock = notify_socket
    proc = start(init(tmp_path), "door", path, WATCHDOG_USEC="2000000")
    try:
        messages = collect(sock, {"READY=1", "WATCHDOG=1"})
        assert "READY=1" in messages and "WATCHDOG=1" in messages, proc.poll()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        stop(proc)


def test_the_panel_says_ready_then_pings_while_it_answers(tmp_path, notify_socket):
    path, sock = notify_socket
    cfg_path = init(tmp_path)
    text = cfg_path.read_text().replace('listen = "0.0.0.0"', 'listen = "127.0.0.1"')
    cfg_path.write_text(text.replace("port = 8080", "port = 0"))
    proc = start(cfg_path, "web", path, WATCHDOG_USEC="1000000")
    try:
        messages = collect(sock, {"READY=1", "WATCHDOG=1"})
        assert "READY=1" in messages and "WATCHDOG=1" in messages, proc.poll()
        assert messages.index("READY=1") < messages.index("WATCHDOG=1")
    finally:
        stop(proc)


@pytest.mark.parametrize(
    ("door", "locked_level"),
    [({}, False), ({"lock_mode": "fail-safe"}, True), ({"relay_active_high": False}, True)],
    ids=["fail-secure", "fail-safe", "active-low-relay"],
)
def test_relock_drives_the_lock_pin_to_its_locked_level(tmp_path, door, locked_level):
    cfg_path = init(tmp_path, **door)
    cfg = config_mod.load(cfg_path)
    board.force_level(cfg.board_path, "lock", not locked_level, by="test")  # left unlocked
    result = subprocess.run(
        appliance_argv("telecentre-door.service", "--config", str(cfg_path), "door", "--relock"),
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    state = board.read_state(cfg.board_path)
    assert state["pins"]["lock"]["level"] is locked_level
    assert state["by"] == "relock"


def test_relock_with_a_broken_config_says_so(tmp_path):
    cfg_path = tmp_path / "telecentre.toml"
    cfg_path.write_text("[hardware]\nbackend = 3\n")
    result = subprocess.run(
        [sys.executable, "-m", "appliance", "--config", str(cfg_path), "door", "--relock"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2 and "hardware.backend" in result.stderr


def test_watchdog_interval_is_half_of_what_systemd_asks():
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}, pid=1) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "7"}, pid=7) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "7"}, pid=8) is None
    assert watchdog_interval({}, pid=1) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}, pid=1) is None


def test_the_watchdog_pings_only_while_the_probe_passes():
    sent: list[str] = []
    healthy = [True]
    dog = Watchdog(lambda: healthy[0], 60, notify=sent.append)
    assert dog.check() and sent == ["WATCHDOG=1"]
    healthy[0] = False
    assert not dog.check() and sent == ["WATCHDOG=1"] and dog.failures == 1

    def broken() -> bool:
        raise OSError("boom")

    assert not Watchdog(broken, 60, notify=sent.append).check()
    assert sent == ["WATCHDOG=1"]


def test_the_address_family_restriction_catches_a_netlink_socket_at_import(tmp_path):
    """Control: under the door's families, importing scapy (netlink at import) fails, as it
    did on the appliance before the probes imported it lazily."""
    script = tmp_path / "imports_scapy.py"
    script.write_text("import scapy.layers.inet\n")
    argv = appliance_argv("telecentre-door.service")
    argv[2] = argv[2].replace('runpy.run_module("appliance", run_name="__main__", alter_sys=True)',
                              f"runpy.run_path({str(script)!r})")
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "Address family not supported" in result.stderr
