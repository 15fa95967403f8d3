"""The gateway makes the LAN ready: the box's address on the LAN interface (a bridge made
when it is one), in a namespace this test creates, with the real `ip`."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess

import pytest

from appliance.gateway.lan import Lan, LanError
from tests.conftest import require_root, require_tool

BOX = ipaddress.IPv4Interface("10.42.0.1/24")


@pytest.fixture
def ns():
    require_tool("ip")
    require_root()
    name = f"tlan{os.getpid() % 100000}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def _ip(ns: str, *args: str) -> str:
    return subprocess.run(["ip", "-n", ns, *args], check=True, capture_output=True,
                          text=True).stdout


def _addresses(ns: str, dev: str) -> set[str]:
    links = json.loads(_ip(ns, "-j", "-4", "addr", "show", "dev", dev))
    return {f"{a['local']}/{a['prefixlen']}" for link in links for a in link["addr_info"]}


def test_the_box_address_goes_on_the_lan_and_a_stale_one_goes(ns, tmp_path):
    _ip(ns, "link", "add", "wlan0", "type", "veth", "peer", "name", "wpeer")
    _ip(ns, "addr", "add", "10.43.0.1/24", "dev", "wlan0")  # lan_address changed since
    forward = tmp_path / "ip_forward"
    forward.write_text("1\n")
    lan = Lan("wlan0", BOX, command=("ip", "-n", ns), ip_forward=forward)
    state = lan.prepare()
    assert state.as_dict() == {"interface": "wlan0", "address": "10.42.0.1/24",
                               "forwarding": True}
    assert _addresses(ns, "wlan0") == {"10.42.0.1/24"}
    assert "UP" in json.loads(_ip(ns, "-j", "link", "show", "dev", "wlan0"))[0]["flags"]
    # Again: nothing changes, nothing fails.
    assert lan.prepare() == state
    assert _addresses(ns, "wlan0") == {"10.42.0.1/24"}
    # Forwarding off is reported, not hidden.
    forward.write_text("0\n")
    assert lan.prepare().forwarding is False


def test_a_bridge_lan_is_made_when_missing(ns, tmp_path):
    lan = Lan("br-lan", BOX, bridge=True, command=("ip", "-n", ns),
              ip_forward=tmp_path / "absent")
    state = lan.prepare()
    link = json.loads(_ip(ns, "-j", "-d", "link", "show", "dev", "br-lan"))[0]
    assert link["linkinfo"]["info_kind"] == "bridge"
    assert _addresses(ns, "br-lan") == {"10.42.0.1/24"}
    assert state.forwarding is False  # unreadable counts as off


def test_a_missing_wifi_interface_is_a_clear_error(ns, tmp_path):
    lan = Lan("wlan0", BOX, command=("ip", "-n", ns), ip_forward=tmp_path / "f")
    with pytest.raises(LanError, match="wlan0 does not exist"):
        lan.prepare()
    with pytest.raises(ValueError):
        Lan("wlan0; reboot", BOX)
