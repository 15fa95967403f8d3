"""The portal in headless Chromium, run *inside* a client namespace: the real gateway,
nft table, neighbour table and portal server; the probe URL, the language switch, the
guest login, the status page and the logout as a phone's user sees them."""

from __future__ import annotations

import ipaddress
import sys
import time
from pathlib import Path

import pytest

from appliance.gateway.neighbours import NeighbourLookup
from appliance.gateway.service import GatewayService
from tests.conftest import require_tool
from tests.gateway.netns import BOX, SERVER
from tests.gateway.test_dhcp_portal import (  # noqa: F401  (fixtures)
    PORTAL_PORT,
    PORTAL_SERVER,
    WAN_HTTP,
    _start,
    cfg,
    topo,
)

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
PHONE = {"width": 390, "height": 844}


def test_guest_login_in_chromium_from_the_client_namespace(topo, cfg, tmp_path: Path):  # noqa: F811
    require_tool(CHROMIUM)
    from playwright import sync_api

    from tests.web.test_browser import CHROMIUM_ARGS

    c1 = topo.clients[0]
    wan_http = _start(topo, topo.wan, sys.executable, "-c", WAN_HTTP)
    assert wan_http.stdout is not None and wan_http.stdout.readline().strip() == "ready"
    portal = _start(topo, topo.gw, sys.executable, "-c", PORTAL_SERVER, str(cfg.path),
                    str(PORTAL_PORT))
    assert portal.stdout is not None and portal.stdout.readline().strip() == "ready"
    net = ipaddress.IPv4Interface(cfg.gateway.lan_address).network
    svc = GatewayService(
        cfg, topo.nft(), neighbours=NeighbourLookup("br0", net, ("ip", "-n", topo.gw))
    ).start(loop=False)
    # Chromium itself runs in the client's namespace: Playwright talks to it over the
    # pipe it inherits through `ip netns exec`.
    wrapper = tmp_path / "chromium-in-netns"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {c1.ns} {CHROMIUM} "$@"\n')
    wrapper.chmod(0o755)
    args = [*CHROMIUM_ARGS,
            f"--host-resolver-rules=MAP connectivitycheck.gstatic.com {SERVER}"]
    expect = sync_api.expect
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(wrapper), headless=True, args=args)
            try:
                page = browser.new_page(viewport=PHONE)
                # The OS's probe URL lands on the portal, in French.
                page.goto("http://connectivitycheck.gstatic.com/generate_204")
                assert page.url == f"http://{BOX}/"
                expect(page.locator("#guest-submit")).to_have_text("Accéder à Internet")
                page.click("#lang-switch")
                expect(page.locator("#guest-submit")).to_have_text("Go online")
                # The terms box is required: the browser will not submit without it.
                page.click("#guest-submit")
                assert page.url.endswith("?lang=en")
                assert topo.who(c1, SERVER, 5001, idle=0.5) is None
                page.check("#accept")
                t0 = time.perf_counter()
                page.click("#guest-submit")
                expect(page.locator("#online")).to_have_text("You are online.")
                assert topo.who(c1, SERVER, 5001) == "wan"
                elapsed_ms = (time.perf_counter() - t0) * 1000
                assert elapsed_ms < 1000, elapsed_ms
                expect(page.locator("#remaining")).to_contain_text(" GB")
                # Online: the probe now gets Google's answer from the internet (`wan`).
                # (a 204 never commits a navigation: Chromium aborts it, after the response)
                with page.expect_response("**/generate_204") as probe:
                    try:
                        page.goto("http://connectivitycheck.gstatic.com/generate_204")
                    except sync_api.Error:
                        pass
                assert probe.value.status == 204
                # Logout from the status page: back behind the portal.
                page.goto(f"http://{BOX}/status?lang=en")
                page.click("#logout")
                expect(page.locator("#message")).to_contain_text("offline")
                assert topo.who(c1, SERVER, 5001, idle=0.5) is None
                print(f"\nbrowser login_to_internet_ms={elapsed_ms:.0f}")
                page.close()
            finally:
                browser.close()
    finally:
        svc.stop()
