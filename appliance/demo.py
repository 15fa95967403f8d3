"""`telecentre demo`: the whole appliance in one process, on emulated hardware.

It runs on any Linux laptop, unprivileged: an emulated MFRC522 behind a
spidev-compatible object (the real driver code path runs), gpiozero's
MockFactory for the pins, the real SQLite file and the real web server, and the
link service on the emulated line (appliance/link/emulated.py), so the Line page has
live state, history and "test now" with no network traffic at all, and the Wi-Fi
gateway on its dry-run backend (appliance/gateway/dryrun.py): the real gateway service
and captive portal, with tables kept in memory and emulated Wi-Fi devices whose traffic
moves the quotas. The browser the visitor opens the portal with is one of those devices.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from appliance import config as config_mod
from appliance import db, ipc, members, wifi_accounts
from appliance.config import Config
from appliance.door.hardware import build_hardware
from appliance.door.service import DoorService, load_site_secret
from appliance.gateway.dryrun import DryRun
from appliance.link.service import LinkService
from appliance.runtime import ensure_admin, init_state, serve_metrics

log = logging.getLogger(__name__)

DEMO_ADMIN = "admin"
# Members seeded in a new demo folder; the first logs in on the portal with the PIN.
DEMO_MEMBERS = (
    ("Camille Martin", "camille.martin@example.org"),
    ("Louis Bernard", "louis.bernard@example.org"),
    ("Inès Garnier", "ines.garnier@example.org"),
)
DEMO_PIN = "246813"


def demo_config_text(
    base: Path, web_host: str, web_port: int, door_metrics_port: int, web_metrics_port: int,
    link_metrics_port: int = 0, gateway_metrics_port: int = 0,
) -> str:
    """The default config, pointed at the demo's folders, emulated hardware and line.

    The line is probed every 2 s and tested for 4 s per direction, so a visitor sees
    an outage within seconds and "test now" finishes while they watch. The gateway
    runs dry-run, saves its counts every 5 s (the panel's Wi-Fi page follows them),
    and guests get 200 MB a day, so a quota can be spent while watching.
    """
    text = config_mod.default_config_text()
    replacements = {
        r"^name = .*$": 'name = "Télécentre de démonstration"',
        r"^state_dir = .*$": f'state_dir = "{base / "state"}"',
        r"^runtime_dir = .*$": f'runtime_dir = "{base / "run"}"',
        r"^backend = .*$": 'backend = "emulated"',
        r'^listen = "0.0.0.0"$': f'listen = "{web_host}"',
        r"^port = 8080$": f"port = {web_port}",
        r"^door_port = .*$": f"door_port = {door_metrics_port}",
        r"^web_port = .*$": f"web_port = {web_metrics_port}",
        r"^link_port = .*$": f"link_port = {link_metrics_port}",
        r'^line = "real"$': 'line = "emulated"',
        r"^probe_interval = .*$": "probe_interval = 2",
        r"^probe_timeout = .*$": "probe_timeout = 0.5",
        r"^test_seconds = .*$": "test_seconds = 4",
        r'^backend = "kernel"$': 'backend = "dry-run"',
        r"^persist_seconds = .*$": "persist_seconds = 5",
        r"^daily_quota_mb = 1000$": "daily_quota_mb = 200",
        r"^gateway_port = .*$": f"gateway_port = {gateway_metrics_port}",
    }
    for pattern, repl in replacements.items():
        text, n = re.subn(pattern, repl.replace("\\", "\\\\"), text, count=1, flags=re.M)
        assert n == 1, pattern
    return text


class Demo:
    """The appliance running in this process on emulated hardware."""

    def __init__(
        self,
        base_dir: Path,
        *,
        web_host: str = "127.0.0.1",
        web_port: int = 8080,
        door_metrics_port: int = 0,
        web_metrics_port: int = 0,
        link_metrics_port: int = 0,
        gateway_metrics_port: int = 0,
        portal_port: int | None = None,
    ) -> None:
        self.base = Path(base_dir).resolve()
        self.web_host = web_host
        self.web_port = web_port
        self.door_metrics_port = door_metrics_port
        self.web_metrics_port = web_metrics_port
        self.link_metrics_port = link_metrics_port
        self.gateway_metrics_port = gateway_metrics_port
        # The portal next to the panel (8088 next to 8080); a free one with --port 0.
        self.portal_port = portal_port if portal_port is not None else (
            web_port + 8 if web_port else 0)
        self.gateway: DryRun | None = None
        self._gateway_metrics = None
        self._portal = None
        self.member_login = ""
        self.admin_user = DEMO_ADMIN
        self.admin_password = ""
        self.config: Config | None = None
        self.service: DoorService | None = None
        self.link: LinkService | None = None
        self._link_metrics = None
        self._web = None
        self._web_thread: threading.Thread | None = None
        self._metrics: list = []

    @property
    def config_path(self) -> Path:
        return self.base / "telecentre.toml"

    def start(self) -> Demo:
        from appliance.web.server import make_metrics_server, make_server

        self.base.mkdir(parents=True, exist_ok=True)
        # Written each time so a demo folder from an older version still starts.
        self.config_path.write_text(
            demo_config_text(
                self.base,
                self.web_host,
                self.web_port,
                self.door_metrics_port,
                self.web_metrics_port,
                self.link_metrics_port,
                self.gateway_metrics_port,
            ),
            "utf-8",
        )
        cfg = self.config = config_mod.load(self.config_path)
        init_state(cfg)
        self.admin_password = ensure_admin(cfg, self.admin_user, None) or ""
        hardware = build_hardware(cfg)
        self.service = DoorService(cfg, hardware, site_secret=load_site_secret(cfg.secret_path))
        self.service.start()
        self._metrics.append(
            serve_metrics(self.service.registry, cfg.metrics_listen, cfg.door_metrics_port)
        )
        self.link = LinkService(cfg).start()
        self._link_metrics = serve_metrics(
            self.link.registry, cfg.metrics_listen, cfg.link_metrics_port
        )
        self._web = make_server(cfg, cfg.web_listen, cfg.web_port)
        self._web_thread = threading.Thread(target=self._web.run, name="web", daemon=True)
        self._web_thread.start()
        web_metrics = make_metrics_server(cfg, self._web)
        if web_metrics is not None:
            self._metrics.append(web_metrics)
        self._start_wifi(cfg)
        return self

    def _start_wifi(self, cfg: Config) -> None:
        """The gateway (dry-run), a few emulated devices, and the captive portal."""
        from appliance.web.server import make_portal_server

        self.member_login = seed_members(cfg)
        self.gateway = DryRun(cfg).start()
        self._gateway_metrics = serve_metrics(
            self.gateway.service.registry, cfg.metrics_listen, cfg.gateway_metrics_port
        )
        emulator = self.gateway.emulator
        if len(emulator.devices) == 1:  # a new demo folder: only "this browser" so far
            for who in DEMO_MEMBERS[1:]:
                emulator.add("member", owner=who[1])
            emulator.add("voucher")
            emulator.add("guest", 2)
            emulator.add("visitor")
        self._portal = make_portal_server(
            cfg, self.web_host, self.portal_port,
            registry=self._web.flask_app.extensions["metrics_registry"],
        )
        # Phones reach the portal at the box's address; the demo's visitor at this one.
        ext = self._portal.flask_app.extensions
        ext["portal_url"] = self.portal_url
        ext["portal_hosts"] = {*ext["portal_hosts"], urlsplit(self.portal_url).hostname}
        threading.Thread(target=self._portal.run, name="portal", daemon=True).start()

    @property
    def url(self) -> str:
        host = self.web_host if self.web_host not in ("0.0.0.0", "::") else "127.0.0.1"
        return f"http://{host}:{self._web.bound_port}/"

    @property
    def portal_url(self) -> str:
        host = self.web_host if self.web_host not in ("0.0.0.0", "::") else "127.0.0.1"
        return f"http://{host}:{self._portal.bound_port}/"

    @property
    def gateway_metrics_url(self) -> str:
        return f"http://127.0.0.1:{self._gateway_metrics.server_port}/metrics"

    @property
    def door_metrics_url(self) -> str:
        return f"http://127.0.0.1:{self._metrics[0].server_port}/metrics"

    @property
    def link_metrics_url(self) -> str:
        return f"http://127.0.0.1:{self._link_metrics.server_port}/metrics"

    @property
    def lock_energized(self) -> bool:
        """Whether the relay's pin is driven high right now."""
        assert self.service is not None
        return bool(self.service.hw.pin(self.service.config.pins.lock).state)

    def emulate(self, action: str, **args) -> dict:
        assert self.config is not None
        return ipc.call(self.config.door_socket, "emulate", action=action, **args)

    def tap(self, uid_hex: str, hold: float = 0.6) -> None:
        """Present a card on the emulated reader, then take it away."""
        self.emulate("tap", uid=uid_hex, hold=hold)

    def stop(self) -> None:
        if self._web is not None:
            self._web.close()
        if self._portal is not None:
            self._portal.close()
        if self._gateway_metrics is not None:
            self._gateway_metrics.shutdown()
        if self.gateway is not None:
            self.gateway.stop()
        for server in self._metrics:
            server.shutdown()
        if self._link_metrics is not None:
            self._link_metrics.shutdown()
        if self.link is not None:
            self.link.stop()
        if self.service is not None:
            self.service.stop()


def banner(demo: Demo) -> str:
    lines = [
        "",
        "  Télécentre — démonstration sur matériel émulé / demo on emulated hardware",
        "",
        f"  Panneau / panel:      {demo.url}",
        f"  Identifiant / login:  {demo.admin_user}",
        f"  Mot de passe / pass:  {demo.admin_password}",
        f"  Métriques / metrics:  {demo.door_metrics_url}",
        f"  Ligne / line metrics: {demo.link_metrics_url}",
        "",
        "  Présenter un badge depuis un autre terminal / tap a badge from another terminal:",
        f"    .venv/bin/telecentre --config {demo.config_path} emulate tap 04A1B2C3D4E5F6",
        f"    .venv/bin/telecentre --config {demo.config_path} emulate open|close|exit|status",
        "",
        "  Ligne émulée (30/1 Mbit/s) / emulated line: break or repair it, load it, test it:",
        f"    .venv/bin/telecentre --config {demo.config_path} link emulate break "
        "box|access|upstream|dns",
        f"    .venv/bin/telecentre --config {demo.config_path} link emulate repair all",
        f"    .venv/bin/telecentre --config {demo.config_path} link emulate busy|quiet|status",
        f"    .venv/bin/telecentre --config {demo.config_path} link test",
        "",
        f"  Portail captif / captive portal: {demo.portal_url}",
        "    Ce navigateur y est un appareil Wi-Fi émulé : acceptez les conditions, ou",
        "    connectez-vous en membre / this browser is an emulated Wi-Fi device there:",
        f"    accept the terms, or log in as a member: {demo.member_login}, PIN {DEMO_PIN}",
        f"  Passerelle / gateway metrics: {demo.gateway_metrics_url}",
        "  Wi-Fi émulé (passerelle sans réseau) / emulated Wi-Fi (dry-run gateway):",
        f"    .venv/bin/telecentre --config {demo.config_path} gateway emulate status",
        f"    .venv/bin/telecentre --config {demo.config_path} gateway emulate add "
        "guest|voucher|member|visitor [N]",
        f"    .venv/bin/telecentre --config {demo.config_path} gateway emulate download "
        "browser 200",
        f"    .venv/bin/telecentre --config {demo.config_path} gateway emulate remove NAME|all",
        "",
        "  Ctrl-C pour arrêter / to stop.",
        "",
    ]
    return "\n".join(lines)


def run(base_dir: Path, web_host: str, web_port: int) -> int:
    from appliance.runtime import wait_for_signal

    demo = Demo(base_dir, web_host=web_host, web_port=web_port)
    try:
        demo.start()
    except OSError as exc:
        demo.stop()  # what had started already
        if "Address already in use" in str(exc) or getattr(exc, "errno", None) == 98:
            ports = f"{web_port} or {demo.portal_port} (the captive portal)"
            print(f"Port {ports} is busy: run `make demo PORT=8081` (or another port).")
            return 2
        raise
    print(banner(demo), flush=True)
    try:
        wait_for_signal()
    finally:
        demo.stop()
        time.sleep(0.1)
    return 0


def seed_members(cfg: Config) -> str:
    """Members for a new demo folder, the first with a Wi-Fi PIN; returns its login."""
    conn = db.open_db(cfg.db_path)
    try:
        with db.transaction(conn):
            for name, email in DEMO_MEMBERS:
                row = conn.execute("SELECT id FROM members WHERE email = ?", (email,)).fetchone()
                member_id = row[0] if row else members.add_member(
                    conn, {"name": name, "email": email, "notes": "démonstration / demo"})
                if email == DEMO_MEMBERS[0][1]:
                    wifi_accounts.set_portal_secret(conn, member_id, DEMO_PIN)
    finally:
        conn.close()
    return DEMO_MEMBERS[0][1]
