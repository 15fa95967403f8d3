"""Site configuration: one TOML file, validated at start.

Every error names the file, the key, the bad value and what was expected, so an
admin who mistyped a line can fix it without reading code.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from appliance.door.policy import Closure, Plan, Window

DEFAULT_PATH = Path("/etc/telecentre/telecentre.toml")


class ConfigError(ValueError):
    """A configuration file that cannot be used, with a message for the admin."""


@dataclass(frozen=True)
class Pins:
    lock: int = 17
    door_contact: int = 27
    exit_button: int = 22
    led_green: int = 5
    led_red: int = 6
    buzzer: int = 13
    reader_reset: int = 25
    reader_irq: int | None = 24


@dataclass(frozen=True)
class ReaderConfig:
    spi_bus: int = 0
    spi_device: int = 0
    poll_interval: float = 0.05


@dataclass(frozen=True)
class DoorConfig:
    relay_active_high: bool = True
    lock_mode: str = "fail-secure"
    unlock_seconds: float = 5.0
    held_open_seconds: float = 60.0
    card_mode: str = "token"
    enrollment_seconds: float = 60.0
    unknown_card_limit: int = 5
    unknown_card_lockout_seconds: float = 60.0

    @property
    def fail_safe(self) -> bool:
        return self.lock_mode == "fail-safe"


@dataclass(frozen=True)
class Config:
    path: Path | None
    site_name: str = "Télécentre"
    timezone: str = "Europe/Paris"
    language: str = "fr"
    state_dir: Path = Path("/var/lib/telecentre")
    runtime_dir: Path = Path("/run/telecentre")
    backend: str = "pi"
    pins: Pins = field(default_factory=Pins)
    reader: ReaderConfig = field(default_factory=ReaderConfig)
    door: DoorConfig = field(default_factory=DoorConfig)
    plans: dict[str, Plan] = field(default_factory=dict)
    closures: tuple[Closure, ...] = ()
    access_log_days: int = 90
    web_listen: str = "0.0.0.0"
    web_port: int = 8080
    metrics_listen: str = "127.0.0.1"
    door_metrics_port: int = 9101
    web_metrics_port: int = 9102

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def db_path(self) -> Path:
        return self.state_dir / "telecentre.db"

    @property
    def secret_path(self) -> Path:
        return self.state_dir / "site.key"

    @property
    def door_socket(self) -> Path:
        return self.runtime_dir / "door.sock"

    @property
    def board_path(self) -> Path:
        """Shared state of the emulated board (pin levels), for the emulate command."""
        return self.runtime_dir / "board.json"

    def with_paths(self, state_dir: Path, runtime_dir: Path) -> Config:
        return replace(self, state_dir=state_dir, runtime_dir=runtime_dir)


def default_config_text() -> str:
    """The commented default configuration that `telecentre init` writes."""
    return resources.files("appliance").joinpath("default_config.toml").read_text("utf-8")


class _Reader:
    """Typed access to one TOML table, recording which keys were used."""

    def __init__(self, source: str, data: dict[str, Any], prefix: str) -> None:
        self.source = source
        self.data = data
        self.prefix = prefix
        self.used: set[str] = set()

    def _key(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def fail(self, key: str, value: Any, expected: str) -> ConfigError:
        return ConfigError(
            f"{self.source}: key '{self._key(key)}' has the value {value!r}; expected {expected}."
        )

    def get(self, key: str, default: Any) -> Any:
        self.used.add(key)
        return self.data.get(key, default)

    def integer(self, key: str, default: int, lo: int, hi: int) -> int:
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise self.fail(key, value, f"a whole number from {lo} to {hi}")
        return value

    def number(self, key: str, default: float, lo: float, hi: float, unit: str = "") -> float:
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
            raise self.fail(key, value, f"a number from {lo:g} to {hi:g}{unit}")
        return float(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, value, "true or false")
        return value

    def string(self, key: str, default: str, *, choices: tuple[str, ...] = (), maxlen=200) -> str:
        value = self.get(key, default)
        if not isinstance(value, str) or not value.strip() or len(value) > maxlen:
            raise self.fail(key, value, f"a non-empty text of at most {maxlen} characters")
        if choices and value not in choices:
            raise self.fail(key, value, "one of " + ", ".join(f'"{c}"' for c in choices))
        return value

    def table(self, key: str) -> _Reader:
        value = self.get(key, {})
        if not isinstance(value, dict):
            raise self.fail(key, value, "a table ([section])")
        return _Reader(self.source, value, self._key(key) + ".")

    def check_unknown(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            known = ", ".join(sorted(self.used))
            raise ConfigError(
                f"{self.source}: unknown key '{self._key(unknown[0])}' "
                f"(a typo?); known keys here: {known}."
            )


def _pin(r: _Reader, key: str, default: int | None, *, optional: bool = False) -> int | None:
    value = r.get(key, default)
    if optional and value is False:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 2 <= value <= 27:
        expected = "a BCM GPIO number from 2 to 27" + (" or false" if optional else "")
        raise r.fail(key, value, expected)
    return value


def parse(data: dict[str, Any], source: str = "<config>", path: Path | None = None) -> Config:
    """Validate a parsed TOML document and build the Config."""
    root = _Reader(source, data, "")

    site = root.table("site")
    name = site.string("name", "Télécentre", maxlen=80)
    timezone = site.string("timezone", "Europe/Paris")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise site.fail("timezone", timezone, 'an IANA time zone such as "Europe/Paris"') from None
    language = site.string("language", "fr", choices=("fr", "en"))
    site.check_unknown()

    paths = root.table("paths")
    state_dir = Path(paths.string("state_dir", "/var/lib/telecentre", maxlen=4096))
    runtime_dir = Path(paths.string("runtime_dir", "/run/telecentre", maxlen=4096))
    paths.check_unknown()

    hw = root.table("hardware")
    backend = hw.string("backend", "pi", choices=("pi", "emulated"))
    p = hw.table("pins")
    pins = Pins(
        lock=_pin(p, "lock", 17),
        door_contact=_pin(p, "door_contact", 27),
        exit_button=_pin(p, "exit_button", 22),
        led_green=_pin(p, "led_green", 5),
        led_red=_pin(p, "led_red", 6),
        buzzer=_pin(p, "buzzer", 13),
        reader_reset=_pin(p, "reader_reset", 25),
        reader_irq=_pin(p, "reader_irq", 24, optional=True),
    )
    p.check_unknown()
    used: dict[int, str] = {}
    for key, value in vars(pins).items():
        if value is None:
            continue
        if value in used:
            raise ConfigError(
                f"{source}: key 'hardware.pins.{key}' uses GPIO {value}, already used by "
                f"'hardware.pins.{used[value]}'; expected a different pin for each part."
            )
        used[value] = key
    rd = hw.table("reader")
    reader = ReaderConfig(
        spi_bus=rd.integer("spi_bus", 0, 0, 6),
        spi_device=rd.integer("spi_device", 0, 0, 2),
        poll_interval=rd.number("poll_interval", 0.05, 0.01, 1.0, " seconds"),
    )
    rd.check_unknown()
    hw.check_unknown()

    d = root.table("door")
    door = DoorConfig(
        relay_active_high=d.boolean("relay_active_high", True),
        lock_mode=d.string("lock_mode", "fail-secure", choices=("fail-secure", "fail-safe")),
        unlock_seconds=d.number("unlock_seconds", 5, 1, 600, " seconds"),
        held_open_seconds=d.number("held_open_seconds", 60, 5, 3600, " seconds"),
        card_mode=d.string("card_mode", "token", choices=("token", "uid-only")),
        enrollment_seconds=d.number("enrollment_seconds", 60, 10, 600, " seconds"),
        unknown_card_limit=d.integer("unknown_card_limit", 5, 1, 1000),
        unknown_card_lockout_seconds=d.number(
            "unknown_card_lockout_seconds", 60, 1, 3600, " seconds"
        ),
    )
    d.check_unknown()

    plans: dict[str, Plan] = {}
    pt = root.table("plans")
    for plan_name in list(pt.data):
        if not plan_name.replace("-", "").replace("_", "").isalnum() or len(plan_name) > 40:
            raise pt.fail(plan_name, plan_name, "a plan name of letters, digits, - and _")
        t = pt.table(plan_name)
        label = t.string("label", plan_name, maxlen=80)
        always = t.boolean("always", False)
        raw_windows = t.get("windows", [])
        if not isinstance(raw_windows, list) or not all(isinstance(w, str) for w in raw_windows):
            raise t.fail("windows", raw_windows, 'a list of texts like ["mon-fri 08:00-20:00"]')
        windows = []
        for i, text in enumerate(raw_windows):
            try:
                windows.append(Window.parse(text))
            except ValueError as exc:
                raise t.fail(f"windows[{i}]", text, str(exc)) from None
        if not windows and not always:
            raise t.fail("windows", raw_windows, "at least one window, or always = true")
        t.check_unknown()
        plans[plan_name] = Plan(name=plan_name, label=label, windows=tuple(windows), always=always)
    pt.check_unknown()

    closures = []
    raw_closures = root.get("closures", [])
    if not isinstance(raw_closures, list):
        raise root.fail("closures", raw_closures, "a list of [[closures]] tables")
    for i, item in enumerate(raw_closures):
        c = _Reader(source, item if isinstance(item, dict) else {}, f"closures[{i}].")
        start, end = c.get("start", None), c.get("end", None)
        if end is None:
            end = start
        for key, value in (("start", start), ("end", end)):
            if not isinstance(value, dt.date) or isinstance(value, dt.datetime):
                raise c.fail(key, value, "a date written 2026-12-25 (no quotes)")
        if end < start:
            raise c.fail("end", end, f"a date on or after start ({start})")
        label = c.string("label", "Fermeture", maxlen=80)
        c.check_unknown()
        closures.append(Closure(start=start, end=end, label=label))

    ret = root.table("retention")
    access_log_days = ret.integer("access_log_days", 90, 1, 3650)
    ret.check_unknown()

    web = root.table("web")
    web_listen = web.string("listen", "0.0.0.0")
    web_port = web.integer("port", 8080, 0, 65535)
    web.check_unknown()

    met = root.table("metrics")
    metrics_listen = met.string("listen", "127.0.0.1")
    door_metrics_port = met.integer("door_port", 9101, 0, 65535)
    web_metrics_port = met.integer("web_port", 9102, 0, 65535)
    met.check_unknown()
    root.check_unknown()

    return Config(
        path=path,
        site_name=name,
        timezone=timezone,
        language=language,
        state_dir=state_dir,
        runtime_dir=runtime_dir,
        backend=backend,
        pins=pins,
        reader=reader,
        door=door,
        plans=plans,
        closures=tuple(closures),
        access_log_days=access_log_days,
        web_listen=web_listen,
        web_port=web_port,
        metrics_listen=metrics_listen,
        door_metrics_port=door_metrics_port,
        web_metrics_port=web_metrics_port,
    )


def load(path: Path | str) -> Config:
    """Read and validate a configuration file."""
    path = Path(path)
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such file; create one with `telecentre init --config {path}`."
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read ({exc}).") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}.") from None
    return parse(data, str(path), path)
