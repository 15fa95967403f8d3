"""dnsmasq's generated configuration and the neighbour-table parsing: pure, no network."""

from __future__ import annotations

import dataclasses
import stat

import pytest

from appliance import config as config_mod
from appliance.gateway import dnsmasq
from appliance.gateway.neighbours import pick_mac


def _cfg(**gateway: object) -> config_mod.Config:
    return config_mod.parse({"gateway": gateway})


def test_defaults_range_router_dns_and_option_114():
    lines = dnsmasq.render(_cfg()).splitlines()
    assert "interface=wlan0" in lines and "dhcp-authoritative" in lines
    assert "quiet-dhcp" in lines  # no lease (MAC, IP, name) in the journal
    assert "dhcp-range=10.42.0.10,10.42.0.250,255.255.255.0,60m" in lines
    assert "dhcp-option=option:router,10.42.0.1" in lines
    assert "dhcp-option=option:dns-server,10.42.0.1" in lines
    assert 'dhcp-option=114,"http://10.42.0.1/api/captive"' in lines
    assert not any(line.startswith(("server=", "no-resolv")) for line in lines)


def test_configured_range_lease_upstream_and_small_lan():
    text = dnsmasq.render(_cfg(lan_interface="br-lan", lan_address="192.168.50.1/28",
                               lease_minutes=720, upstream_dns=["9.9.9.9", "1.1.1.1"]))
    assert "dhcp-range=192.168.50.2,192.168.50.14,255.255.255.240,720m" in text
    assert "no-resolv\nserver=9.9.9.9\nserver=1.1.1.1\n" in text
    assert "api/captive" in text and "192.168.50.1" in text
    text = dnsmasq.render(_cfg(dhcp_first="10.42.0.100", dhcp_last="10.42.0.120"))
    assert "dhcp-range=10.42.0.100,10.42.0.120,255.255.255.0,60m" in text


@pytest.mark.parametrize(
    "field, value",
    [
        ("lan_interface", "br0\ndhcp-script=/tmp/x"),
        ("dhcp_first", "10.42.0.5\nconf-file=/etc/shadow"),
        ("dhcp_last", '10.42.0.9,"'),
    ],
)
def test_nothing_unvalidated_becomes_a_directive(field, value):
    """Even a value that slipped past config validation cannot add a line."""
    cfg = _cfg()
    bad = dataclasses.replace(cfg, gateway=dataclasses.replace(cfg.gateway, **{field: value}))
    with pytest.raises(ValueError):
        dnsmasq.render(bad)


def test_write_is_atomic_and_readable_by_dnsmasq(tmp_path):
    path = dnsmasq.write(_cfg(), tmp_path / "d")
    assert path.name == "telecentre.conf" and path.read_text() == dnsmasq.render(_cfg())
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["telecentre.conf"]


def test_write_leaves_an_unchanged_file_alone(tmp_path):
    """A restart of the gateway with the same settings must not touch the file: the path
    unit would restart dnsmasq for nothing (DHCP and DNS gone on the LAN for a moment)."""
    path = dnsmasq.write(_cfg(), tmp_path / "d")
    before = path.stat()
    assert dnsmasq.write(_cfg(), tmp_path / "d") == path
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns, after.st_ctime_ns) == (
        before.st_ino, before.st_mtime_ns, before.st_ctime_ns)
    assert [p.name for p in path.parent.iterdir()] == ["telecentre.conf"]


def test_write_replaces_a_changed_file_atomically(tmp_path):
    """New content goes in as a new file renamed over the old one: dnsmasq (or anyone
    holding the old file open) reads the old file or the new one whole, never a mix."""
    path = dnsmasq.write(_cfg(), tmp_path / "d")
    old_text, old_inode = path.read_text(), path.stat().st_ino
    changed = _cfg(lan_interface="eth1")
    with path.open() as held:
        assert dnsmasq.write(changed, tmp_path / "d") == path
        assert held.read() == old_text  # the old file was not rewritten in place
    assert path.stat().st_ino != old_inode
    assert path.read_text() == dnsmasq.render(changed) and "interface=eth1" in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["telecentre.conf"]
    # Content that is not ours (a hand edit, a truncated file) is replaced too.
    path.write_bytes(b"\xff garbage\n")
    dnsmasq.write(changed, tmp_path / "d")
    assert path.read_text() == dnsmasq.render(changed)


def test_pick_mac_from_neighbour_entries():
    entries = [
        {"dst": "10.42.0.11", "dev": "br0", "state": ["FAILED"]},
        {"dst": "10.42.0.12", "dev": "br0", "lladdr": "02:00:00:00:00:0C", "state": ["STALE"]},
        {"dst": "10.42.0.13", "dev": "br0", "lladdr": "02:00:00:00:00:0d", "state": ["INCOMPLETE"]},
        {"dst": "10.42.0.14", "dev": "br0", "lladdr": "01:00:5e:00:00:01", "state": ["REACHABLE"]},
        {"dst": "10.42.0.15", "dev": "br0", "lladdr": "$(id)", "state": ["REACHABLE"]},
    ]
    assert pick_mac(entries, "10.42.0.12") == "02:00:00:00:00:0c"
    for ip in ("10.42.0.11", "10.42.0.13", "10.42.0.14", "10.42.0.15", "10.42.0.99"):
        assert pick_mac(entries, ip) is None, ip
    assert pick_mac({"not": "a list"}, "10.42.0.12") is None


def test_portal_url_name_in_option_114_and_resolved_to_the_box():
    cfg = _cfg(portal_url="http://Wifi.Telecentre-Test.fr/")
    assert cfg.gateway.portal_url == "http://wifi.telecentre-test.fr/"
    lines = dnsmasq.render(cfg).splitlines()
    assert 'dhcp-option=114,"http://wifi.telecentre-test.fr/api/captive"' in lines
    assert "address=/wifi.telecentre-test.fr/10.42.0.1" in lines
    assert dnsmasq.portal_base_url(cfg) == "http://wifi.telecentre-test.fr/"
    assert not any(x.startswith("address=") for x in dnsmasq.render(_cfg()).splitlines())


def test_https_portal_url_in_option_114_and_its_name_resolved_to_the_box():
    cfg = _cfg(portal_url="https://Portail.Telecentre-Test.fr/",
               tls_certificate="/etc/telecentre/tls/fullchain.pem",
               tls_key="/etc/telecentre/tls/privkey.pem")
    assert cfg.gateway.portal_url == "https://portail.telecentre-test.fr/"
    lines = dnsmasq.render(cfg).splitlines()
    assert 'dhcp-option=114,"https://portail.telecentre-test.fr/api/captive"' in lines
    assert "address=/portail.telecentre-test.fr/10.42.0.1" in lines
    assert dnsmasq.captive_api_url(cfg) == "https://portail.telecentre-test.fr/api/captive"


@pytest.mark.parametrize(
    ("gateway", "key"),
    [
        ({"portal_url": "https://p.telecentre.fr/"}, "tls_certificate"),
        ({"portal_url": "https://p.telecentre.fr/", "tls_certificate": "/c.pem"}, "tls_key"),
        ({"portal_url": "https://p.telecentre.fr/", "tls_certificate": "c.pem",
          "tls_key": "/k.pem"}, "tls_certificate"),
        ({"portal_url": "http://p.telecentre.fr/", "tls_certificate": "/c.pem",
          "tls_key": "/k.pem"}, "tls_certificate"),
        ({"tls_key": "/k.pem"}, "tls_key"),
        ({"portal_tls_port": 8088}, "portal_tls_port"),
    ],
)
def test_tls_keys_go_with_an_https_portal_url(gateway, key):
    with pytest.raises(config_mod.ConfigError, match=f"'gateway.{key}'"):
        _cfg(**gateway)


@pytest.mark.parametrize(
    "value",
    [
        "https://wifi.telecentre.fr:8443/",
        "http://10.42.0.1/",
        "http://wifi/",
        "http://wifi.telecentre.fr/portal",
        "http://wifi.telecentre.fr:8080/",
        "http://wifi.telecentre.fr/\naddress=/#/6.6.6.6",
        "http://-bad.fr/",
        "http://wifí.fr/",
        "ftp://wifi.telecentre.fr/",
        42,
    ],
)
def test_portal_url_refused_with_the_key(value):
    with pytest.raises(config_mod.ConfigError, match="'gateway.portal_url'"):
        _cfg(portal_url=value)
