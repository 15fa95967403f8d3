"""The Pi's boot configuration: the config.txt fragment and the device-tree overlay carry the
pin map of appliance/default_config.toml (a pin moved there and not here fails), and the
overlay compiles with dtc without a warning."""

from __future__ import annotations

import re
import subprocess
import tomllib
import xml.etree.ElementTree as ET
from dataclasses import replace

import pytest

from appliance import config as config_mod
from appliance.config import Config
from appliance.door.devices import Lock
from tests.conftest import require_tool
from tests.shipping.units import FIRMWARE_DIR, REPO

CONFIG_TXT = FIRMWARE_DIR / "config.txt"
OVERLAY = FIRMWARE_DIR / "telecentre-pins.dts"
# The overlay's pin groups, in the order of their brcm,pins cells (and of its overrides).
OUTPUTS = ("lock", "led_green", "led_red", "buzzer", "reader_reset")
INPUTS = ("door_contact", "exit_button", "reader_irq")


def default_config() -> Config:
    return config_mod.parse(tomllib.loads(config_mod.default_config_text()), "default_config.toml")


def boot_settings(text: str, section: str = "all") -> tuple[set[str], dict[int, set[str]]]:
    """config.txt → (dtparam/dtoverlay lines, GPIO → its gpio= options) for one [section]."""
    params: set[str] = set()
    gpios: dict[int, set[str]] = {}
    current = "all"
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            current = line.strip("[]")
            continue
        if current != section:
            continue
        key, _, val = line.partition("=")
        if key == "gpio":
            pins, _, options = val.partition("=")
            for part in pins.split(","):
                lo, _, hi = part.partition("-")
                for pin in range(int(lo), int(hi or lo) + 1):
                    assert pin not in gpios, f"GPIO{pin} set twice in config.txt"
                    gpios[pin] = set(options.split(","))
        else:
            params.add(line)
    return params, gpios


def firmware_problems(cfg: Config, text: str) -> list[str]:
    """What the config.txt fragment gets wrong for this site configuration."""
    problems = []
    params, gpios = boot_settings(text)
    for needed in ("dtparam=spi=on", "dtparam=watchdog=on"):
        if needed not in params:
            problems.append(f"missing {needed}")
    if cfg.reader.spi_bus != 0:
        problems.append(f"reader on SPI{cfg.reader.spi_bus}: needs its dtoverlay=spiN-...")

    def expect(name: str, pin: int | None, options: set[str]) -> None:
        if pin is None:
            return
        got = gpios.get(pin)
        if got is None or not options <= got:
            problems.append(f"{name} (GPIO{pin}) needs gpio={pin}={','.join(sorted(options))}, "
                            f"config.txt has {sorted(got) if got else 'nothing'}")

    locked = Lock.locked_pin_level(cfg.door.relay_active_high, cfg.door.fail_safe)
    expect("lock", cfg.pins.lock, {"op", "dh" if locked else "dl"})
    for name in ("led_green", "led_red", "buzzer"):
        expect(name, getattr(cfg.pins, name), {"op", "dl"})
    expect("reader_reset", cfg.pins.reader_reset, {"op"})
    for name in INPUTS:
        expect(name, getattr(cfg.pins, name), {"ip", "pu"})
    wired = {p for p in vars(cfg.pins).values() if p is not None}
    for pin in sorted(set(gpios) - wired):
        problems.append(f"GPIO{pin} set in config.txt but not in [hardware.pins]")
    return problems


def test_config_txt_carries_the_default_pin_map():
    assert firmware_problems(default_config(), CONFIG_TXT.read_text()) == []


def test_the_lock_is_low_at_power_on_with_the_default_wiring():
    _, gpios = boot_settings(CONFIG_TXT.read_text())
    assert gpios[17] == {"op", "dl"}  # fail-secure strike, active-high relay: relay off


@pytest.mark.parametrize(
    "change",
    [
        lambda c: replace(c, pins=replace(c.pins, lock=18)),
        lambda c: replace(c, pins=replace(c.pins, door_contact=26)),
        lambda c: replace(c, door=replace(c.door, lock_mode="fail-safe")),
        lambda c: replace(c, door=replace(c.door, relay_active_high=False)),
        lambda c: replace(c, reader=replace(c.reader, spi_bus=1)),
    ],
    ids=["lock-moved", "contact-moved", "fail-safe", "active-low-relay", "spi1"],
)
def test_a_changed_pin_map_breaks_the_check(change):
    assert firmware_problems(change(default_config()), CONFIG_TXT.read_text())


def test_the_overlay_is_loaded_on_the_pi4_only():
    pi4, _ = boot_settings(CONFIG_TXT.read_text(), "pi4")
    assert "dtoverlay=telecentre-pins" in pi4
    everywhere, _ = boot_settings(CONFIG_TXT.read_text())
    assert not any(p.startswith("dtoverlay=telecentre") for p in everywhere)


@pytest.fixture(scope="module")
def overlay_dts(tmp_path_factory) -> str:
    """The overlay compiled with dtc (no warning allowed), then decompiled."""
    dtc = require_tool("dtc")
    out = tmp_path_factory.mktemp("dtbo") / "telecentre-pins.dtbo"
    result = subprocess.run(
        [dtc, "-@", "-I", "dts", "-O", "dtb", "-o", str(out), str(OVERLAY)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert out.read_bytes()[:4] == b"\xd0\x0d\xfe\xed"  # FDT magic
    back = subprocess.run(
        [dtc, "-I", "dtb", "-O", "dts", str(out)], capture_output=True, text=True, timeout=60
    )
    assert back.returncode == 0, back.stderr
    return back.stdout


def _cells(dts: str, node: str, prop: str) -> list[int]:
    block = re.search(rf"{node} {{(.*?)}};", dts, re.S)
    assert block, node
    cells = re.search(rf"{re.escape(prop)} = <([^>]*)>;", block.group(1))
    assert cells, f"{node}/{prop}"
    return [int(c, 0) for c in cells.group(1).split()]


def test_the_overlay_compiles_and_carries_the_default_pin_map(overlay_dts):
    cfg = default_config()
    assert _cells(overlay_dts, "telecentre_outputs", "brcm,pins") == [
        getattr(cfg.pins, n) for n in OUTPUTS
    ]
    assert _cells(overlay_dts, "telecentre_outputs", "brcm,function") == [1] * len(OUTPUTS)
    assert _cells(overlay_dts, "telecentre_inputs", "brcm,pins") == [
        getattr(cfg.pins, n) for n in INPUTS
    ]
    assert _cells(overlay_dts, "telecentre_inputs", "brcm,function") == [0] * len(INPUTS)
    assert _cells(overlay_dts, "telecentre_inputs", "brcm,pull") == [2] * len(INPUTS)
    assert "__symbols__" in overlay_dts and "__fixups__" in overlay_dts  # an overlay (-@)
    for name in (*OUTPUTS, *INPUTS):
        assert re.search(rf"^\s*{name} = ", overlay_dts, re.M), f"no override for {name}"


def test_the_wiring_diagram_and_pinout_table_name_every_pin():
    cfg = default_config()
    svg = ET.parse(REPO / "docs" / "wiring.svg").getroot()
    assert svg.tag.endswith("svg")
    svg_text = " ".join(t.strip() for t in svg.itertext())
    doc = (REPO / "docs" / "hardware.md").read_text()
    for name, pin in vars(cfg.pins).items():
        assert f"GPIO{pin}" in svg_text, f"{name}: GPIO{pin} not in docs/wiring.svg"
        assert f"GPIO{pin}" in doc, f"{name}: GPIO{pin} not in docs/hardware.md"
    assert "wiring.svg" in doc
