"""What every blueprint of the panel shares: the site config, the database, the door socket.

Kept apart from `appliance.web.__init__` so importing a blueprint never builds an app.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from flask import Response, current_app, g, stream_with_context

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


def csv_download(
    export: Callable[[sqlite3.Connection], Iterator[str]], filename: str
) -> Response:
    """A CSV file streamed from the database, named `filename`-YYYYmmdd-HHMM.csv in the
    site's time. `export(conn)` yields its lines; it gets its own connection, since the
    response outlives the request's. A BOM first, so a spreadsheet opened by double-click
    reads the accents right."""
    config = site_config()

    def generate() -> Iterator[str]:
        conn = db.connect(config.db_path)
        try:
            yield "\ufeff"
            yield from export(conn)
        finally:
            conn.close()

    stamp = dt.datetime.fromtimestamp(time.time(), config.tz).strftime("%Y%m%d-%H%M")
    return Response(
        stream_with_context(generate()),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}-{stamp}.csv"'},
    )


def close_db(_exc: BaseException | None = None) -> None:
    conn = g.pop("_db", None)
    if conn is not None:
        conn.close()


class ServiceUnavailable(Exception):
    """A local service did not answer or refused; `message` is ready to show the admin."""

    def __init__(self, message: str, *, unreachable: bool) -> None:
        super().__init__(message)
        self.message = message
        self.unreachable = unreachable


class DoorUnavailable(ServiceUnavailable):
    """The door service did not answer or refused."""


def service_call(
    socket: Path,
    messages: str,
    error: type[ServiceUnavailable],
    cmd: str,
    *,
    timeout: float,
    **args: Any,
) -> dict[str, Any]:
    """One command to a local service; IpcError becomes `error` with the i18n texts
    `<messages>.unreachable` (not running) or `<messages>.refused` (said no)."""
    try:
        return ipc.call(socket, cmd, timeout=timeout, **args)
    except ipc.IpcUnavailable:
        raise error(translate(f"{messages}.unreachable"), unreachable=True) from None
    except ipc.IpcError as exc:
        raise error(
            translate(f"{messages}.refused", detail=str(exc)[:200]), unreachable=False
        ) from None


def door_call(cmd: str, *, timeout: float = COMMAND_TIMEOUT, **args: Any) -> dict[str, Any]:
    """Send a command to the door service."""
    return service_call(
        site_config().door_socket, "door", DoorUnavailable, cmd, timeout=timeout, **args
    )


def local_datetime(timestamp: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(timestamp, site_config().tz)


def clip(value: Any, limit: int = 4000) -> str:
    """Form text bounded before it is echoed back into a page."""
    return str(value or "")[:limit]
