"""Starting services: logging, metrics endpoints, state set-up, signal handling."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry, start_http_server

from appliance import admins, db
from appliance.config import Config

log = logging.getLogger(__name__)


def setup_logging(level: str = "INFO") -> None:
    """Plain lines on stderr: journald adds the time and the unit."""
    fmt = "%(levelname)s %(name)s: %(message)s"
    if not os.environ.get("JOURNAL_STREAM"):
        fmt = "%(asctime)s " + fmt
    logging.basicConfig(level=level, format=fmt)


def serve_metrics(registry: CollectorRegistry, host: str, port: int):
    """Serve a registry on a loopback port; returns the server (its port may be 0 → chosen)."""
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server


def init_state(config: Config) -> bool:
    """Create the state directory, the database and the site secret; True if the DB is new."""
    from appliance.door.service import create_site_secret

    config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
    new = not config.db_path.exists()
    conn = db.open_db(config.db_path)
    conn.close()
    if not config.secret_path.exists():
        create_site_secret(config.secret_path)
    return new


def ensure_admin(config: Config, username: str, password: str | None) -> str | None:
    """Create the admin if missing; returns the generated password, if one was made."""
    conn = db.open_db(config.db_path)
    try:
        exists = conn.execute("SELECT 1 FROM admins WHERE username = ?", (username,)).fetchone()
        generated = None
        if password is None:
            password = generated = admins.generate_password()
        if exists:
            admins.set_password(conn, username, password)
        else:
            admins.create_admin(conn, username, password, language=config.language)
        return generated
    finally:
        conn.close()


def catch_stop_signals() -> Callable[[], int]:
    """Catch SIGTERM and SIGINT from now on; returns a function that blocks until one has
    come and returns its number. Call it before telling systemd READY=1: a stop that
    arrives right after must find the handler in place, not kill the process outright."""
    got: list[int] = []
    done = threading.Event()

    def handler(signum, _frame):
        got.append(signum)
        done.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)

    def wait() -> int:
        while not done.wait(1.0):
            pass
        return got[0]

    return wait


def serve_until_stopped(status: str, *stops: Callable[[], object]) -> int:
    """A service's main thread once it is running: tell systemd READY=1 and `status`,
    wait for SIGTERM or SIGINT, tell STOPPING=1, then call `stops` in order. Returns 0.

    The signal handler is in place before READY=1: a stop right after must not kill the
    process mid-way."""
    from appliance.sdnotify import notify

    wait_for_stop = catch_stop_signals()
    notify("READY=1")
    notify(f"STATUS={status}")
    try:
        signum = wait_for_stop()
        log.info("stopping on %s", signal.Signals(signum).name)
    finally:
        notify("STOPPING=1")
        for stop in stops:
            stop()
    return 0


def wait_for_signal() -> int:
    """Block until SIGTERM or SIGINT; returns the signal number."""
    return catch_stop_signals()()


def write_text_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
