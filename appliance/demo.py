"""`telecentre demo`: the whole appliance in one process, on emulated hardware.

It runs on any Linux laptop, unprivileged: an emulated MFRC522 behind a
spidev-compatible object (the real driver code path runs), gpiozero's
MockFactory for the pins, the real SQLite file and the real web server, and the
link service on the emulated line (appliance/link/emulated.py), so the Line page has
live state, history and "test now" with no network traffic at all.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from pathlib import Path

from appliance import config as config_mod
from appliance import ipc
from appliance.config import Config
from appliance.door.hardware import build_hardware
from appliance.door.service import DoorService, load_site_secret
from appliance.link.service import LinkService
from appliance.runtime import ensure_admin, init_state, serve_metrics

log = logging.getLogger(__name__)

DEMO_ADMIN = "admin"


def demo_config_text(
    base: Path, web_host: str, web_port: int, door_metrics_port: int, web_metrics_port: int,
    link_metrics_port: int = 0,
) -> str:
    """The default config, pointed at the demo's folders, emulated hardware and line.

    The line is probed every 2 s and tested for 4 s per direction, so a visitor sees
    an outage within seconds and "test now" finishes while they watch.
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
    ) -> None:
        self.base = Path(base_dir).resolve()
        self.web_host = web_host
        self.web_port = web_port
        self.door_metrics_port = door_metrics_port
        self.web_metrics_port = web_metrics_port
        self.link_metrics_port = link_metrics_port
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
        return self

    @property
    def url(self) -> str:
        host = self.web_host if self.web_host not in ("0.0.0.0", "::") else "127.0.0.1"
        return f"http://{host}:{self._web.bound_port}/"

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
        if "Address already in use" in str(exc) or getattr(exc, "errno", None) == 98:
            print(f"Port {web_port} is busy: run `make demo PORT=8081` (or another port).")
            return 2
        raise
    print(banner(demo), flush=True)
    try:
        wait_for_signal()
    finally:
        demo.stop()
        time.sleep(0.1)
    return 0
