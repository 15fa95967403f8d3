"""`telecentre demo` as a user runs it: it prints the panel's address and a login that works,
and the line monitor runs on the emulated line: a test started from the terminal completes
and the panel's Line page shows it; a fault broken from the terminal is localized there.
The Wi-Fi gateway runs dry-run with its captive portal: the test's own requests are the
emulated "this browser" device, which logs in as a guest and appears on the Wi-Fi page
with usage that grows, and the gateway's metrics count devices and bytes by class."""

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

        _wifi(text, config, url, panel)
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


def _usage_mb(page: str, ip: str) -> float | None:
    """The used megabytes on the Wi-Fi page's row of the device at `ip`."""
    row = next((r for r in page.split("<tr") if f"<code>{ip}</code>" in r), None)
    if row is None:
        return None
    used = re.search(r"(\d+(?:,\d)?) Mo sur", row)
    return float(used.group(1).replace(",", ".")) if used else None


def _wifi(text: str, config: str, url: str, panel: urllib.request.OpenerDirector) -> None:
    portal = re.search(r"Portail captif / captive portal:\s+(http://127\.0\.0\.1:\d+/)",
                       text).group(1)
    assert "camille.martin@example.org, PIN 246813" in text
    gateway_metrics = re.search(r"Passerelle / gateway metrics:\s+(http://\S+/metrics)",
                                text).group(1)
    page = urllib.request.urlopen(portal, timeout=10).read().decode()
    assert "Bienvenue" in page and 'lang="fr"' in page
    token = re.search(r'name="token" value="([^"]+)"', page).group(1)
    # The RFC 8908 API says captive before the login.
    api = json.loads(urllib.request.urlopen(portal + "api/captive", timeout=10).read())
    assert api["captive"] is True
    form = urllib.parse.urlencode({"token": token, "accept": "yes"}).encode()
    status = urllib.request.urlopen(portal + "guest", data=form, timeout=10).read().decode()
    assert "Vous êtes connecté" in status
    api = json.loads(urllib.request.urlopen(portal + "api/captive", timeout=10).read())
    assert api["captive"] is False and api["bytes-remaining"] <= 200_000_000

    browser = "10.42.0.10"  # the first DHCP address: "this browser" in dry-run
    emulate = subprocess.run(
        [sys.executable, "-m", "appliance", "--config", config, "gateway", "emulate",
         "download", "browser", "50"], capture_output=True, text=True, timeout=30,
    )
    assert emulate.returncode == 0, emulate.stderr
    assert re.search(r"browser\s+10\.42\.0\.10\s+guest #\d+", emulate.stdout)
    seen = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        page = panel.open(url + "wifi", timeout=10).read().decode()
        used = _usage_mb(page, browser)
        if used is not None and (not seen or used != seen[-1]):
            seen.append(used)
        grown = [x for x in seen if x > 0]
        if len(grown) >= 2 and grown[-1] > grown[0]:
            break
        time.sleep(1)
    assert len(grown) >= 2 and grown[-1] > grown[0], seen  # saved every 5 s in the demo
    # Its current rate, from its own counters in the dry-run ruleset (50 MB at 5 Mbit/s).
    row = next(r for r in page.split("<tr") if f"<code>{browser}</code>" in r)
    rate = re.search(r"↓ (\d+\.\d) Mbit/s", row)
    assert rate and float(rate.group(1)) > 0, row
    assert "Invité" in page and "Membre" in page  # the emulated members' devices too

    body = urllib.request.urlopen(gateway_metrics, timeout=10).read().decode()
    devices = {c: float(n) for c, n in re.findall(
        r'^telecentre_wifi_devices\{class="(\w+)"\} (\S+)$', body, re.M)}
    assert devices["guest"] >= 3 and devices["member"] >= 2 and devices["voucher"] >= 1
    down = {c: float(n) for c, n in re.findall(
        r'^telecentre_wifi_bytes_total\{class="(\w+)",direction="down"\} (\S+)$', body, re.M)}
    assert all(down[c] > 0 for c in ("guest", "member", "voucher")), down
    assert browser not in body and "02:" not in body
