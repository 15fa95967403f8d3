"""hostapd's generated configuration: the [wifi] section, hostile SSIDs and keys, and the
real hostapd parsing every file we write (it reads and checks the whole configuration
before it touches a driver; this VM has no Wi-Fi driver, so it stops right there)."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import stat
import subprocess
import tomllib
from pathlib import Path

import pytest

from appliance import config as config_mod
from appliance.config import ConfigError
from appliance.gateway import hostapd

HOSTAPD = "/usr/sbin/hostapd"
# An interface no machine has, so even on a box with a Wi-Fi card nothing comes up.
RADIO = f"tcap{os.getpid() % 100000}"

HOSTILE_SSIDS = [
    "Télécentre café ☕",
    'x"\nbridge=eth0',  # refused by the config (control character), see below
    "P\"quoted\"",
    '"quoted"',
    "#not a comment",
    "a=b ssid=evil",
    " leading and trailing ",
    "ssid2=41;rm -rf /",
]
HOSTILE_KEYS = [
    "#comment? no",
    "  spaces at both ends  ",
    "pipe|id=evil|mac=00:11:22:33:44:55",
    'quote"back\\slash$(reboot)`x`',
    "x" * 63,
    "abcdefgh",
]


def _cfg(networks: list[dict], *, bridge: bool = False, **wifi: object) -> config_mod.Config:
    gateway = {"lan_interface": "br-tc" if bridge else RADIO, "lan_is_bridge": bridge}
    return config_mod.parse(
        {"gateway": gateway, "wifi": {"interface": RADIO, **wifi, "networks": networks}},
        "site.toml",
    )


def _run_hostapd(path: Path) -> str:
    """hostapd's output on our file: it must get past the configuration to the driver."""
    if shutil.which(HOSTAPD) is None:
        if os.environ.get("CI"):
            pytest.fail("hostapd missing: scripts/system-deps.sh test installs it")
        pytest.skip("hostapd not installed (scripts/system-deps.sh test)")
    proc = subprocess.run([HOSTAPD, "-dd", str(path)], capture_output=True, text=True,
                          timeout=20, check=False)
    return proc.stdout + proc.stderr


def _assert_parsed(out: str) -> None:
    assert "Configuration file:" in out, out
    assert "errors found in configuration file" not in out, out
    assert not re.search(r"^Line \d+:", out, re.M), out
    # Past the configuration: hostapd went on to the driver (absent here) and stopped.
    assert re.search(r"driver|nl80211|interface flags", out, re.I), out


def _ssid_of(line: str) -> str:
    assert line.startswith("ssid2=")
    return bytes.fromhex(line.removeprefix("ssid2=")).decode("utf-8")


def test_no_networks_no_file_and_a_stale_file_is_removed(tmp_path):
    cfg = config_mod.parse(tomllib.loads(config_mod.default_config_text()))
    assert cfg.wifi.networks == () and cfg.wifi.country == "FR"
    assert hostapd.render(cfg) is None
    stale = tmp_path / "hostapd.conf"
    stale.write_text("interface=wlan0\n")
    assert hostapd.write(cfg, stale) is None
    assert not stale.exists()


def test_one_open_network_with_isolation_country_and_channel(tmp_path):
    cfg = _cfg([{"ssid": "Telecentre"}], channel=11)
    lines = hostapd.render(cfg).splitlines()
    for expected in (f"interface={RADIO}", "driver=nl80211", "country_code=FR",
                     "ieee80211d=1", "hw_mode=g", "channel=11", "ap_isolate=1", "wpa=0"):
        assert expected in lines
    assert _ssid_of(next(x for x in lines if x.startswith("ssid2="))) == "Telecentre"
    assert not any(x.startswith(("bridge=", "bss=", "wpa_passphrase")) for x in lines)
    path = hostapd.write(cfg, tmp_path / "hostapd.conf")
    _assert_parsed(_run_hostapd(path))


@pytest.mark.parametrize("ssid", [s for s in HOSTILE_SSIDS if s.isprintable()])
@pytest.mark.parametrize("key", HOSTILE_KEYS)
def test_hostile_ssids_and_keys_stay_on_their_line_and_hostapd_takes_them(tmp_path, ssid, key):
    cfg = _cfg([{"ssid": ssid, "passphrase": key, "security": "wpa2-wpa3"}], channel=36,
               country="DE")
    text = hostapd.render(cfg)
    lines = text.splitlines()
    keys = [x.split("=", 1)[0] for x in lines if x and not x.startswith("#")]
    assert len(keys) == len(set(keys))  # no directive given twice, none added
    assert "hw_mode=a" in lines and "country_code=DE" in lines
    assert [_ssid_of(x) for x in lines if x.startswith("ssid2=")] == [ssid]
    assert f"wpa_passphrase={key}" in lines  # verbatim: hostapd neither trims nor unquotes
    assert "wpa_key_mgmt=WPA-PSK SAE" in lines and "ieee80211w=1" in lines
    _assert_parsed(_run_hostapd(hostapd.write(cfg, tmp_path / "hostapd.conf")))


def test_wpa3_raw_key_and_a_second_network_on_the_bridge(tmp_path):
    raw = "0123456789abcdefABCDEF0123456789abcdef0123456789abcdef0123456789"
    cfg = _cfg(
        [
            {"ssid": "Membres", "passphrase": "membres-2026", "security": "wpa3"},
            {"ssid": "Invités", "passphrase": raw, "role": "guests"},
        ],
        bridge=True,
    )
    text = hostapd.render(cfg)
    first, second = text.split(f"\nbss={RADIO}_1\n")
    assert "bridge=br-tc" in first and "bridge=br-tc" in second
    assert "wpa_key_mgmt=SAE" in first and "ieee80211w=2" in first
    assert f"wpa_psk={raw.lower()}" in second and "wpa_key_mgmt=WPA-PSK" in second
    assert "ap_isolate=1" in first and "ap_isolate=1" in second
    assert "utf8_ssid=1" in second
    path = hostapd.write(cfg, tmp_path / "hostapd.conf")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # the keys
    _assert_parsed(_run_hostapd(path))


def test_hostapd_check_can_fail(tmp_path):
    """The check above is not vacuous: what a raw `ssid=` line would let through is caught."""
    cfg = _cfg([{"ssid": "Telecentre", "passphrase": "abcdefgh"}])
    path = tmp_path / "bad.conf"
    path.write_text(hostapd.render(cfg) + "ssid=x\nbridge=eth0\nrm -rf /\n")
    out = _run_hostapd(path)
    assert "errors found in configuration file" in out
    path.write_text(hostapd.render(cfg).replace("wpa_passphrase=abcdefgh", "wpa_passphrase=short"))
    assert "invalid WPA passphrase length" in _run_hostapd(path)


def test_write_only_when_changed_atomic(tmp_path):
    cfg = _cfg([{"ssid": "Telecentre"}])
    path = hostapd.write(cfg, tmp_path / "hostapd.conf")
    inode = path.stat().st_ino
    assert hostapd.write(cfg, path) == path and path.stat().st_ino == inode  # no rewrite
    cfg2 = _cfg([{"ssid": "Telecentre 2"}])
    hostapd.write(cfg2, path)
    assert path.read_text() == hostapd.render(cfg2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hostapd.conf"]


def test_a_value_that_slipped_past_validation_cannot_add_a_line():
    cfg = _cfg([{"ssid": "Telecentre", "passphrase": "abcdefgh"}])
    for net in (
        dataclasses.replace(cfg.wifi.networks[0], passphrase="abcdefgh\nbridge=eth0"),
        dataclasses.replace(cfg.wifi.networks[0], passphrase="short"),
        dataclasses.replace(cfg.wifi.networks[0], ssid="x" * 33),
    ):
        bad = dataclasses.replace(cfg, wifi=dataclasses.replace(cfg.wifi, networks=(net,)))
        with pytest.raises(ValueError):
            hostapd.render(bad)
    bad = dataclasses.replace(cfg, wifi=dataclasses.replace(cfg.wifi, interface="wl0\nx=1"))
    with pytest.raises(ValueError):
        hostapd.render(bad)


@pytest.mark.parametrize(
    "networks, wifi, bridge, key",
    [
        ([{"ssid": "x" * 33}], {}, False, "wifi.networks[0].ssid"),
        ([{"ssid": "é" * 17}], {}, False, "wifi.networks[0].ssid"),  # 34 bytes
        ([{"ssid": 'x"\nbridge=eth0'}], {}, False, "wifi.networks[0].ssid"),
        ([{"ssid": ""}], {}, False, "wifi.networks[0].ssid"),
        ([{"ssid": "a"}, {"ssid": "a"}], {}, True, "wifi.networks[1].ssid"),
        ([{"ssid": "a", "passphrase": "court"}], {}, False, "wifi.networks[0].passphrase"),
        ([{"ssid": "a", "passphrase": "x" * 64}], {}, False, "wifi.networks[0].passphrase"),
        ([{"ssid": "a", "passphrase": "ligne\nbridge=eth0"}], {}, False,
         "wifi.networks[0].passphrase"),
        ([{"ssid": "a", "passphrase": "mot de passe é"}], {}, False,
         "wifi.networks[0].passphrase"),
        ([{"ssid": "a", "passphrase": "ab" * 32, "security": "wpa3"}], {}, False,
         "wifi.networks[0].security"),
        ([{"ssid": "a", "security": "wep"}], {}, False, "wifi.networks[0].security"),
        ([{"ssid": "a", "role": "admins"}], {}, False, "wifi.networks[0].role"),
        ([{"ssid": "a", "hidden": True}], {}, False, "wifi.networks[0].hidden"),
        ([{"ssid": "a"}], {"channel": 14}, False, "wifi.channel"),
        ([{"ssid": "a"}], {"channel": 52}, False, "wifi.channel"),
        ([{"ssid": "a"}], {"country": "fr"}, False, "wifi.country"),
        ([{"ssid": "a"}], {"interface": "wlan1"}, False, "wifi.interface"),
        ([{"ssid": "a"}, {"ssid": "b"}], {}, False, "wifi.networks"),
        ([{"ssid": str(i)} for i in range(5)], {}, True, "wifi.networks"),
    ],
)
def test_config_errors_name_the_key_and_never_echo_the_key(networks, wifi, bridge, key):
    with pytest.raises(ConfigError) as err:
        _cfg(networks, bridge=bridge, **wifi)
    assert f"'{key}'" in str(err.value) and "site.toml" in str(err.value)
    for net in networks:
        if net.get("passphrase"):
            assert net["passphrase"] not in str(err.value)


def test_bridge_port_must_not_be_the_bridge():
    with pytest.raises(ConfigError, match="'wifi.interface'"):
        config_mod.parse({"gateway": {"lan_interface": "br0", "lan_is_bridge": True},
                          "wifi": {"interface": "br0", "networks": [{"ssid": "a"}]}})
