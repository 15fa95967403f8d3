"""The Line page: state and cause in plain words, history charts, outages, "test now".

A stand-in link service answers on the real UNIX socket; the history is written into
the real SQLite file with the link service's own store functions.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from appliance import db
from appliance.config import Config
from appliance.ipc import CommandServer
from appliance.link import store
from appliance.link.probes import Sample

from .conftest import csrf_token, serving
from .test_browser import browser, live_panel  # noqa: F401  (fixtures)

HOUR = 3600.0


class FakeLink:
    """The link service's socket protocol: status and test, recording commands."""

    def __init__(self, path: Path) -> None:
        self.commands: list[dict[str, Any]] = []
        self.warnings: list[str] = []
        self.lock = threading.Lock()
        self.status: dict[str, Any] = {
            "ok": True, "layers": {"lan": True, "access": True, "upstream": True, "dns": True},
            "outage": None, "test": None, "last_test": None,
            "month_bytes": 120e6, "budget_bytes": 2e9,
        }
        self.server = CommandServer(path, {"status": self._status, "test": self._test})

    def _status(self, req: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.commands.append(dict(req))
            return dict(self.status)

    def _test(self, req: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.commands.append(dict(req))
            if self.warnings and not req.get("force"):
                return {"ok": True, "started": False, "warnings": list(self.warnings)}
            if self.status["test"] is not None:  # as the service: one test at a time
                return {"ok": True, "started": False, "running": True}
            self.status["test"] = {"trigger": "admin", "phase": "download",
                                   "phase_at": time.time(), "phase_seconds": 8.0}
            return {"ok": True, "started": True, "running": False}

    def finish(self, **result: Any) -> None:
        with self.lock:
            self.status["test"] = None
            self.status["last_test"] = {"at": time.time(), "result": "ok", **result}


@pytest.fixture
def link(config: Config) -> Iterator[FakeLink]:
    yield from serving(FakeLink(config.link_socket))


def seed_history(config: Config, now: float) -> None:
    """A day of probe rounds every 10 min, hourly aggregates, two tests, two outages."""
    conn = db.open_db(config.db_path)
    try:
        for i in range(144):
            at = now - 86400 + i * 600
            lost = i % 12 == 0
            store.record_round(conn, at, [
                Sample("anchor", "198.51.100.1", 1, 0 if lost else 1, None if lost else 0.030),
                Sample("anchor", "203.0.113.1", 1, 1, 0.040),
            ])
        store.aggregate_hours(conn, now)
        store.record_test(conn, at=now - 5 * HOUR, trigger="schedule", result="ok",
                          backend="iperf3", download_bps=27e6, upload_bps=0.9e6, bytes=40_000_000)
        store.record_test(conn, at=now - HOUR, trigger="admin", result="ok",
                          backend="speedtest", download_bps=12e6, upload_bps=0.5e6,
                          bytes=20_000_000)
        oid = store.open_outage(conn, "access", now - 3 * HOUR)
        store.close_outage(conn, oid, now - 3 * HOUR + 1200)
        store.open_outage(conn, "dns", now - 120)
    finally:
        conn.close()


def test_outage_cause_in_plain_words_and_history(admin_client: FlaskClient, config: Config,
                                                 link: FakeLink) -> None:
    now = time.time()
    seed_history(config, now)
    link.status["outage"] = {"cause": "access", "since": now - 300}
    html = admin_client.get("/line").get_data(as_text=True)
    assert "La ligne est coupée" in html
    assert "la ligne de l'opérateur est coupée. Appelez le fournisseur" in html.replace(
        "&#39;", "'")
    # the outage list: newest first, the ongoing one said so
    rows = re.findall(r"<tr( class=\"ongoing\")?>\s*<td[^>]*>([^<]+)</td>", html)
    assert [cause for _, cause in rows] == ["DNS (noms)", "Ligne de l&#39;opérateur"]
    assert rows[0][0] and not rows[1][0]
    assert ">20</td>" in html  # the access outage lasted 20 minutes
    # four charts, the throughput ones with the contract as a dashed reference
    assert html.count("<svg") == 4
    assert html.count('stroke-dasharray="6 4"') == 2
    points = re.findall(r'<polyline points="([^"]+)"', html)
    assert len(points) == 6 and all(len(p.split()) >= 2 for p in points)
    # the two tests are plotted as dots on the download chart (27 and 12 Mbit/s)
    assert html.count("<circle") >= 4
    # CSP: no inline script or style anywhere on the page
    assert not re.search(r"<script(?![^>]*\bsrc=)", html)
    assert " style=" not in html and "<style" not in html


def test_english_and_longer_ranges_use_hourly_aggregates(admin_client: FlaskClient,
                                                         config: Config, link: FakeLink) -> None:
    now = time.time()
    seed_history(config, now)
    admin_client.set_cookie("lang", "en")
    html = admin_client.get("/line?range=7d").get_data(as_text=True)
    assert "The line is up" in html and "Latency to the internet (ms)" in html
    assert 'aria-current="page" id="range-7d"' in html
    assert "No data for this period yet." not in html.split("Latency")[1].split("</figure>")[0]
    # an unknown range falls back to 24 h rather than failing
    assert admin_client.get("/line?range=bogus").status_code == 200


def test_service_down_history_still_shown(admin_client: FlaskClient, config: Config) -> None:
    seed_history(config, time.time())
    html = admin_client.get("/line").get_data(as_text=True)
    assert "Le moniteur de ligne ne répond pas" in html
    assert html.count("<svg") == 4
    r = admin_client.post("/line/test", data={"csrf_token": csrf_token(admin_client, "/line")})
    assert r.status_code == 503 and "ne répond pas" in r.get_json()["error"]
    # without JavaScript: back to the page, the same words as a message
    r = admin_client.post("/line/test/start",
                          data={"csrf_token": csrf_token(admin_client, "/line")})
    assert r.status_code == 302 and r.headers["Location"].endswith("/line")
    html = admin_client.get("/line").get_data(as_text=True)
    assert re.search(r'<p class="alert error" role="status">Le moniteur de ligne ne répond pas',
                     html)


def test_panel_reads_the_link_tables_without_writing(admin_client: FlaskClient, config: Config,
                                                     link: FakeLink) -> None:
    seed_history(config, time.time())
    conn = db.open_db(config.db_path)
    before = conn.execute("SELECT COUNT(*) FROM link_probes").fetchone()[0]
    conn.close()
    assert admin_client.get("/line?range=30d").status_code == 200
    conn = db.open_db(config.db_path)
    assert conn.execute("SELECT COUNT(*) FROM link_probes").fetchone()[0] == before
    conn.close()


def test_test_now_warns_first_then_runs_when_forced(admin_client: FlaskClient,
                                                    link: FakeLink) -> None:
    link.warnings = ["busy", "budget"]
    token = csrf_token(admin_client, "/line")
    reply = admin_client.post("/line/test", data={"csrf_token": token}).get_json()
    assert reply["started"] is False
    assert [w["code"] for w in reply["warnings"]] == ["busy", "budget"]
    assert "des usagers utilisent la ligne" in reply["warnings"][0]["label"]
    assert link.commands[-1] == {"cmd": "test", "force": False}
    reply = admin_client.post("/line/test", data={"csrf_token": token, "force": "1"}).get_json()
    assert reply == {"started": True, "running": False}
    assert link.commands[-1] == {"cmd": "test", "force": True}
    st = admin_client.get("/api/line").get_json()
    assert st["test"]["phase"] == "download"
    assert st["test"]["label"] == "Réception (téléchargement)…"
    assert 0 <= st["test"]["fraction"] <= 1
    link.finish(download_bps=28.1e6, upload_bps=0.95e6, grade="C", backend="speedtest")
    st = admin_client.get("/api/line").get_json()
    assert st["test"] is None
    assert st["last_test"]["summary"] == ("28.1 Mbit/s en réception, 0.9 Mbit/s en envoi, "
                                          "latence sous charge C")


def test_test_now_needs_an_admin_and_a_csrf_token(staff_client: FlaskClient,
                                                  admin_client: FlaskClient,
                                                  link: FakeLink) -> None:
    html = staff_client.get("/line").get_data(as_text=True)
    assert "line-test-form" not in html and "Seul un administrateur" in html
    token = csrf_token(staff_client, "/line")
    assert staff_client.post("/line/test", data={"csrf_token": token}).status_code == 403
    assert admin_client.post("/line/test", data={}).status_code == 400
    for path in ("/line/test/start",):  # the page-level path, the same rules
        assert staff_client.post(path, data={"csrf_token": token, "force": "1"}).status_code == 403
        assert admin_client.post(path, data={"force": "1"}).status_code == 400
    assert not [c for c in link.commands if c["cmd"] == "test"]


def test_test_now_without_javascript_warns_on_a_page_then_redirects(
        admin_client: FlaskClient, link: FakeLink) -> None:
    """The form's own action (no script): HTML pages and a message, never raw JSON."""
    html = admin_client.get("/line").get_data(as_text=True)
    assert 'action="/line/test/start" data-api="/line/test"' in html
    token = csrf_token(admin_client, "/line")

    # the warnings first, on a page of their own; nothing started
    link.warnings = ["budget"]
    r = admin_client.post("/line/test/start", data={"csrf_token": token})
    assert r.status_code == 200 and r.mimetype == "text/html"
    html = r.get_data(as_text=True)
    assert "le budget de données des mesures est épuisé pour ce mois" in html
    assert '<input type="hidden" name="force" value="1">' in html
    assert 'name="csrf_token"' in html and 'href="/line"' in html  # cancel: back, no test
    assert link.commands[-1] == {"cmd": "test", "force": False}
    assert "des usagers utilisent la ligne" not in html  # only the warning the service gave

    # an admin's test runs anyway: back to the Line page, a message, the progress
    r = admin_client.post("/line/test/start", data={"csrf_token": token, "force": "1"})
    assert r.status_code == 302 and r.headers["Location"].endswith("/line")
    assert link.commands[-1] == {"cmd": "test", "force": True}
    html = admin_client.get("/line").get_data(as_text=True)
    assert re.search(r'<p class="alert ok" role="status">Mesure lancée\. Elle dure environ 20 '
                     r"secondes : rechargez la page pour voir le résultat\.</p>", html)
    assert '<p id="line-phase">Réception (téléchargement)…</p>' in html
    assert re.search(r'id="line-test-start"\s+disabled', html)
    assert '<a href="/line" id="line-reload">Recharger la page</a>' in html
    # the message was shown once
    assert "Mesure lancée" not in admin_client.get("/line").get_data(as_text=True)

    # a second press while it runs says so rather than starting another
    admin_client.post("/line/test/start", data={"csrf_token": token, "force": "1"})
    html = admin_client.get("/line").get_data(as_text=True)
    assert "Une mesure est déjà en cours" in html
    assert len([c for c in link.commands if c["cmd"] == "test"]) == 3

    # reloading after the end shows the result; the button is back
    link.finish(download_bps=27.3e6, upload_bps=0.92e6, grade="A", backend="iperf3")
    html = admin_client.get("/line").get_data(as_text=True)
    assert "27.3 Mbit/s en réception, 0.9 Mbit/s en envoi, latence sous charge A" in html
    assert not re.search(r'id="line-test-start"\s+disabled', html)
    assert 'id="line-progress" hidden' in html


def test_test_now_without_javascript_in_english(admin_client: FlaskClient,
                                                link: FakeLink) -> None:
    admin_client.set_cookie("lang", "en")
    token = csrf_token(admin_client, "/line")
    link.warnings = ["busy"]
    html = admin_client.post("/line/test/start", data={"csrf_token": token}).get_data(
        as_text=True)
    assert "A test now is not advised:" in html and "Test anyway" in html
    assert "members are using the line right now" in html
    admin_client.post("/line/test/start", data={"csrf_token": token, "force": "1"})
    html = admin_client.get("/line").get_data(as_text=True)
    assert "Test started. It takes about 20 seconds: reload the page to see the result." in html
    assert "Reload the page" in html


@pytest.mark.browser
def test_browser_test_now_with_warning_and_live_progress(  # noqa: F811  (imported fixtures)
    live_panel: str, browser, link: FakeLink, config: Config,  # noqa: F811
) -> None:
    from playwright import sync_api

    from .conftest import ADMIN
    from .test_browser import PHONE, sign_in

    expect = sync_api.expect
    seed_history(config, time.time())
    link.warnings = ["busy"]
    page = browser.new_page(viewport=PHONE)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    sign_in(page, live_panel, *ADMIN)
    page.click("nav a[href='/line']")
    expect(page.locator("#line-state")).to_have_text("La ligne fonctionne")
    expect(page.locator("svg.chart-svg")).to_have_count(4)

    # the busy line is said first; nothing started
    page.click("#line-test-start")
    expect(page.locator("#line-warnings")).to_be_visible()
    expect(page.locator("#line-warning-list li[data-code=busy]")).to_be_visible()
    expect(page.locator("#line-warning-list li[data-code=budget]")).to_be_hidden()
    assert not [c for c in link.commands if c["cmd"] == "test" and c.get("force")]

    # run anyway: live progress, then the result, without a reload
    page.click("#line-test-force")
    expect(page.locator("#line-progress")).to_be_visible()
    expect(page.locator("#line-phase")).to_have_text("Réception (téléchargement)…", timeout=5_000)
    link.finish(download_bps=28.4e6, upload_bps=0.96e6, grade="B", backend="speedtest")
    expect(page.locator("#line-test-result")).to_contain_text("28.4 Mbit/s en réception",
                                                              timeout=5_000)
    expect(page.locator("#line-progress")).to_be_hidden()

    # an outage shows up with its cause in plain words
    link.status["outage"] = {"cause": "lan", "since": time.time()}
    expect(page.locator("#line-cause-label")).to_contain_text("La box ne répond pas",
                                                              timeout=8_000)
    expect(page.locator("#line-state")).to_have_text("La ligne est coupée")
    assert not [e for e in errors if "Content Security Policy" in e], errors
    page.close()


def test_monthly_report_page_csv_and_print(admin_client: FlaskClient, config: Config,
                                           link: FakeLink) -> None:
    now = time.time()
    seed_history(config, now)
    month = time.strftime("%Y-%m", time.localtime(now - 5 * HOUR))
    html = admin_client.get(f"/line/report?month={month}").get_data(as_text=True)
    assert "Débit médian en réception" in html and "19.5 Mbit/s" in html  # median of 27, 12
    assert "Minutes de coupure : Ligne de l&#39;opérateur" in html
    r = admin_client.get(f"/line/report.csv?month={month}")
    assert r.mimetype == "text/csv"
    assert f'filename="line-report-{month}.csv"' in r.headers["Content-Disposition"]
    lines = r.get_data(as_text=True).splitlines()
    assert lines[0] == "Indicateur,Valeur" and lines[2] == f"Mois,{month}"
    assert "Débit médian en réception,19.5 Mbit/s" in lines
    admin_client.set_cookie("lang", "en")
    text = admin_client.get(f"/line/report.csv?month={month}").get_data(as_text=True)
    assert "Median download,19.5 Mbit/s" in text
    printable = admin_client.get(f"/line/report/print?month={month}").get_data(as_text=True)
    assert "Monthly line report" in printable and "<nav" not in printable
    assert admin_client.get("/line/report?month=2026-13").status_code == 400


@pytest.mark.browser
def test_browser_test_now_without_javascript(  # noqa: F811  (imported fixtures)
    live_panel: str, browser, link: FakeLink, config: Config,  # noqa: F811
) -> None:
    """Scripts off: the button leads to the warning page, then back with a message."""
    from playwright import sync_api

    from .conftest import ADMIN
    from .test_browser import PHONE, sign_in

    expect = sync_api.expect
    link.warnings = ["budget"]
    context = browser.new_context(java_script_enabled=False, viewport=PHONE)
    try:
        page = context.new_page()
        sign_in(page, live_panel, *ADMIN)
        page.click("nav a[href='/line']")
        expect(page.locator("#line-state")).to_have_text("La ligne fonctionne")

        page.click("#line-test-start")
        expect(page).to_have_url(live_panel + "line/test/start")
        expect(page.locator("#line-confirm-warnings li")).to_have_text(
            ["le budget de données des mesures est épuisé pour ce mois"])
        assert "{" not in page.locator("main").inner_text()  # a page, not a JSON reply
        assert not [c for c in link.commands if c["cmd"] == "test" and c.get("force")]

        page.click("#line-confirm-force")
        expect(page).to_have_url(live_panel + "line")
        expect(page.locator("main p.alert.ok[role=status]")).to_have_text(
            "Mesure lancée. Elle dure environ 20 secondes : rechargez la page pour voir "
            "le résultat.")
        expect(page.locator("#line-progress")).to_be_visible()
        expect(page.locator("#line-phase")).to_have_text("Réception (téléchargement)…")
        expect(page.locator("#line-test-start")).to_be_disabled()
        assert [c for c in link.commands if c["cmd"] == "test"][-1]["force"] is True

        link.finish(download_bps=26.0e6, upload_bps=0.9e6, grade="B", backend="iperf3")
        page.click("#line-reload")
        expect(page.locator("#line-last-summary")).to_have_text(
            "26.0 Mbit/s en réception, 0.9 Mbit/s en envoi, latence sous charge B")
        expect(page.locator("#line-progress")).to_be_hidden()
        expect(page.locator("main p.alert.ok[role=status]")).to_have_count(0)
        expect(page.locator("#line-test-start")).to_be_enabled()
    finally:
        context.close()
