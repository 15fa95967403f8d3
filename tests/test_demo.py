"""`telecentre demo` as a user runs it: it prints the panel's address and a login that works,
and the line monitor runs on the emulated line: a test started from the terminal completes
and the panel's Line page shows it; a fault broken from the terminal is localized there."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
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

        link_metrics = re.search(r"Ligne / line metrics:\s+(http://127\.0\.0\.1:\d+/metrics)",
                                 text).group(1)
        body = urllib.request.urlopen(link_metrics, timeout=10).read().decode()
        assert 'telecentre_link_up{layer="access"} 1.0' in body
        config = str(tmp_path / "demo" / "telecentre.toml")
        test = subprocess.run(
            [sys.executable, "-m", "appliance", "--config", config, "link", "test", "--yes"],
            capture_output=True, text=True, timeout=60,
        )
        assert test.returncode == 0, test.stderr
        down = re.search(r"download (\d+\.\d) Mbit/s \((\d+)% of contract\)", test.stdout)
        assert down and 90 <= int(down.group(2)) <= 95, test.stdout
        assert "via emulated 30/1 Mbit/s line" in test.stdout

        panel = _login(url, password)
        page = panel.open(url + "line", timeout=10).read().decode()
        assert "La ligne fonctionne" in page
        assert f"{down.group(1)} Mbit/s en réception" in page  # the test just run
        broken = subprocess.run(
            [sys.executable, "-m", "appliance", "--config", config, "link", "emulate", "break",
             "access"], capture_output=True, text=True, timeout=30,
        )
        assert broken.returncode == 0, broken.stderr
        deadline = time.monotonic() + 20  # 3 failed rounds at the demo's 2 s
        while time.monotonic() < deadline:
            state = json.loads(panel.open(url + "api/line", timeout=10).read())
            if state.get("cause") == "access":
                break
            time.sleep(0.5)
        assert state["cause"] == "access" and state["up"] is False
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _login(url: str, password: str) -> urllib.request.OpenerDirector:
    """A browser-like session logged in to the panel as the demo's admin."""
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    page = opener.open(url + "login", timeout=10).read().decode()
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    form = urllib.parse.urlencode(
        {"csrf_token": token, "username": "admin", "password": password}).encode()
    opener.open(url + "login", data=form, timeout=10)
    return opener
