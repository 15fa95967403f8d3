"""Fixtures for the panel: a real SQLite file, a real UNIX-socket stand-in for the door."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from appliance import admins, db
from appliance.config import Config, DoorConfig
from appliance.door.policy import Closure, Plan, Window
from appliance.ipc import CommandServer
from appliance.web import create_app

from .fake_gateway import PortalGateway

ADMIN = ("alice", "correct-horse-battery")
STAFF = ("bob", "staff-password-123")

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


class FakeDoor:
    """The door service's socket protocol, recording every command it receives."""

    def __init__(self, path: Path) -> None:
        self.commands: list[dict[str, Any]] = []
        self.status: dict[str, Any] = {
            "ok": True, "state": "locked", "locked": True, "open": False, "alarms": [],
            "reader_up": True, "card_mode": "token", "emulated": True,
            "enrollment": None, "last_enrolled": None,
        }
        self._lock = threading.Lock()
        handlers = {
            name: self._recorder(name)
            for name in ("status", "unlock", "enroll", "enroll_cancel", "emulate")
        }
        self.server = CommandServer(path, handlers)

    def _recorder(self, name: str):
        def handle(request: dict[str, Any]) -> dict[str, Any]:
            with self._lock:
                self.commands.append(dict(request))
                if name == "status":
                    return dict(self.status)
                if name == "enroll":
                    self.status["enrollment"] = {
                        "member_id": request["member_id"], "member_name": "?",
                        "expires_in": 60.0,
                    }
                    return {"ok": True, "expires_in": 60}
                if name == "enroll_cancel":
                    self.status["enrollment"] = None
                return {"ok": True}

        return handle

    def bind(self, member_id: int, badge_ref: str) -> None:
        """What the door does when the awaited card is tapped."""
        with self._lock:
            self.status["enrollment"] = None
            self.status["last_enrolled"] = {
                "member_id": member_id, "badge_ref": badge_ref, "at": time.time(),
            }

    def sent(self, cmd: str) -> list[dict[str, Any]]:
        return [c for c in self.commands if c["cmd"] == cmd]


@pytest.fixture
def runtime_dir() -> Iterator[Path]:
    # UNIX socket paths are limited to ~108 bytes; pytest's tmp_path can be longer.
    path = Path(tempfile.mkdtemp(prefix="tc-web-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def config(tmp_path: Path, runtime_dir: Path) -> Config:
    plans = {
        "coworking": Plan("coworking", "Coworking (jours ouvrés)",
                          (Window.parse("mon-fri 08:00-20:00"),)),
        "weekend": Plan("weekend", "Semaine et samedi matin",
                        (Window.parse("mon-fri 08:00-20:00"), Window.parse("sat 09:00-13:00"))),
        "night": Plan("night", "Nuit", (Window.parse("fri 22:00-02:00"),)),
        "resident": Plan("resident", "Résident 24 h/24", (), always=True),
    }
    closures = (Closure(dt.date(2026, 12, 24), dt.date(2026, 12, 26), "Noël"),)
    return Config(
        path=Path("/etc/telecentre/telecentre.toml"),
        state_dir=tmp_path / "state",
        runtime_dir=runtime_dir,
        backend="emulated",
        plans=plans,
        closures=closures,
    )


def serving(fake: Any) -> Iterator[Any]:
    """A fixture's body for a stand-in service: its socket served while the test runs."""
    fake.server.start()
    try:
        yield fake
    finally:
        fake.server.stop()


@pytest.fixture
def gateway(config: Config) -> Iterator[PortalGateway]:
    """The gateway's portal commands at its socket (test_wifi.py has the panel's own)."""
    yield from serving(PortalGateway(config.gateway_socket))


@pytest.fixture
def door(config: Config) -> Iterator[FakeDoor]:
    yield from serving(FakeDoor(config.door_socket))


@pytest.fixture
def conn(config: Config):
    config.state_dir.mkdir(parents=True, exist_ok=True)
    connection = db.open_db(config.db_path)
    admins.create_admin(connection, *ADMIN, role="admin")
    admins.create_admin(connection, *STAFF, role="staff")
    yield connection
    connection.close()


def make_app(config: Config) -> Flask:
    app = create_app(config, secret_key=b"k" * 32)
    app.testing = True
    return app


@pytest.fixture
def app(config: Config, conn) -> Flask:
    return make_app(config)


@pytest.fixture
def uid_only_app(config: Config, conn) -> Flask:
    return make_app(replace(config, door=DoorConfig(card_mode="uid-only")))


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def csrf_token(client: FlaskClient, path: str = "/login") -> str:
    html = client.get(path).get_data(as_text=True)
    match = CSRF_RE.search(html)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def login(client: FlaskClient, user: tuple[str, str] = ADMIN, **environ: Any):
    token = csrf_token(client)
    return client.post(
        "/login",
        data={"username": user[0], "password": user[1], "csrf_token": token},
        environ_base=environ,
    )


def post(client: FlaskClient, path: str, data: dict[str, Any] | None = None, **kw: Any):
    """A form POST with the CSRF token the panel's pages carry."""
    token = csrf_token(client, kw.pop("token_from", "/"))
    return client.post(path, data={**(data or {}), "csrf_token": token}, **kw)


@pytest.fixture
def admin_client(client: FlaskClient) -> FlaskClient:
    assert login(client).status_code == 302
    return client


@pytest.fixture
def staff_client(app: Flask) -> FlaskClient:
    c = app.test_client()
    assert login(c, STAFF).status_code == 302
    return c
