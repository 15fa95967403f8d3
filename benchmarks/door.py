"""Door benchmark on emulated hardware; prints one JSON object as its last line.

tap_to_unlock_*: a card entering the field → the lock pin energized, through the
real door service loop (poll interval from the config, 50 ms by default), the
real mfrc522 register path, token read with the diversified key, the policy, the
durable access-log commit and the relay, with 10,000 members and 1,000,000
access-log rows in the database while the panel serves 20 requests/s.
idle_cpu_percent and door_service_rss_mb: `telecentre door` as its own process,
idle (no card) for 60 s, read from /proc.

    python benchmarks/door.py            # the full run (about 3 minutes)
    python benchmarks/door.py --quick    # a smoke run with small numbers
"""

from __future__ import annotations

import argparse
import http.cookiejar
import json
import os
import random
import re
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from appliance import config as config_mod  # noqa: E402
from appliance import db, members  # noqa: E402
from appliance.door import cards  # noqa: E402
from appliance.door.hardware import build_hardware  # noqa: E402
from appliance.door.service import DoorService, load_site_secret  # noqa: E402
from appliance.hardware.mfrc522_emulator import MifareClassic1K  # noqa: E402
from appliance.runtime import ensure_admin, init_state  # noqa: E402


def write_config(base: Path) -> config_mod.Config:
    text = config_mod.default_config_text()
    for old, new in (
        ('state_dir = "/var/lib/telecentre"', f'state_dir = "{base / "state"}"'),
        ('runtime_dir = "/run/telecentre"', f'runtime_dir = "{base / "run"}"'),
        ('backend = "pi"', 'backend = "emulated"'),
        ('listen = "0.0.0.0"', 'listen = "127.0.0.1"'),
        ("port = 8080", "port = 0"),
        ("door_port = 9101", "door_port = 0"),
        ("web_port = 9102", "web_port = 0"),
    ):
        text = text.replace(old, new, 1)
    path = base / "telecentre.toml"
    path.write_text(text)
    return config_mod.load(path)


def populate(cfg: config_mod.Config, n_members: int, n_events: int) -> None:
    """Bulk-load members with a badge each, and old access-log rows."""
    conn = db.open_db(cfg.db_path)
    conn.execute("PRAGMA synchronous = OFF")  # bulk load only; the service uses FULL
    now = time.time()
    rng = random.Random(1)
    plans = list(cfg.plans)
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO members (number, name, email, plan, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        ((f"B{i:06d}", f"Membre {i}", f"m{i}@example.org", plans[i % len(plans)], now, now)
         for i in range(n_members)),
    )
    conn.executemany(
        "INSERT INTO badges (member_id, uid_hash, ref, mode, token_hash, enrolled_at)"
        " VALUES (?, ?, ?, 'token', ?, ?)",
        ((i + 1, secrets.token_hex(32), f"X{i:06d}", secrets.token_hex(32), now)
         for i in range(n_members)),
    )
    reasons = ["granted_schedule", "granted_always", "denied_outside_schedule",
               "denied_unknown_card"]
    conn.executemany(
        "INSERT INTO access_events (at, kind, result, reason, badge_ref, member_id,"
        " member_name) VALUES (?, 'badge', ?, ?, ?, ?, ?)",
        ((now - 89 * 86400 * (1 - i / n_events), "granted" if i % 4 < 2 else "denied",
          reasons[i % 4], f"X{i % n_members:06d}", i % n_members + 1,
          f"Membre {i % n_members}") for i in range(n_events)),
    )
    conn.execute("COMMIT")
    conn.close()
    del rng


def enroll_cards(service: DoorService, n: int) -> list[MifareClassic1K]:
    """Real token enrollment through the reader (before the loop starts)."""
    out = []
    reader = service.hw.reader
    for i in range(n):
        uid = bytes([0x04, 0x10, i, 0x5A, 0x11, 0x22, i ^ 0x33])
        card = MifareClassic1K(uid)
        service.hw.chip.present(card)
        read = None
        for _ in range(5):
            read = reader.poll()
            if read:
                break
        assert read is not None, "enrollment card not read"
        token = secrets.token_bytes(16)
        assert cards.write_token(reader, read, service.secret, token)
        reader.release()
        service.hw.chip.remove(card)
        for _ in range(2):
            reader.poll()
        members.insert_badge(
            service.conn, member_id=i + 1, uid_h=members.uid_hash(service.secret, uid),
            mode="token", token_h=members.token_hash(token), by="bench")
        service.conn.execute("UPDATE members SET plan = 'resident' WHERE id = ?", (i + 1,))
        out.append(card)
    return out


class PanelLoad(threading.Thread):
    """A logged-in admin's browser hammering the panel at `rate` requests/s."""

    def __init__(self, base_url: str, user: str, password: str, rate: float) -> None:
        super().__init__(daemon=True)
        self.base = base_url
        self.rate = rate
        self.stop = threading.Event()
        self.ok = 0
        self.failed = 0
        jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        page = self.opener.open(self.base + "login", timeout=10).read().decode()
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        data = urllib.parse.urlencode(
            {"csrf_token": token, "username": user, "password": password}).encode()
        landed = self.opener.open(self.base + "login", data=data, timeout=10).geturl()
        if "login" in landed:
            raise RuntimeError("benchmark could not log in to the panel")

    def run(self) -> None:
        paths = ["", "api/status", "api/events?after=0", "log", "members?q=Membre%2012"]
        i = 0
        next_at = time.monotonic()
        while not self.stop.is_set():
            try:
                self.opener.open(self.base + paths[i % len(paths)], timeout=10).read()
                self.ok += 1
            except Exception:  # noqa: BLE001 - counted, reported
                self.failed += 1
            i += 1
            next_at += 1 / self.rate
            self.stop.wait(max(0.0, next_at - time.monotonic()))


def measure_taps(service: DoorService, card_list: list, taps: int) -> list[float]:
    """Card enters the field → lock pin energized, in milliseconds."""
    lock_pin = service.hw.pin(service.config.pins.lock)
    contact = service.hw.pin(service.config.pins.door_contact)
    rng = random.Random(7)
    samples = []
    for i in range(taps):
        card = card_list[i % len(card_list)]
        # Land at a random phase of the poll cycle, like a real hand.
        time.sleep(rng.uniform(0.0, service.config.reader.poll_interval))
        t0 = time.perf_counter()
        service.hw.chip.present(card)
        deadline = t0 + 2.0
        while not lock_pin.state:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"tap {i}: the lock did not open within 2 s")
            time.sleep(0.0002)
        samples.append((time.perf_counter() - t0) * 1000)
        # The member walks in: the door opens and closes, and the lock relocks.
        contact.drive_high()
        time.sleep(0.01)
        contact.drive_low()
        service.hw.chip.remove(card)
        deadline = time.perf_counter() + 2.0
        while lock_pin.state and time.perf_counter() < deadline:
            time.sleep(0.001)
        time.sleep(2.5 * service.config.reader.poll_interval)  # the reader sees it leave
    return samples


def idle_transfers(service: DoorService, seconds: float) -> float:
    chip = service.hw.chip
    loops0, transfers0 = service.loops, chip.spi_transfers
    time.sleep(seconds)
    return (chip.spi_transfers - transfers0) / max(1, service.loops - loops0)


def door_process_idle(cfg_path: Path, seconds: float) -> tuple[float, float]:
    """(CPU % of one core, RSS in MB) of `telecentre door`, idle for `seconds`."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "appliance", "--config", str(cfg_path), "door"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        cwd=ROOT,
    )
    try:
        cfg = config_mod.load(cfg_path)
        deadline = time.monotonic() + 20
        while not cfg.door_socket.exists():
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the door service did not start")
            time.sleep(0.05)
        time.sleep(2)  # warm-up
        tick = os.sysconf("SC_CLK_TCK")

        def cpu() -> float:
            fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / tick

        c0, t0 = cpu(), time.monotonic()
        time.sleep(seconds)
        c1, t1 = cpu(), time.monotonic()
        status = Path(f"/proc/{proc.pid}/status").read_text()
        rss_kb = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
        return 100 * (c1 - c0) / (t1 - t0), rss_kb / 1024
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small numbers: a smoke run")
    args = parser.parse_args()
    n_members, n_events, taps, idle_s, rate = (
        (200, 5000, 20, 3.0, 20.0) if args.quick else (10_000, 1_000_000, 200, 60.0, 20.0)
    )
    from appliance.web.server import make_server

    with tempfile.TemporaryDirectory(prefix="door-bench-") as tmp:
        base = Path(tmp)
        cfg = write_config(base)
        init_state(cfg)
        t = time.monotonic()
        populate(cfg, n_members, n_events)
        print(f"loaded {n_members} members, {n_events} access events in "
              f"{time.monotonic() - t:.1f} s", file=sys.stderr)
        password = ensure_admin(cfg, "bench", None)
        service = DoorService(cfg, build_hardware(cfg), site_secret=load_site_secret(
            cfg.secret_path))
        service.hw.reader.open()
        card_list = enroll_cards(service, 20)
        service.start()
        web = make_server(cfg, "127.0.0.1", 0)
        threading.Thread(target=web.run, daemon=True).start()
        load = PanelLoad(f"http://127.0.0.1:{web.bound_port}/", "bench", password, rate)
        load.start()
        try:
            transfers = idle_transfers(service, 2.0 if args.quick else 5.0)
            t_load = time.monotonic()
            ok0 = load.ok
            samples = measure_taps(service, card_list, taps)
            served_rate = (load.ok - ok0) / (time.monotonic() - t_load)
        finally:
            load.stop.set()
            load.join(timeout=10)
            web.close()
            service.stop()
        cpu, rss = door_process_idle(cfg.path, idle_s)

    samples.sort()
    result = {
        "tap_to_unlock_p50_ms": round(statistics.median(samples), 1),
        "tap_to_unlock_p99_ms": round(samples[min(len(samples) - 1,
                                                  int(0.99 * len(samples)))], 1),
        "tap_to_unlock_max_ms": round(samples[-1], 1),
        "taps": len(samples),
        "poll_interval_ms": cfg.reader.poll_interval * 1000,
        "members": n_members,
        "access_log_rows": n_events,
        "panel_requests_per_s": round(served_rate, 1),
        "panel_request_errors": load.failed,
        "spi_transfers_per_idle_poll": round(transfers, 2),
        "idle_cpu_percent": round(cpu, 2),
        "door_service_rss_mb": round(rss, 1),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
