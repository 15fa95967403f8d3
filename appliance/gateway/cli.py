"""`telecentre gateway [run] | gateway emulate ...`: the Wi-Fi gateway from the terminal.

`telecentre gateway` alone runs the service (what the systemd unit starts). `gateway
emulate` drives the dry-run backend's emulated devices over the gateway's socket; with
the kernel backend there are none, and it says so.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from appliance import ipc
from appliance.config import Config

ACTIONS = ("status", "add", "remove", "login", "logout", "download", "rate", "idle")
USAGE = {
    "add": "add guest|voucher|member|visitor [COUNT] [--as MEMBER|VOUCHER_CODE]",
    "remove": "remove NAME|all",
    "login": "login NAME guest|voucher|member [--as MEMBER|VOUCHER_CODE]",
    "logout": "logout NAME",
    "download": "download NAME MEGABYTES",
    "rate": "rate NAME DOWN_MBIT UP_MBIT",
    "idle": "idle NAME",
    "status": "status",
}


def add_parser(sub: Any, load: Any) -> None:
    """Add `gateway` to the main parser; `load` reads the config from the parsed arguments."""
    s = sub.add_parser("gateway", help="run the Wi-Fi gateway service (or drive a dry-run one)")
    gs = s.add_subparsers(dest="gateway_cmd")
    gs.add_parser("run", help="run the gateway service (the default)")
    e = gs.add_parser(
        "emulate",
        help='drive the emulated Wi-Fi devices of a dry-run gateway (backend = "dry-run")',
        description="status: the emulated devices, who they are logged in as, their traffic. "
        "add ROLE [COUNT]: devices join the Wi-Fi and log in as guests (terms accepted), "
        "with a new voucher, or as a member (--as a member number or e-mail, else the "
        "first member without a device); visitors join without logging in. remove "
        "NAME|all: devices leave the Wi-Fi (their sessions end as \"left\" when the "
        "presence probes miss them for absent_after_seconds). login/logout NAME. "
        "download NAME MB: fetch that much at full speed (to spend a quota). "
        "rate NAME DOWN UP: typical demand in Mbit/s. "
        "idle NAME. The device named 'browser' is the browser you open the demo's "
        "portal with.",
    )
    e.add_argument("action", choices=ACTIONS)
    e.add_argument("args", nargs="*", help="NAME, ROLE, COUNT, MB or rates, by action")
    e.add_argument("--as", dest="owner", help="member number or e-mail, or a voucher code")
    s.set_defaults(func=lambda args: cmd_gateway(args, load))


def cmd_gateway(args: argparse.Namespace, load: Any) -> int:
    cfg = load(args)
    if getattr(args, "gateway_cmd", None) == "emulate":
        return cmd_emulate(cfg, args.action, args.args, args.owner)
    from appliance.gateway import main

    return main.run(cfg)


def _number(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{what}: expected a number, got {text!r}") from None


def emulate_request(action: str, args: list[str], owner: str | None = None) -> dict[str, Any]:
    """The socket request for `gateway emulate ACTION ARGS`; ValueError says what to type."""
    wanted = {"status": 0, "add": (1, 2), "remove": 1, "login": 2, "logout": 1,
              "download": 2, "rate": 3, "idle": 1}[action]
    counts = wanted if isinstance(wanted, tuple) else (wanted,)
    if len(args) not in counts:
        raise ValueError(f"usage: gateway emulate {USAGE[action]}")
    req: dict[str, Any] = {"action": action}
    if action == "add":
        req["role"] = args[0]
        if len(args) == 2:
            if not args[1].isdigit():
                raise ValueError(f"add: COUNT must be a whole number, got {args[1]!r}")
            req["count"] = int(args[1])
    elif action != "status":
        req["name"] = args[0]
    if action == "login":
        req["kind"] = args[1]
    elif action == "download":
        req["mb"] = _number(args[1], "download")
    elif action == "rate":
        req["down_mbit"] = _number(args[1], "rate")
        req["up_mbit"] = _number(args[2], "rate")
    if owner is not None:
        if action not in ("add", "login"):
            raise ValueError("--as goes with add or login")
        req["owner"] = owner
    return req


def _mbit(bps: float) -> str:
    return f"{bps / 1e6:.2f}"


def print_devices(reply: dict[str, Any]) -> None:
    row = "{:<11} {:<13} {:<14} {:>15} {:>13}  {}"
    print(row.format("device", "address", "logged in as", "Mbit/s down/up", "MB down/up",
                     "state"))
    for d in reply["devices"]:
        if not d["logged_in_as"]:
            state = "at the portal"
        elif d["blocked"]:
            state = "cut off"
        else:
            state = "downloading" if d["downloading_bytes"] else "online"
        print(row.format(
            d["name"], d["ip"], d["logged_in_as"] or "-",
            f"{_mbit(d['rate_down_bps'])}/{_mbit(d['rate_up_bps'])}",
            f"{d['bytes_down'] / 1e6:.1f}/{d['bytes_up'] / 1e6:.1f}", state,
        ))


def cmd_emulate(cfg: Config, action: str, args: list[str], owner: str | None = None) -> int:
    """Send one `emulate` command to the gateway service and print its devices."""
    if cfg.gateway.backend != "dry-run":
        print('gateway emulate: this site\'s gateway runs on the kernel (gateway.backend = '
              '"kernel"); emulated devices exist only with backend = "dry-run".',
              file=sys.stderr)
        return 2
    try:
        req = emulate_request(action, args, owner)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    # A refusal (unknown device, no member...) comes back as an IpcError, printed by main.
    print_devices(ipc.call(cfg.gateway_socket, "emulate", **req))
    return 0
