"""systemd's sd_notify protocol: READY=1, WATCHDOG=1, STATUS=..., without a dependency.

A no-op when the service was not started by systemd (no $NOTIFY_SOCKET).
"""

from __future__ import annotations

import os
import socket


def notify(message: str) -> bool:
    """Send one notification; returns whether systemd was told."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    if path.startswith("@"):  # abstract namespace socket
        path = "\0" + path[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(path)
            sock.sendall(message.encode())
    except OSError:
        return False
    return True
