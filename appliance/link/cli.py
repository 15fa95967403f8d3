"""`telecentre link run | status | test | emulate`: the line monitor from the terminal."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from typing import Any

from appliance import ipc
from appliance.config import Config
from appliance.link import emulated

CAUSES = {
    "lan": "the ISP box does not answer (box switched off, cable or Wi-Fi to it)",
    "access": "the box answers but nothing beyond it: the access line is down",
    "upstream": "the line works but part of the internet is unreachable (beyond the ISP)",
    "dns": "addresses answer but names do not resolve (DNS resolver)",
}
WARNINGS = {
    "budget": "this month's data budget for tests is spent",
    "busy": "members are using the line right now; a test will slow them down",
}


def add_parser(sub: Any, load: Any) -> None:
    """Add `link` to the main parser; `load` reads the config from the parsed arguments."""
    s = sub.add_parser("link", help="the line monitor: run it, its status, a test now")
    ls = s.add_subparsers(dest="link_cmd", required=True)
    ls.add_parser("run", help="run the link service")
    ls.add_parser("status", help="the line's state, the current outage, the last test")
    t = ls.add_parser("test", help="run a throughput test now and print the result")
    t.add_argument("--yes", action="store_true", help="run even if the line is busy or "
                   "the month's budget is spent")
    e = ls.add_parser(
        "emulate",
        help='drive an emulated line (line = "emulated"): faults, rates, members\' traffic',
        description="status: the model's settings and faults. break/repair FAULT: box (the "
        "box does not answer), access (the access line is down), upstream (every anchor "
        "but the first fails), dns (names do not resolve); repair all. set NAME=VALUE...: "
        f"{', '.join(emulated.SETTINGS)}. busy/quiet: members use 4 Mbit/s of the line, "
        "or nothing. reset: the healthy 30/1 Mbit/s line.",
    )
    e.add_argument("action", choices=("status", "break", "repair", "set", "busy", "quiet",
                                      "reset"))
    e.add_argument("args", nargs="*", help="the fault, or NAME=VALUE pairs for set")
    s.set_defaults(func=lambda args: cmd_link(args, load(args)))


def cmd_link(args: argparse.Namespace, cfg: Config) -> int:
    if args.link_cmd == "run":
        from appliance.link import main

        return main.run(cfg)
    if args.link_cmd == "status":
        print_status(ipc.call(cfg.link_socket, "status"), cfg)
        return 0
    if args.link_cmd == "emulate":
        return cmd_emulate(cfg, args.action, args.args)
    return run_test(cfg, force=args.yes)


BUSY_MEMBERS_MBPS = 4.0  # a couple of video calls


def emulate_request(action: str, args: list[str]) -> dict[str, Any]:
    """The socket request for `link emulate ACTION ARGS`; ValueError says what to type."""
    if action in ("break", "repair"):
        choices = emulated.FAULTS + (("all",) if action == "repair" else ())
        if len(args) != 1 or args[0] not in choices:
            raise ValueError(f"link emulate {action}: give one of {', '.join(choices)}")
        return {"action": action, "fault": args[0]}
    if action == "set":
        settings: dict[str, float] = {}
        for pair in args:
            name, sep, value = pair.partition("=")
            try:
                settings[name] = float(value)
            except ValueError:
                sep = ""
            if not sep:
                raise ValueError(f"link emulate set: expected NAME=NUMBER, got {pair!r}")
        if not settings:
            raise ValueError("link emulate set: give NAME=VALUE pairs, e.g. down_mbps=10")
        return {"action": "set", "settings": settings}
    if action in ("busy", "quiet"):
        members = BUSY_MEMBERS_MBPS if action == "busy" else 0.0
        return {"action": "set", "settings": {"members_mbps": members}}
    return {"action": action}


def cmd_emulate(cfg: Config, action: str, args: list[str]) -> int:
    """Send one `emulate` command to the link service and print the line's state."""
    if cfg.link.line != "emulated":
        print('link emulate: this site monitors a real line (link.line = "real").',
              file=sys.stderr)
        return 2
    # A refused setting comes back as an IpcError, printed by the main CLI.
    reply = ipc.call(cfg.link_socket, "emulate", **emulate_request(action, args))
    print(f"faults: {', '.join(reply['faults']) or 'none'}"
          + (f"; test loading the {reply['load']}" if reply.get("load") else ""))
    print(" ".join(f"{k}={v:g}" for k, v in reply["settings"].items()))
    return 0


def _when(t: float | None, cfg: Config) -> str:
    if t is None:
        return "-"
    return dt.datetime.fromtimestamp(t, cfg.tz).strftime("%Y-%m-%d %H:%M:%S")


def _mbps(bps: float | None) -> str:
    return "-" if bps is None else f"{bps / 1e6:.1f} Mbit/s"


def print_status(s: dict[str, Any], cfg: Config) -> None:
    outage = s.get("outage")
    if outage:
        print(f"line: DOWN since {_when(outage['since'], cfg)}: {CAUSES[outage['cause']]}")
    else:
        print("line: up")
    if s.get("as_of") == "previous_run":
        print("  (as of the previous run of the line monitor, last probed "
              f"{_when(s.get('previous_run_at'), cfg)}; being re-checked)")
    print("layers: " + ", ".join(f"{k} {'up' if v else 'DOWN'}" for k, v in s["layers"].items()))
    for sample in s.get("samples", []):
        rtt = "lost" if sample["rtt"] is None else f"{sample['rtt'] * 1000:.1f} ms"
        print(f"  {sample['role']:<8} {sample['target']:<16} {rtt}")
    down, up = s["contract_bps"]
    print(f"contract: {_mbps(down)} down, {_mbps(up)} up; test backend: {s['backend'] or 'none'}")
    last = s.get("last_test")
    if last:
        print_result(last, cfg)
    print(f"tests this month: {s['month_bytes'] / 1e6:.0f} of {s['budget_bytes'] / 1e6:.0f} MB; "
          f"next scheduled test: {_when(s.get('next_test_at'), cfg)}")


def print_result(r: dict[str, Any], cfg: Config) -> None:
    print(f"last test ({_when(r.get('at'), cfg)}, {r.get('trigger')}): {r['result']}"
          + (f" - {r['detail']}" if r.get("detail") else ""))
    if r["result"] == "ok":
        ratio = r.get("download_ratio")
        print(f"  download {_mbps(r.get('download_bps'))}"
              + (f" ({ratio:.0%} of contract)" if ratio is not None else ""))
        ratio = r.get("upload_ratio")
        print(f"  upload   {_mbps(r.get('upload_bps'))}"
              + (f" ({ratio:.0%} of contract)" if ratio is not None else ""))
        if r.get("added_delay_s") is not None:
            print(f"  latency under load: +{r['added_delay_s'] * 1000:.0f} ms, "
                  f"grade {r['grade']}")
        print(f"  data used: {r.get('bytes', 0) / 1e6:.1f} MB via {r.get('server')}")


def run_test(cfg: Config, *, force: bool, poll: float = 0.5) -> int:
    before = (ipc.call(cfg.link_socket, "status").get("last_test") or {}).get("at")
    reply = ipc.call(cfg.link_socket, "test", force=force)
    if reply.get("warnings"):
        for w in reply["warnings"]:
            print(f"Warning: {WARNINGS.get(w, w)}.", file=sys.stderr)
        answer = input("Run the test anyway? [y/N] ") if sys.stdin.isatty() else ""
        if answer.strip().lower() not in ("y", "yes", "o", "oui"):
            print("No test run (use --yes to run anyway).", file=sys.stderr)
            return 1
        reply = ipc.call(cfg.link_socket, "test", force=True)
    if reply.get("running"):
        print("A test is already running; following it.")
    while True:
        s = ipc.call(cfg.link_socket, "status")
        last = s.get("last_test")
        if s.get("test") is None and last and last.get("at") != before:
            sys.stderr.write("\r" + " " * 60 + "\r")
            print_result(last, cfg)
            return 0 if last["result"] == "ok" else 1
        if s.get("test"):
            _bar(s["test"])
        time.sleep(poll)


def _bar(test: dict[str, Any], width: int = 30) -> None:
    """A progress bar on stderr: phase, and the share of the phase's expected time."""
    total = test.get("phase_seconds") or 0
    elapsed = time.time() - (test.get("phase_at") or time.time())
    frac = min(1.0, elapsed / total) if total else 0.0
    filled = int(frac * width)
    sys.stderr.write(f"\r{test['phase']:<26} [{'#' * filled}{'.' * (width - filled)}]")
    sys.stderr.flush()
