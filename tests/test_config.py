from __future__ import annotations

from pathlib import Path

import pytest

from appliance import config as config_mod
from appliance.config import ConfigError


def load_text(tmp_path: Path, text: str) -> config_mod.Config:
    path = tmp_path / "site.toml"
    path.write_text(text, "utf-8")
    return config_mod.load(path)


def test_default_config_is_valid_and_commented(tmp_path):
    text = config_mod.default_config_text()
    assert text.count("#") > 20
    cfg = load_text(tmp_path, text)
    assert cfg.site_name == "Télécentre"
    assert cfg.pins.lock == 17 and cfg.pins.reader_irq == 24
    assert cfg.door.lock_mode == "fail-secure" and not cfg.door.fail_safe
    assert cfg.door.card_mode == "token"
    assert set(cfg.plans) == {"coworking", "weekend", "resident"}
    assert cfg.plans["resident"].always
    assert len(cfg.plans["weekend"].windows) == 2
    assert cfg.access_log_days == 90


def test_empty_file_gives_defaults(tmp_path):
    cfg = load_text(tmp_path, "")
    assert cfg.web_port == 8080 and cfg.door.unlock_seconds == 5.0 and cfg.plans == {}


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ("[door]\nunlock_seconds = \"cinq\"", "door.unlock_seconds", "a number from 1 to 600"),
        ("[door]\nunlock_seconds = 0", "door.unlock_seconds", "a number from 1 to 600"),
        ("[door]\nlock_mode = \"failsafe\"", "door.lock_mode", '"fail-secure", "fail-safe"'),
        ("[door]\nrelay_active_high = \"yes\"", "door.relay_active_high", "true or false"),
        ("[door]\ncard_mode = \"uid\"", "door.card_mode", '"token", "uid-only"'),
        ("[hardware.pins]\nlock = 40", "hardware.pins.lock", "BCM GPIO number from 2 to 27"),
        ("[hardware.pins]\nlock = 27", "hardware.pins.lock", "already used by"),
        ("[hardware.pins]\nreader_irq = true", "hardware.pins.reader_irq", "or false"),
        ("[site]\ntimezone = \"Europe/Pariss\"", "site.timezone", "IANA time zone"),
        ("[site]\nlanguage = \"de\"", "site.language", '"fr", "en"'),
        ("[door]\nunlock_second = 5", "door.unlock_second", "a typo?"),
        ("[web]\nport = 70000", "web.port", "from 0 to 65535"),
        ("[plans.x]\nwindows = [\"mon-fri 8h-20h\"]", "plans.x.windows[0]", "'mon-fri 8h-20h'"),
        ("[plans.x]\nlabel = \"X\"", "plans.x.windows", "at least one window"),
        ("[[closures]]\nstart = \"2026-12-25\"", "closures[0].start", "a date written"),
        ("[[closures]]\nstart = 2026-12-25\nend = 2026-12-24", "closures[0].end", "on or after"),
        ("[retention]\naccess_log_days = -1", "retention.access_log_days", "from 1 to 3650"),
        ("[retention]\nwifi_sessions_days = 730", "retention.wifi_sessions_days",
         "365 or 366 (the law requires a year"),
        ("[retention]\nwifi_sessions_days = 367", "retention.wifi_sessions_days",
         "deleted after it"),
        ("[retention]\nwifi_sessions_days = 365.0", "retention.wifi_sessions_days",
         "365 or 366"),
    ],
)
def test_errors_name_file_key_value_and_expectation(tmp_path, text, key, expected):
    with pytest.raises(ConfigError) as err:
        load_text(tmp_path, text)
    message = str(err.value)
    assert str(tmp_path / "site.toml") in message
    assert f"'{key}'" in message
    assert expected in message


def test_syntax_error_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_text(tmp_path, "[door\nunlock_seconds = 5")
    with pytest.raises(ConfigError, match="telecentre init"):
        config_mod.load(tmp_path / "nope.toml")


def test_irq_can_be_unwired_and_closures_parse(tmp_path):
    cfg = load_text(
        tmp_path,
        "[hardware.pins]\nreader_irq = false\n"
        "[[closures]]\nstart = 2026-12-24\nend = 2026-12-26\nlabel = \"Noël\"\n",
    )
    assert cfg.pins.reader_irq is None
    (closure,) = cfg.closures
    assert (closure.start.isoformat(), closure.end.isoformat(), closure.label) == (
        "2026-12-24", "2026-12-26", "Noël")
