"""A stand-in for the gateway service at its UNIX socket (a real ipc.CommandServer)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from appliance import db, wifi_accounts
from appliance.ipc import CommandServer

COMMANDS = ("status", "kick", "extend", "reset", "voucher_create", "voucher_revoke")


class FakeGateway:
    """Records every command; answers `status` from `self.status`; makes real voucher rows.

    `voucher_create` writes the rows the real gateway would (with wifi_accounts, into
    the same database file) so the panel's list and the portal's check see them.
    """

    def __init__(self, path: Path, db_path: Path) -> None:
        self.db_path = db_path
        self.commands: list[dict[str, Any]] = []
        self.status: dict[str, Any] = {"ok": True, "day": "2026-11-23", "quotas": [],
                                       "devices": []}
        self.refuse: str | None = None
        self._lock = threading.Lock()
        self.server = CommandServer(path, {c: self._recorder(c) for c in COMMANDS})

    def _recorder(self, name: str):
        def handle(request: dict[str, Any]) -> dict[str, Any]:
            with self._lock:
                self.commands.append(dict(request))
                if self.refuse and name != "status":
                    return {"ok": False, "error": self.refuse}
                if name == "status":
                    return dict(self.status)
                if name == "voucher_create":
                    return self._create(request)
                if name == "voucher_revoke":
                    return {"ok": True, "revoked": True, "kicked": 1}
                return {"ok": True}

        return handle

    def _create(self, req: dict[str, Any]) -> dict[str, Any]:
        conn = db.connect(self.db_path)
        try:
            made = [
                wifi_accounts.create_voucher(
                    conn, batch=req["batch"] or "lot", quota_bytes=req["quota_mb"] * 10**6,
                    max_devices=req["max_devices"], valid_until=1_900_000_000.0,
                    created_by=req["created_by"],
                )
                for _ in range(req["count"])
            ]
        finally:
            conn.close()
        return {"ok": True, "batch": req["batch"] or "lot", "valid_until": 1_900_000_000.0,
                "vouchers": [{"id": i, "code": c} for i, c in made]}

    def sent(self, cmd: str) -> list[dict[str, Any]]:
        return [c for c in self.commands if c["cmd"] == cmd]
