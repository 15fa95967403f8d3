"""Reading systemd unit files as systemd does: repeated keys add up, an empty value resets."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SYSTEMD_DIR = REPO / "systemd"
FIRMWARE_DIR = REPO / "firmware"


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections → keys → values, with continuation lines joined and `Key=` resetting."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"key outside a section: {line!r}"
        key, _, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if value == "":
            current[key] = []
        else:
            current.setdefault(key, []).append(value)
    return sections


def our_services() -> list[Path]:
    return sorted(SYSTEMD_DIR.glob("telecentre*.service"))


def our_units() -> list[Path]:
    return sorted([*our_services(), *SYSTEMD_DIR.glob("telecentre*.target"),
                   *SYSTEMD_DIR.glob("telecentre*.path")])


def drop_ins() -> list[Path]:
    return sorted(SYSTEMD_DIR.glob("*.service.d/*.conf"))


def exec_binaries(unit: dict[str, dict[str, list[str]]]) -> set[str]:
    """The absolute programs a unit's Exec*= lines run (prefixes like - and + removed)."""
    programs = set()
    for key, values in unit.get("Service", {}).items():
        if not key.startswith("Exec"):
            continue
        for value in values:
            program = value.split()[0].lstrip("-@:+!|")
            if program.startswith("/"):
                programs.add(program)
    return programs


def words(unit: dict[str, dict[str, list[str]]], section: str, key: str) -> list[str]:
    """All whitespace-separated words of a (possibly repeated) key."""
    return [w for v in unit.get(section, {}).get(key, []) for w in v.split()]
