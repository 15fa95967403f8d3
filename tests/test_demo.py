"""`telecentre demo` as a user runs it: it prints the panel's address and a login that works."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request


def test_demo_command_prints_a_working_panel_address_and_stops_cleanly(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "appliance", "demo", "--dir", str(tmp_path / "demo"),
         "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Ctrl-C" in line:
                break
        text = "".join(lines)
        url = re.search(r"(http://127\.0\.0\.1:\d+/)\s", text).group(1)
        password = re.search(r"Mot de passe / pass:\s+(\S+)", text).group(1)
        assert len(password) >= 16
        page = urllib.request.urlopen(url + "login", timeout=10).read().decode()
        assert "csrf_token" in page
        metrics = re.search(r"(http://127\.0\.0\.1:\d+/metrics)", text).group(1)
        assert "telecentre_door_locked 1.0" in urllib.request.urlopen(metrics, timeout=10).read(
        ).decode()
        emulate = subprocess.run(
            [sys.executable, "-m", "appliance", "--config",
             str(tmp_path / "demo" / "telecentre.toml"), "emulate", "status"],
            capture_output=True, text=True, timeout=30,
        )
        assert emulate.returncode == 0 and "lock" in emulate.stdout
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
