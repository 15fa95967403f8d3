"""`telecentre`: the command line of the appliance (services, set-up, admin tasks)."""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import os
import sys
from pathlib import Path

from appliance import __version__, accesslog, admins, db, ipc, members, wifilog
from appliance import config as config_mod
from appliance.config import Config, ConfigError
from appliance.gateway import cli as gateway_cli
from appliance.link import cli as link_cli


def _config_path(args: argparse.Namespace) -> Path:
    return Path(args.config or os.environ.get("TELECENTRE_CONFIG") or config_mod.DEFAULT_PATH)


def _load(args: argparse.Namespace) -> Config:
    return config_mod.load(_config_path(args))


def _as_state_owner(cfg: Config) -> None:
    """Run as the owner of the state directory when started as root.

    An admin typing `sudo telecentre members add ...` must not leave root-owned
    database files (the -wal and -shm SQLite creates) that the services, running
    as their own user, could then not write.
    """
    if os.geteuid() != 0:
        return
    try:
        st = cfg.state_dir.stat()
    except FileNotFoundError:
        return
    if st.st_uid == 0:
        return
    os.setgroups([])
    os.setgid(st.st_gid)
    os.setuid(st.st_uid)


def _open_db(cfg: Config):
    if not cfg.db_path.exists():
        raise ConfigError(f"{cfg.db_path}: no database; run `telecentre init` first.")
    _as_state_owner(cfg)
    return db.open_db(cfg.db_path)


# --- services ---------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    from appliance import demo

    return demo.run(Path(args.dir), args.host, args.port)


def cmd_door(args: argparse.Namespace) -> int:
    from appliance.door import main as door_main

    cfg = _load(args)
    return door_main.relock(cfg) if args.relock else door_main.run(cfg)


def cmd_web(args: argparse.Namespace) -> int:
    from appliance.web.server import serve

    serve(_load(args))
    return 0


# --- set-up -----------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    from appliance.runtime import ensure_admin, init_state

    path = _config_path(args)
    if path.exists():
        print(f"{path}: exists, kept as it is.")
    else:
        text = config_mod.default_config_text()
        if args.state_dir:
            text = text.replace(
                'state_dir = "/var/lib/telecentre"',
                f'state_dir = "{Path(args.state_dir).resolve()}"',
            )
        if args.runtime_dir:
            text = text.replace(
                'runtime_dir = "/run/telecentre"',
                f'runtime_dir = "{Path(args.runtime_dir).resolve()}"',
            )
        if args.emulated:
            text = text.replace('backend = "pi"', 'backend = "emulated"')
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, "utf-8")
        print(f"{path}: written (commented; edit it, then restart the services).")
    cfg = config_mod.load(path)
    new = init_state(cfg)
    print(
        f"{cfg.db_path}: {'created' if new else 'up to date'} (schema version {db.SCHEMA_VERSION})."
    )
    conn = db.open_db(cfg.db_path)
    has_admin = admins.count_admins(conn) > 0
    conn.close()
    if has_admin and not (args.admin_password_stdin or args.admin_password_hash_stdin):
        print("An admin account exists already; use `telecentre admin passwd` to change it.")
        return 0
    if args.admin_password_hash_stdin:
        # First boot may carry only a hash: the password itself never touches the card.
        password_hash = sys.stdin.readline().strip()
        ensure_admin(cfg, args.admin, admins.generate_password())
        conn = db.open_db(cfg.db_path)
        try:
            admins.set_password_hash(conn, args.admin, password_hash)
        finally:
            conn.close()
        print(f"Admin account '{args.admin}' ready (password from the hash given).")
        return 0
    password = None
    if args.admin_password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif sys.stdin.isatty() and not args.generate_password:
        while True:
            first = getpass.getpass(
                f"Password for the admin '{args.admin}' (empty: generate one): "
            )
            if not first:
                break
            if len(first) < admins.MIN_PASSWORD:
                print(f"At least {admins.MIN_PASSWORD} characters, please.")
                continue
            if getpass.getpass("Again: ") == first:
                password = first
                break
            print("The two passwords differ; try again.")
    generated = ensure_admin(cfg, args.admin, password)
    if generated:
        print(
            f"Admin account '{args.admin}' created. Its password, shown once:\n\n"
            f"    {generated}\n\nWrite it down; change it with `telecentre admin passwd`."
        )
    else:
        print(f"Admin account '{args.admin}' ready.")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    cfg = _load(args)
    print(
        f"{cfg.path}: valid. Site '{cfg.site_name}', {len(cfg.plans)} plans, "
        f"{len(cfg.closures)} closures, hardware '{cfg.backend}'."
    )
    from appliance.web import tls

    if tls.portal_name(cfg):
        # The files are checked here as the web service will at its start (run this as the
        # telecentre user, or as root: then only the key's mode tells who may read it).
        try:
            checked = tls.load(cfg)
        except tls.TlsError as exc:
            print(f"{cfg.path}: {exc}. The portal will be served over http only.",
                  file=sys.stderr)
            return 1
        print(f"HTTPS: the certificate for {checked.name} is valid until "
              f"{checked.not_after.date().isoformat()}.")
    return 0


def cmd_admin(args: argparse.Namespace) -> int:
    cfg = _load(args)
    conn = _open_db(cfg)
    if args.admin_cmd == "list":
        for row in conn.execute("SELECT username, role, last_login_at FROM admins ORDER BY 1"):
            last = (
                dt.datetime.fromtimestamp(row["last_login_at"], cfg.tz).strftime("%Y-%m-%d %H:%M")
                if row["last_login_at"]
                else "never"
            )
            print(f"{row['username']:<20} {row['role']:<6} last login {last}")
        return 0
    password = (
        getpass.getpass("New password: ")
        if sys.stdin.isatty()
        else sys.stdin.readline().rstrip("\n")
    )
    if args.admin_cmd == "add":
        admins.create_admin(conn, args.username, password, role=args.role)
        print(f"Account '{args.username}' ({args.role}) created.")
    else:
        admins.set_password(conn, args.username, password)
        print(f"Password of '{args.username}' changed.")
    return 0


# --- members ----------------------------------------------------------------------------


def cmd_members(args: argparse.Namespace) -> int:
    cfg = _load(args)
    conn = _open_db(cfg)
    if args.members_cmd == "list":
        rows = members.list_members(conn, args.search or "", limit=args.limit)
        print(f"{'number':<8} {'name':<30} {'plan':<12} {'badges':>6}  status")
        for r in rows:
            status = "suspended" if r["suspended"] else "active"
            if r["valid_until"] and r["valid_until"] < dt.date.today().isoformat():
                status = "expired"
            print(
                f"{r['number']:<8} {r['name'][:30]:<30} {(r['plan'] or '-'):<12} "
                f"{r['badge_count']:>6}  {status}"
            )
        print(f"{len(rows)} shown, {members.count_members(conn)} members in all.")
        return 0
    if args.members_cmd == "add":
        clean = members.validate_member(
            {
                "name": args.name,
                "email": args.email,
                "plan": args.plan,
                "number": args.number,
                "valid_from": args.valid_from,
                "valid_until": args.valid_until,
                "role": args.role,
            },
            cfg.plans,
        )
        member_id = members.add_member(conn, clean)
        print(f"Member #{member_id} ({members.get_member(conn, member_id)['number']}) added.")
        return 0
    row = members.find_member(conn, args.member)
    if row is None:
        print(
            f"No member '{args.member}' (give a member number, an e-mail or an id).",
            file=sys.stderr,
        )
        return 1
    if args.members_cmd == "enroll":
        return _enroll(cfg, row, args.actor or f"cli:{getpass.getuser()}")
    if args.members_cmd == "badges":
        for badge in members.member_badges(conn, row["id"]):
            when = dt.datetime.fromtimestamp(badge["enrolled_at"], cfg.tz).strftime("%Y-%m-%d")
            state = "revoked" if badge["revoked_at"] else "live"
            print(f"{badge['ref']:<8} {badge['mode']:<9} enrolled {when}  {state}")
        return 0
    if args.members_cmd == "revoke":
        badge = conn.execute(
            "SELECT id FROM badges WHERE ref = ? AND member_id = ?", (args.badge, row["id"])
        ).fetchone()
        if badge is None or not members.revoke_badge(conn, badge["id"], f"cli:{getpass.getuser()}"):
            print(f"No live badge {args.badge} for member {row['number']}.", file=sys.stderr)
            return 1
        print(f"Badge {args.badge} revoked.")
        return 0
    members.set_suspended(conn, row["id"], args.members_cmd == "suspend", args.reason)
    print(
        f"Member {row['number']} {'suspended' if args.members_cmd == 'suspend' else 'reactivated'}."
    )
    return 0


# --- the running door -------------------------------------------------------------------


def _enroll(cfg: Config, member, actor: str) -> int:
    """Start an enrollment on the door and wait for the card, as the panel does."""
    import time

    reply = ipc.call(cfg.door_socket, "enroll", member_id=member["id"], actor=actor)
    before = ipc.call(cfg.door_socket, "status").get("last_enrolled")
    print(
        f"Tap the new badge for {member['number']} on the reader ({reply['expires_in']:.0f} s)...",
        flush=True,
    )
    while True:
        time.sleep(0.3)
        status = ipc.call(cfg.door_socket, "status")
        last = status.get("last_enrolled")
        if last and last != before and last["member_id"] == member["id"]:
            print(f"Badge {last['badge_ref']} enrolled.")
            return 0
        if status.get("enrollment") is None:
            print("No badge was tapped in time; run the command again.", file=sys.stderr)
            return 1


def cmd_unlock(args: argparse.Namespace) -> int:
    cfg = _load(args)
    actor = args.actor or f"cli:{getpass.getuser()}"
    ipc.call(cfg.door_socket, "unlock", actor=actor)
    print("Door unlocked.")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    cfg = _load(args)
    s = ipc.call(cfg.door_socket, "status")
    print(
        f"door: {s['state']} ({'locked' if s['locked'] else 'UNLOCKED'}, "
        f"{'open' if s['open'] else 'closed'})"
    )
    print(f"alarms: {', '.join(s['alarms']) or 'none'}")
    print(f"reader: {'up' if s['reader_up'] else 'DOWN'}; cards: {s['card_mode']}")
    if s.get("enrollment"):
        e = s["enrollment"]
        print(
            f"enrollment: waiting for a card for member #{e['member_id']} "
            f"({e['expires_in']:.0f} s left)"
        )
    return 0


def cmd_emulate(args: argparse.Namespace) -> int:
    cfg = _load(args)
    if cfg.backend != "emulated":
        print(
            'emulate: this site runs on real hardware (hardware.backend = "pi").', file=sys.stderr
        )
        return 2
    if args.action == "status":
        reply = ipc.call(cfg.door_socket, "emulate", action="board")
        for label, pin in sorted(reply["pins"].items()):
            print(
                f"{label:<14} GPIO{pin['gpio']:<3} {pin['function']:<7} "
                f"{'high' if pin['level'] else 'low'}"
            )
        return 0
    extra = {}
    if args.action in ("tap", "clone", "present"):
        if not args.uid:
            print(
                f"emulate {args.action}: give the card's UID in hex, e.g. 04A1B2C3D4E5F6",
                file=sys.stderr,
            )
            return 2
        extra["uid"] = args.uid
    ipc.call(cfg.door_socket, "emulate", action=args.action, **extra)
    print("ok")
    return 0


def cmd_log(args: argparse.Namespace) -> int:
    cfg = _load(args)
    conn = _open_db(cfg)
    if args.csv:
        for chunk in accesslog.export_csv(conn, accesslog.Filter(), cfg.tz):
            sys.stdout.write(chunk)
        return 0
    for row in reversed(accesslog.query(conn, limit=args.limit)):
        when = dt.datetime.fromtimestamp(row["at"], cfg.tz).strftime("%Y-%m-%d %H:%M:%S")
        who = row["member_name"] or row["actor"] or ""
        print(f"{when}  {row['result']:<8} {row['reason']:<26} {row['badge_ref'] or '':<10} {who}")
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    """A consistent copy of the live database (SQLite's online backup: the door keeps running)."""
    import sqlite3

    cfg = _load(args)
    src = _open_db(cfg)
    target = Path(args.file)
    if target.exists() and not args.force:
        print(f"{target}: exists; use --force to overwrite it.", file=sys.stderr)
        return 1
    dst = sqlite3.connect(target)
    with dst:
        src.backup(dst)
    dst.close()
    os.chmod(target, 0o600)  # it holds members' names and e-mails
    print(
        f"Backup written to {target} ({target.stat().st_size // 1024} KiB). Keep the site "
        f"secret ({cfg.secret_path}) with it: enrolled cards depend on it."
    )
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    cfg = _load(args)
    conn = _open_db(cfg)
    n = accesslog.purge(conn, cfg.access_log_days)
    print(f"{n} access events older than {cfg.access_log_days} days deleted.")
    # The gateway purges its legal log hourly; this is for a box whose gateway is off.
    n = wifilog.purge(conn, cfg.wifi_sessions_days)
    print(f"{n} Wi-Fi sessions older than {cfg.wifi_sessions_days} days deleted.")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="telecentre",
        description="Telecentre appliance: door, line, Wi-Fi and panel on a Raspberry Pi.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument(
        "--config",
        metavar="PATH",
        help=f"site configuration (default: $TELECENTRE_CONFIG or {config_mod.DEFAULT_PATH})",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("demo", help="run everything on emulated hardware, with the panel")
    s.add_argument("--dir", default="demo-state", help="demo folder (default: ./demo-state)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8080)
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("init", help="write a default config, create the database and an admin")
    s.add_argument("--state-dir", help="state directory to write in the new config")
    s.add_argument("--runtime-dir", help="runtime directory to write in the new config")
    s.add_argument("--emulated", action="store_true", help="configure emulated hardware")
    s.add_argument("--admin", default="admin", help="first admin's username (default: admin)")
    s.add_argument(
        "--generate-password",
        action="store_true",
        help="do not ask: generate the admin password and print it once",
    )
    s.add_argument(
        "--admin-password-stdin",
        action="store_true",
        help="read the admin password from standard input",
    )
    s.add_argument(
        "--admin-password-hash-stdin",
        action="store_true",
        help="read the admin password's hash (scrypt:… as Werkzeug writes it) from standard input",
    )
    s.set_defaults(func=cmd_init)

    s = sub.add_parser("check-config", help="validate the configuration file")
    s.set_defaults(func=cmd_check)

    s = sub.add_parser("door", help="run the door service")
    s.add_argument("--relock", action="store_true", help="only drive the lock pin locked, exit")
    s.set_defaults(func=cmd_door)
    s = sub.add_parser("web", help="run the web panel service")
    s.set_defaults(func=cmd_web)
    gateway_cli.add_parser(sub, _load)

    s = sub.add_parser("members", help="list, add, suspend, reactivate members; their badges")
    ms = s.add_subparsers(dest="members_cmd", required=True)
    m = ms.add_parser("list")
    m.add_argument("search", nargs="?")
    m.add_argument("--limit", type=int, default=100)
    m = ms.add_parser("add")
    m.add_argument("name")
    m.add_argument("--email")
    m.add_argument("--plan")
    m.add_argument("--number")
    m.add_argument("--valid-from")
    m.add_argument("--valid-until")
    m.add_argument("--role", choices=("member", "admin"), default="member")
    for name in ("suspend", "reactivate"):
        m = ms.add_parser(name)
        m.add_argument("member", help="member number, e-mail or id")
        m.add_argument("--reason")
    m = ms.add_parser("enroll", help="bind the next badge tapped on the reader to a member")
    m.add_argument("member", help="member number, e-mail or id")
    m.add_argument("--actor", help="name to log (default: cli:<user>)")
    m = ms.add_parser("badges", help="a member's badges")
    m.add_argument("member", help="member number, e-mail or id")
    m = ms.add_parser("revoke", help="revoke a member's badge (lost, returned)")
    m.add_argument("member", help="member number, e-mail or id")
    m.add_argument("badge", help="badge reference, e.g. B00012")
    s.set_defaults(func=cmd_members)

    s = sub.add_parser("admin", help="panel accounts: list, add, change a password")
    a = s.add_subparsers(dest="admin_cmd", required=True)
    a.add_parser("list")
    x = a.add_parser("add")
    x.add_argument("username")
    x.add_argument("--role", choices=("admin", "staff"), default="admin")
    x = a.add_parser("passwd")
    x.add_argument("username")
    s.set_defaults(func=cmd_admin)

    s = sub.add_parser("unlock", help="unlock the door now (logged)")
    s.add_argument("--actor", help="name to log (default: cli:<user>)")
    s.set_defaults(func=cmd_unlock)
    s = sub.add_parser("status", help="the door's state, alarms and reader")
    s.set_defaults(func=cmd_status)

    s = sub.add_parser("emulate", help="in a running demo: tap a card, open the door, ...")
    s.add_argument(
        "action",
        choices=("tap", "clone", "present", "remove", "open", "close", "exit", "status"),
        help="tap UID: present a card then take it away; clone UID: a card that only "
        "copies the UID; present/remove: leave a card on the reader; open/close: "
        "the door contact; exit: press the exit button; status: pin levels",
    )
    s.add_argument("uid", nargs="?", help="card UID in hex (4 or 7 bytes)")
    s.set_defaults(func=cmd_emulate)

    s = sub.add_parser("log", help="the access log (latest events, or all as CSV)")
    s.add_argument("--limit", type=int, default=30)
    s.add_argument("--csv", action="store_true")
    s.set_defaults(func=cmd_log)

    s = sub.add_parser("backup", help="copy the database while the services run")
    s.add_argument("file", help="where to write the copy")
    s.add_argument("--force", action="store_true", help="overwrite an existing file")
    s.set_defaults(func=cmd_backup)

    s = sub.add_parser(
        "purge", help="delete access events and Wi-Fi sessions past their retention period"
    )
    s.set_defaults(func=cmd_purge)

    link_cli.add_parser(sub, _load)
    return p


def main(argv: list[str] | None = None) -> int:
    from appliance.runtime import setup_logging

    args = build_parser().parse_args(argv)
    setup_logging()
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"Configuration error: {exc}", file=sys.stderr)
        return 2
    except members.InvalidInput as exc:
        for field, msg in exc.errors.items():
            print(f"{field}: {msg['en']}", file=sys.stderr)
        return 2
    except (ipc.IpcError, admins.AccountError, ValueError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
