"""What every blueprint of the panel shares: the site config, the database, the door socket.

Kept apart from `appliance.web.__init__` so importing a blueprint never builds an app.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from typing import Any

from flask import current_app, g

from appliance import db, ipc
from appliance.config import Config
from appliance.web.i18n import translate

# Status requests are made while a page renders: a hung door service must not hang
# the panel for the ipc default of 5 s.
STATUS_TIMEOUT = 2.0
COMMAND_TIMEOUT = 5.0


def site_config() -> Config:
    return current_app.extensions["appliance_config"]


def get_db() -> sqlite3.Connection:
    """One connection per request, opened on first use and closed at teardown."""
    conn = g.get("_db")
    if conn is None:
        conn = g._db = db.connect(site_config().db_path)
    return conn


def close_db(_exc: BaseException | None = None) -> None:
    conn = g.pop("_db", None)
    if conn is not None:
        conn.close()


class DoorUnavailable(Exception):
    """The door service did not answer or refused; `message` is ready to show."""

    def __init__(self, message: str, *, unreachable: bool) -> None:
        super().__init__(message)
        self.message = message
        self.unreachable = unreachable


def door_call(cmd: str, *, timeout: float = COMMAND_TIMEOUT, **args: Any) -> dict[str, Any]:
    """Send a command to the door service, turning IpcError into a message for the admin."""
    try:
        return ipc.call(site_config().door_socket, cmd, timeout=timeout, **args)
    except ipc.IpcUnavailable:
        raise DoorUnavailable(translate("door.unreachable"), unreachable=True) from None
    except ipc.IpcError as exc:
        raise DoorUnavailable(
            translate("door.refused", detail=str(exc)[:200]), unreachable=False
        ) from None


def local_datetime(timestamp: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(timestamp, site_config().tz)


def clip(value: Any, limit: int = 4000) -> str:
    """Form text bounded before it is echoed back into a page."""
    return str(value or "")[:limit]
