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


class PortalGateway:
    """The gateway's portal commands: devices by IP, a quota per device, every call recorded."""

    def __init__(self, path: Path) -> None:
        self.calls: list[dict[str, Any]] = []
        self.authorized: dict[str, dict[str, Any]] = {}
        self.refuse: str | None = None
        self._lock = threading.Lock()
        self.server = CommandServer(
            path,
            {
                "client": self._client,
                "portal_authorize": self._authorize,
                "portal_logout": self._logout,
            },
        )

    def _info(self, ip: str) -> dict[str, Any]:
        info = {"ok": True, "known": ip.startswith("10.42.0."), "authorized": False}
        if ip in self.authorized:
            info.update(authorized=True, **self.authorized[ip])
        return info

    def _client(self, req: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.calls.append(dict(req))
            return self._info(req["ip"])

    def _authorize(self, req: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.calls.append(dict(req))
            if self.refuse:
                return {"ok": False, "error": self.refuse}
            self.authorized[req["ip"]] = {
                "kind": req["kind"], "owner_id": req.get("owner_id", 1),
                "used_bytes": 250_000_000, "limit_bytes": 1_000_000_000,
                "remaining_bytes": 750_000_000, "spent": False, "policy": "block",
                "seconds_remaining": 3600 if req["kind"] == "voucher" else None,
                "reset_in_seconds": 5 * 3600 + 120,
            }
            return self._info(req["ip"])

    def _logout(self, req: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.calls.append(dict(req))
            return {"ok": True, "logged_out": self.authorized.pop(req["ip"], None) is not None}

    def sent(self, cmd: str) -> list[dict[str, Any]]:
        return [c for c in self.calls if c["cmd"] == cmd]
