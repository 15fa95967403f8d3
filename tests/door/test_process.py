"""The door service as a separate process, driven by the CLI the way an admin would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from appliance import config as config_mod
from appliance.hardware import board
from tests.conftest import write_site_config


def cli(cfg_path: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "appliance", "--config", str(cfg_path), *args],
        input=stdin, capture_output=True, text=True, timeout=60,
    )


def wait_for(predicate, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def lock_level(cfg) -> bool | None:
    try:
        return board.read_state(cfg.board_path)["pins"]["lock"]["level"]
    except (FileNotFoundError, KeyError, ValueError):
        return None


@pytest.fixture
def door_process(tmp_path):
    """`telecentre init` then `telecentre door` in its own session; killed by PID after."""
    cfg_path = write_site_config(tmp_path)
    result = cli(cfg_path, "init", "--generate-password")
    assert result.returncode == 0, result.stderr
    cfg = config_mod.load(cfg_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "appliance", "--config", str(cfg_path), "door"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        wait_for(lambda: cfg.door_socket.exists() or proc.poll() is not None, what="socket")
        assert proc.poll() is None, proc.stdout.read()
        yield cfg_path, cfg, proc
    finally:
        for sig in (signal.SIGKILL,):
            try:
                os.killpg(proc.pid, sig)  # the service and its guardian
            except ProcessLookupError:
                pass
        proc.wait(timeout=10)


def test_init_writes_config_state_and_a_one_time_password(tmp_path):
    cfg_path = tmp_path / "etc" / "telecentre.toml"
    result = subprocess.run(
        [sys.executable, "-m", "appliance", "--config", str(cfg_path), "init",
         "--state-dir", str(tmp_path / "state"), "--runtime-dir", str(tmp_path / "run"),
         "--emulated", "--generate-password"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "shown once" in result.stdout
    password = result.stdout.split("shown once:")[1].split()[0]
    cfg = config_mod.load(cfg_path)
    assert cfg.backend == "emulated" and cfg.state_dir == tmp_path / "state"
    assert cfg.db_path.exists()
    assert oct(cfg.secret_path.stat().st_mode & 0o777) == "0o600"
    from appliance import admins, db
    conn = db.open_db(cfg.db_path)
    assert admins.authenticate(conn, "admin", password) is not None
    # Running it again keeps everything and prints no password.
    again = cli(cfg_path, "init")
    assert again.returncode == 0 and "exists, kept" in again.stdout
    assert "shown once" not in again.stdout
    assert "--generate-password" not in again.stdout


def test_config_typo_gives_a_clear_error(tmp_path):
    cfg_path = write_site_config(tmp_path)
    cfg_path.write_text(cfg_path.read_text().replace("unlock_seconds = 5", "unlock_seconds = 5s"))
    result = cli(cfg_path, "check-config")
    assert result.returncode == 2
    assert str(cfg_path) in result.stderr and "not valid TOML" in result.stderr
    cfg_path.write_text(cfg_path.read_text().replace("unlock_seconds = 5s", "unlock_seconds = -5"))
    result = cli(cfg_path, "door")
    assert result.returncode == 2
    assert "'door.unlock_seconds'" in result.stderr and "-5" in result.stderr


def test_members_cli_and_emulated_taps(door_process):
    cfg_path, cfg, _proc = door_process
    result = cli(cfg_path, "members", "add", "Jeanne Dupont", "--plan", "resident",
                 "--email", "jeanne@example.org")
    assert result.returncode == 0, result.stderr
    bad = cli(cfg_path, "members", "add", "X", "--plan", "gold")
    assert bad.returncode == 2 and "plan: Unknown plan" in bad.stderr
    listing = cli(cfg_path, "members", "list").stdout
    assert "Jeanne Dupont" in listing and "resident" in listing
    from appliance import db, ipc
    enrolling = subprocess.Popen(
        [sys.executable, "-m", "appliance", "--config", str(cfg_path), "members", "enroll",
         "M0001"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_for(lambda: ipc.call(cfg.door_socket, "status")["enrollment"], what="enrollment")
        assert cli(cfg_path, "emulate", "tap", "04A1B2C3D4E5F6").returncode == 0
        out, err = enrolling.communicate(timeout=20)
    finally:
        if enrolling.poll() is None:
            enrolling.kill()
    assert enrolling.returncode == 0, err
    assert "Badge B00001 enrolled." in out
    assert "B00001" in cli(cfg_path, "members", "badges", "M0001").stdout
    time.sleep(0.8)  # the card leaves the field
    assert cli(cfg_path, "emulate", "tap", "04A1B2C3D4E5F6").returncode == 0
    wait_for(lambda: lock_level(cfg) is True, what="relay energized")
    conn = db.connect(cfg.db_path, readonly=True)
    reasons = [r[0] for r in conn.execute("SELECT reason FROM access_events ORDER BY id")]
    assert reasons[-1] == "granted_always"
    bad_uid = cli(cfg_path, "emulate", "tap", "04A1B2;rm -rf /")
    assert bad_uid.returncode == 1 and "not hexadecimal" in bad_uid.stderr
    status = cli(cfg_path, "emulate", "status").stdout
    assert "lock" in status and "GPIO17" in status
    log = cli(cfg_path, "log").stdout
    assert "granted_always" in log and "Jeanne Dupont" in log
    backup = cfg.state_dir.parent / "backup.db"
    assert cli(cfg_path, "backup", str(backup)).returncode == 0
    copy = db.connect(backup, readonly=True)
    assert copy.execute("SELECT COUNT(*) FROM access_events").fetchone()[0] == len(reasons)
    assert cli(cfg_path, "backup", str(backup)).returncode == 1  # no silent overwrite


def test_killing_the_door_service_while_unlocked_leaves_the_lock_locked(door_process):
    cfg_path, cfg, proc = door_process
    locked = False  # fail-secure, relay active-high: locked = relay off = pin low
    assert lock_level(cfg) is locked
    assert cli(cfg_path, "unlock", "--actor", "test").returncode == 0
    assert lock_level(cfg) is (not locked)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    wait_for(lambda: lock_level(cfg) is locked, timeout=3, what="the guardian to relock")
    assert board.read_state(cfg.board_path).get("by") == "guardian"
    # The decision that opened the door was committed before the lock moved.
    from appliance import db
    conn = db.connect(cfg.db_path, readonly=True)
    assert conn.execute("SELECT reason, actor FROM access_events").fetchall()[-1][:] == (
        "granted_remote", "test")


def test_stopping_the_door_service_while_unlocked_relocks(door_process):
    cfg_path, cfg, proc = door_process
    assert cli(cfg_path, "unlock", "--actor", "test").returncode == 0
    assert lock_level(cfg) is True
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    assert lock_level(cfg) is False
    assert board.read_state(cfg.board_path).get("by") != "guardian"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to change owners")
def test_admin_commands_run_as_root_keep_the_state_owned_by_the_service_user():
    import shutil
    import tempfile

    # Not tmp_path: its parents are root-only (0700), unlike /var/lib on a Pi.
    base = Path(tempfile.mkdtemp(prefix="telecentre-owner-"))
    try:
        base.chmod(0o755)
        cfg_path = write_site_config(base)
        assert cli(cfg_path, "init", "--generate-password").returncode == 0
        cfg = config_mod.load(cfg_path)
        nobody = 65534
        for path in [cfg.state_dir, *cfg.state_dir.iterdir()]:
            os.chown(path, nobody, nobody)
        for leftover in cfg.state_dir.glob("*.db-*"):
            leftover.unlink()
        probe = subprocess.run(
            [sys.executable, "-c",
             "import os, sys; from appliance import config; from appliance.cli import "
             "_as_state_owner; _as_state_owner(config.load(sys.argv[1])); "
             "print(os.geteuid(), os.getegid(), os.getgroups())", str(cfg_path)],
            capture_output=True, text=True, timeout=30,
        )
        assert probe.stdout.split(maxsplit=2) == [str(nobody), str(nobody), "[]\n"], probe
        result = cli(cfg_path, "members", "add", "Jeanne", "--plan", "resident")
        assert result.returncode == 0, result.stderr
        owners = {p.name: p.stat().st_uid for p in cfg.state_dir.iterdir()}
        assert set(owners.values()) == {nobody}, owners
    finally:
        shutil.rmtree(base, ignore_errors=True)
