"""Commands between services over a local UNIX socket: one JSON object per line.

Commands that must act now (unlock, enroll the next card) travel here and
nowhere else: they are never stored, so nothing replays after a restart.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import socketserver
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MAX_LINE = 64 * 1024

Handler = Callable[[dict[str, Any]], dict[str, Any]]


class IpcError(RuntimeError):
    """The service could not be reached or refused the command."""


class IpcUnavailable(IpcError):
    """The service is not running or did not answer."""


class _RequestHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        server: CommandServer = self.server  # type: ignore[assignment]
        for raw in self.rfile:
            if len(raw) > MAX_LINE:
                reply: dict[str, Any] = {"ok": False, "error": "request too large"}
            else:
                try:
                    request = json.loads(raw)
                    if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
                        raise ValueError("expected an object with a 'cmd' text")
                except ValueError as exc:
                    reply = {"ok": False, "error": f"bad request: {exc}"}
                else:
                    try:
                        reply = server.dispatch(request)
                    except Exception as exc:  # the socket must survive one bad command
                        log.exception("command %s failed", request.get("cmd"))
                        reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            self.wfile.write(json.dumps(reply).encode() + b"\n")
            self.wfile.flush()


class CommandServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """A UNIX-socket server mapping {"cmd": name, ...} to handler functions."""

    daemon_threads = True

    def __init__(self, path: Path, handlers: dict[str, Handler], *, mode: int = 0o660) -> None:
        self.path = Path(path)
        self.handlers = handlers
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        # The socket is created with the umask's mode; tighten before anyone connects.
        old = os.umask(0o777 & ~mode)
        try:
            super().__init__(str(self.path), _RequestHandler)
        finally:
            os.umask(old)
        self._thread: threading.Thread | None = None

    def dispatch(self, request: dict[str, Any]) -> dict[str, Any]:
        handler = self.handlers.get(request["cmd"])
        if handler is None:
            return {"ok": False, "error": f"unknown command {request['cmd']!r}"}
        return handler(request)

    def start(self) -> CommandServer:
        self._thread = threading.Thread(
            target=self.serve_forever, name=f"ipc:{self.path.name}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


def call(path: Path | str, cmd: str, timeout: float = 5.0, **args: Any) -> dict[str, Any]:
    """Send one command and return the reply; raises IpcError if unreachable or refused."""
    request = json.dumps({"cmd": cmd, **args}).encode() + b"\n"
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(request)
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buf += chunk
    except (FileNotFoundError, ConnectionRefusedError):
        raise IpcUnavailable(f"the service is not running (no socket at {path})") from None
    except OSError as exc:
        raise IpcUnavailable(f"cannot talk to the service at {path}: {exc}") from None
    try:
        reply = json.loads(buf)
    except ValueError:
        raise IpcUnavailable("the service closed the connection without answering") from None
    if not reply.get("ok"):
        raise IpcError(reply.get("error", "refused"))
    return reply
