"""In headless Chromium: an admin makes a voucher batch and opens the printable sheet."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from appliance import wifi_accounts
from appliance.config import Config
from appliance.web.server import make_server

from .conftest import ADMIN, FakeDoor
from .fake_gateway import FakeGateway
from .test_browser import PHONE, browser, sign_in  # noqa: F401  (the browser fixture)

pytestmark = pytest.mark.browser

from playwright import sync_api  # noqa: E402


@pytest.fixture
def panel_with_gateway(config: Config, conn, door: FakeDoor) -> Iterator[tuple[str, FakeGateway]]:
    gateway = FakeGateway(config.gateway_socket, config.db_path)
    gateway.server.start()
    server = make_server(config, "127.0.0.1", 0)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield server.url, gateway
    finally:
        server.close()
        thread.join(timeout=5)
        gateway.server.stop()


def test_make_a_voucher_batch_and_print_the_sheet(
    panel_with_gateway: tuple[str, FakeGateway], browser: sync_api.Browser, conn  # noqa: F811
) -> None:
    url, gateway = panel_with_gateway
    expect = sync_api.expect
    page = browser.new_page(viewport=PHONE)
    csp_errors: list[str] = []
    page.on("console", lambda m: csp_errors.append(m.text)
            if "Content Security Policy" in m.text else None)
    sign_in(page, url, *ADMIN)

    page.click("nav a[href='/wifi']")
    expect(page.locator("h1")).to_have_text("Wi-Fi du télécentre")
    page.click("#to-vouchers")
    page.fill("#v-count", "4")
    page.fill("#v-quota_mb", "750")
    page.fill("#v-max_devices", "2")
    page.select_option("#v-valid_days", "7")
    page.fill("#v-batch", "Fête du village")
    page.click("#make-vouchers")

    codes = page.locator("#sheet .ticket .code")
    expect(codes).to_have_count(4)
    expect(page.locator("#sheet .ticket").first).to_contain_text("Télécentre")
    expect(page.locator("#sheet .ticket").first).to_contain_text("750 Mo par jour")
    texts = codes.all_inner_texts()
    assert all(wifi_accounts.normalize_voucher_code(t) for t in texts), texts
    style = codes.first.evaluate(
        "e => [getComputedStyle(e).fontFamily, parseFloat(getComputedStyle(e).fontSize)]")
    assert "mono" in style[0].lower() and style[1] >= 24, style
    # printed: the instructions disappear, the tickets stay
    page.emulate_media(media="print")
    expect(page.locator("header.no-print")).to_be_hidden()
    expect(codes.first).to_be_visible()
    assert gateway.sent("voucher_create")[0]["count"] == 4
    assert csp_errors == []

    page.emulate_media(media="screen")
    page.click("text=Retour aux tickets")
    expect(page.locator("#voucher-list tr.voucher")).to_have_count(4)
    page.close()
