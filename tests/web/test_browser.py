"""End to end in headless Chromium: the panel's pages and their live updates.

`test_demo_enroll_and_open` drives the whole demo (emulated reader and lock) the way an
admin would on a phone. `test_live_updates_with_fake_door` runs the same scripts against
the panel alone, with a stand-in door, so the JavaScript is covered even without the demo.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance import accesslog, members
from appliance.config import Config
from appliance.web.server import make_server
from tests.conftest import require_tool

from .conftest import ADMIN, FakeDoor

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
PHONE = {"width": 390, "height": 844}
UID = "04A1B2C3D4E5F6"

from playwright import sync_api  # noqa: E402  (a test dependency: installed by make venv)


@pytest.fixture
def browser() -> Iterator[sync_api.Browser]:
    require_tool(CHROMIUM)  # fails under CI=true, skips elsewhere
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def sign_in(page: sync_api.Page, base_url: str, user: str, password: str) -> None:
    page.goto(base_url + "login")
    page.fill("#username", user)
    page.fill("#password", password)
    page.click("form.stack button[type=submit]")
    page.wait_for_selector("#door-status")


def wait_until(predicate, timeout: float = 5.0, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def test_demo_enroll_and_open(tmp_path: Path, browser: sync_api.Browser) -> None:
    from appliance.demo import Demo

    expect = sync_api.expect
    demo = Demo(tmp_path, web_port=0)
    demo.start()
    try:
        page = browser.new_page(viewport=PHONE)
        sign_in(page, demo.url, demo.admin_user, demo.admin_password)

        # add a member on a plan that is open at any hour
        page.click("nav a[href='/members']")
        page.click("#add-member")
        page.fill("#f-name", "Camille Essai")
        page.select_option("#f-plan", "resident")
        page.click("#save")
        expect(page.locator("h1")).to_contain_text("Camille Essai")

        # enroll: the page waits for the card, then confirms it without a reload by hand
        page.click("#enroll")
        expect(page.locator("#enroll-waiting")).to_be_visible()
        demo.tap(UID)
        expect(page.locator("#enroll-done")).to_be_visible(timeout=15_000)
        expect(page.locator("#badge-list tbody tr.live")).to_have_count(1)

        # the dashboard shows the next tap live, and the lock is energized
        page.click("nav a[href='/']")
        granted = page.locator("#events tbody tr.result-granted")
        expect(page.locator("#events")).to_be_attached()
        before = granted.count()
        demo.tap(UID)
        assert wait_until(lambda: demo.lock_energized, timeout=5), "the lock never opened"
        expect(granted).to_have_count(before + 1, timeout=10_000)
        expect(granted.first).to_contain_text("Camille Essai")

        # the panel's own simulator: a card that copies only the UID is refused
        denied = page.locator("#events tbody tr.result-denied")
        before_denied = denied.count()
        page.click("nav a[href='/door']")
        page.fill("#sim-uid", UID)
        page.click("#sim-clone")
        page.click("nav a[href='/']")
        expect(denied).to_have_count(before_denied + 1, timeout=10_000)
        expect(denied.first).to_contain_text("Camille Essai")
        page.close()
    finally:
        demo.stop()


@pytest.fixture
def live_panel(config: Config, conn, door: FakeDoor) -> Iterator[str]:
    server = make_server(config, "127.0.0.1", 0)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield server.url
    finally:
        server.close()
        thread.join(timeout=5)


def test_live_updates_with_fake_door(
    live_panel: str, browser: sync_api.Browser, conn, door: FakeDoor
) -> None:
    expect = sync_api.expect
    page = browser.new_page(viewport=PHONE)
    sign_in(page, live_panel, *ADMIN)

    # door state and alarms follow the door without a reload
    expect(page.locator("#door-state")).to_have_text("Verrouillée")
    door.status.update(state="held_open", open=True, alarms=["held_open"])
    expect(page.locator("#door-alarms li")).to_have_count(1, timeout=5_000)
    expect(page.locator("#door-state")).to_have_text("Restée ouverte")

    # a new event appears on top, its text inserted as text
    accesslog.record(conn, kind="badge", result="granted", reason="granted_always",
                     member_name="<b>Zoé</b>")
    row = page.locator("#events tbody tr").first
    expect(row).to_have_class("event new result-granted", timeout=5_000)
    expect(row).to_contain_text("<b>Zoé</b>")

    # enrollment: waiting with a countdown, then the confirmation
    member_id = members.add_member(conn, members.validate_member(
        {"name": "Léa Petit", "plan": "resident"}, {"resident": None}))
    page.goto(f"{live_panel}members/{member_id}")
    page.click("#enroll")
    expect(page.locator("#enroll-waiting")).to_be_visible()
    expect(page.locator("#enroll-countdown")).not_to_have_text("0")
    _, ref = members.insert_badge(conn, member_id=member_id, uid_h="h", mode="token",
                                  token_h="t", by="alice")
    door.bind(member_id, ref)
    expect(page.locator("#enroll-done")).to_contain_text(ref, timeout=5_000)

    # the door going away is said plainly, and comes back by itself
    door.server.handlers["status"] = lambda req: {"ok": False, "error": "x"}
    page.goto(live_panel)
    door.server.stop()
    expect(page.locator("#door-unreachable")).to_be_visible(timeout=5_000)
    expect(page.locator("#door-unreachable")).to_contain_text("ne répond pas")
    page.close()
