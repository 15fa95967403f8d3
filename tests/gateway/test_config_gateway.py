"""The [gateway] section: defaults from the issue, errors that name the key."""

from __future__ import annotations

import tomllib

import pytest

from appliance import config as config_mod
from appliance.config import ConfigError


def _parse(extra: str) -> config_mod.Config:
    return config_mod.parse(tomllib.loads(extra), "site.toml")


def test_defaults_match_the_issue():
    cfg = config_mod.parse(tomllib.loads(config_mod.default_config_text()))
    g = cfg.gateway
    assert (g.guest.daily_quota_mb, g.guest.down_mbit, g.guest.up_mbit) == (1000, 5, 0.5)
    assert (g.member.daily_quota_mb, g.member.down_mbit, g.member.up_mbit) == (20000, 25, 1)
    assert g.persist_seconds <= 60
    assert cfg.gateway_socket.name == "gateway.sock"
    assert cfg.gateway_metrics_port == 9104


@pytest.mark.parametrize(
    "text, key",
    [
        ('[gateway]\nlan_interface = "eth0"', "gateway.lan_interface"),
        ('[gateway]\nlan_interface = "wlan0; reboot"', "gateway.lan_interface"),
        ('[gateway]\nlan_address = "10.42.0.0/24"', "gateway.lan_address"),
        ('[gateway]\nlan_address = "fd00::1/64"', "gateway.lan_address"),
        ('[gateway]\nblocked_networks = ["10.0.0.0/33"]', "gateway.blocked_networks[0]"),
        ("[gateway]\npersist_seconds = 300", "gateway.persist_seconds"),
        ('[gateway.guest]\nwhen_spent = "slow"', "gateway.guest.when_spent"),
        ("[gateway.member]\ndaily_quota_mb = 0", "gateway.member.daily_quota_mb"),
        ("[gateway]\nquota = 1", "gateway.quota"),
    ],
)
def test_errors_name_the_key(text, key):
    with pytest.raises(ConfigError) as err:
        _parse(text)
    assert f"'{key}'" in str(err.value) and "site.toml" in str(err.value)


def test_overrides():
    cfg = _parse(
        '[gateway]\nlan_interface = "br-lan"\nlan_is_bridge = true\n'
        '[gateway.guest]\ndaily_quota_mb = 500\nwhen_spent = "throttle"\n'
    )
    assert cfg.gateway.lan_is_bridge and cfg.gateway.lan_interface == "br-lan"
    assert cfg.gateway.guest.daily_quota_mb == 500 and cfg.gateway.guest.when_spent == "throttle"
    assert cfg.gateway.member.daily_quota_mb == 20000
