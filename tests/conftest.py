"""Shared fixtures: an emulated site in a temporary folder, and tool requirements."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from appliance import config as config_mod
from appliance.runtime import init_state

IN_CI = os.environ.get("CI") == "true"


def require_tool(name: str) -> str:
    """The path of a system tool; under CI=true its absence fails the test, else skips it."""
    path = shutil.which(name) or (name if os.path.isabs(name) and os.path.exists(name) else None)
    if path is None:
        message = f"{name} is not installed (make test installs it when run as root)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def require_root() -> None:
    """The namespace tests need root: under CI=true its absence fails the test, else skips."""
    if os.geteuid() != 0:
        message = "the namespace tests need root (make test runs them as root)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


def write_site_config(base: Path, **door: object) -> Path:
    """A config for an emulated site under `base`, with door overrides."""
    text = config_mod.default_config_text()
    text = text.replace('state_dir = "/var/lib/telecentre"', f'state_dir = "{base / "state"}"')
    text = text.replace('runtime_dir = "/run/telecentre"', f'runtime_dir = "{base / "run"}"')
    text = text.replace('backend = "pi"', 'backend = "emulated"')
    text = text.replace("door_port = 9101", "door_port = 0")
    text = text.replace("web_port = 9102", "web_port = 0")
    for key, value in door.items():
        rendered = f'"{value}"' if isinstance(value, str) else str(value).lower()
        lines = text.splitlines()
        for i, line in enumerate(lines):
            if line.startswith(f"{key} = "):
                lines[i] = f"{key} = {rendered}"
                break
        else:
            raise KeyError(key)
        text = "\n".join(lines) + "\n"
    path = base / "telecentre.toml"
    path.write_text(text, "utf-8")
    return path


@pytest.fixture
def site(tmp_path: Path) -> config_mod.Config:
    """An initialised emulated site: config, database and site secret."""
    cfg = config_mod.load(write_site_config(tmp_path))
    init_state(cfg)
    return cfg
