"""The panel's Wi-Fi page, vouchers, legal log and member Wi-Fi secrets, against a
stand-in gateway at its real UNIX socket."""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
import re
from collections.abc import Iterator
from html import unescape

import pytest
from flask import Flask
from flask.testing import FlaskClient

from appliance import members, wifi_accounts
from appliance.config import Config
from appliance.web import i18n
from appliance.web.wifi import VoucherSheets

from .conftest import ADMIN, csrf_token, login, post, serving
from .fake_gateway import FakeGateway

HOSTILE = '<script>alert(1)</script>"&'
CODE_RE = re.compile(r'<p class="code">([A-Z0-9-]{14})</p>')


def text(response) -> str:
    return response.get_data(as_text=True)


@pytest.fixture
def gateway(config: Config, conn) -> Iterator[FakeGateway]:
    yield from serving(FakeGateway(config.gateway_socket, config.db_path))


def add_member(conn, name: str = "Jeanne Martin", email: str | None = None) -> int:
    data = {"name": name, "plan": "resident"}
    if email:
        data["email"] = email
    return members.add_member(conn, members.validate_member(data, {"resident": None}))


def ts(day: str, hour: int = 12) -> float:
    return dt.datetime(*map(int, day.split("-")), hour, tzinfo=dt.UTC).timestamp()


# --- live devices ----------------------------------------------------------------------------


def test_devices_with_identity_usage_rate_and_policies(
    admin_client: FlaskClient, conn, gateway: FakeGateway
) -> None:
    member_id = add_member(conn, HOSTILE)
    vid, _code = wifi_accounts.create_voucher(conn, batch="Fête <b>", quota_bytes=10**9)
    gateway.status.update(
        quotas=[
            {"kind": "member", "id": member_id, "used_bytes": 5_000_000_000,
             "limit_bytes": 20_000_000_000, "spent": False},
            {"kind": "voucher", "id": vid, "used_bytes": 10**9, "limit_bytes": 10**9,
             "spent": True},
        ],
        devices=[
            {"mac": "02:00:00:00:00:01", "ip": "10.42.0.11", "kind": "member",
             "owner_id": member_id, "rate_down_bps": 12_500_000, "rate_up_bps": 800_000},
            {"mac": "02:00:00:00:00:02", "ip": "10.42.0.12", "kind": "voucher", "owner_id": vid},
            {"mac": "02:00:00:00:00:03", "ip": "10.42.0.13", "kind": "guest", "owner_id": 7},
            {"mac": "bad", "ip": "x", "kind": "root", "owner_id": "1; drop"},  # ignored
        ],
    )
    html = text(admin_client.get("/wifi"))
    assert html.count('class="device kind-') == 3
    assert HOSTILE not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Fête &lt;b&gt;" in html and f"Ticket n° {vid}" in html
    assert "Invité n° 7" in html
    assert "5000 Mo sur 20000 Mo" in html and 'value="25"' in html
    assert "épuisé" in html
    assert "↓ 12.5 Mbit/s ↑ 0.8 Mbit/s" in html
    assert "root" not in html
    # policies come from the config
    assert "20000 Mo" in html and "25 Mbit/s" in html and "Ralenti à 256 kbit/s" in html
    assert "Accès coupé jusqu&#39;à minuit" in html
    assert 'href="/wifi"' in html  # the nav entry


def test_a_lan_not_ready_or_forwarding_off_is_said_on_the_page(
    admin_client: FlaskClient, gateway: FakeGateway
) -> None:
    gateway.status["lan"] = {"ready": True, "interface": "wlan0", "address": "10.42.0.1/24",
                             "forwarding": True}
    assert 'id="lan-problem"' not in text(admin_client.get("/wifi"))
    gateway.status["lan"] = {"ready": False, "interface": "wlan<0>", "error": "x"}
    html = text(admin_client.get("/wifi"))
    assert 'id="lan-problem"' in html and "« wlan&lt;0&gt; » n&#39;existe pas" in html
    gateway.status["lan"] = {"ready": True, "interface": "wlan0", "forwarding": False}
    html = text(admin_client.get("/wifi"))
    assert 'id="lan-problem"' in html and "net.ipv4.ip_forward vaut 0" in html
    gateway.status["lan"] = None  # a dry-run gateway: it manages no LAN
    assert 'id="lan-problem"' not in text(admin_client.get("/wifi"))


def test_device_hostname_escaped_bounded_for_admin_and_staff_never_logged(
    app: Flask, admin_client: FlaskClient, conn, gateway: FakeGateway, caplog
) -> None:
    """What a device says in DHCP is the device's choice: shown as text, cut, never logged."""
    caplog.set_level(logging.DEBUG)
    hostile = '<script>alert("x")</script>\'; rm -rf / #\n' + "A" * 300
    gateway.status["devices"] = [
        {"mac": f"02:00:00:00:00:0{n}", "ip": f"10.42.0.1{n}", "kind": "guest", "owner_id": n,
         **({} if name is None else {"hostname": name})}
        for n, name in enumerate(["iPhone-de-Marie", hostile, "", None, ["not", "text"],
                                  "PC\u202eeiraM\r\n\tportable", "B" * 300], start=1)
    ]
    html = text(admin_client.get("/wifi"))
    assert "Appareil (nom, MAC, IP)" in html
    cells = re.findall(r'<div class="hostname( muted)?">([^<]*)</div><code>([^<]*)</code>', html)
    shown = {mac: (bool(muted), unescape(name)) for muted, name, mac in cells}
    assert shown == {
        "02:00:00:00:00:01": (False, "iPhone-de-Marie"),
        "02:00:00:00:00:02": (False, '<script>alert("x")</script>\'; r…'),
        "02:00:00:00:00:03": (True, "—"),
        "02:00:00:00:00:04": (True, "—"),  # an older gateway without the key
        "02:00:00:00:00:05": (True, "—"),  # not text at all
        "02:00:00:00:00:06": (False, "PC eiraM portable"),  # no bidi override, no newline
        "02:00:00:00:00:07": (False, "B" * 31 + "…"),
    }
    # escaped by the template, not stripped: the page has no script but its own files
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&#39;; r…" in html
    assert not re.search(r"<script(?![^>]*\bsrc=)", html)
    assert "A" * 32 not in html and "B" * 32 not in html and "\u202e" not in html

    # staff see the live page, names included (the same audience as MAC and IP)
    from .conftest import STAFF
    staff = app.test_client()
    login(staff, STAFF)
    assert '<div class="hostname">iPhone-de-Marie</div>' in text(staff.get("/wifi"))

    # nowhere in the logs, whatever happened
    post(admin_client, "/wifi/kick", {"mac": "02:00:00:00:00:01"})
    assert "iPhone-de-Marie" not in caplog.text and "alert(" not in caplog.text
    assert "portable" not in caplog.text and "BBBB" not in caplog.text


def test_gateway_down_is_said_plainly(admin_client: FlaskClient, conn) -> None:
    r = admin_client.get("/wifi")
    assert r.status_code == 200
    assert 'id="gateway-unreachable"' in text(r) and "ne répond pas" in text(r)
    assert "Règles par type d" in text(r)
    r = post(admin_client, "/wifi/kick", {"mac": "02:00:00:00:00:01"})
    assert r.status_code == 302
    assert "ne répond pas" in text(admin_client.get("/wifi"))


def test_kick_extend_reset_send_exact_commands(
    admin_client: FlaskClient, gateway: FakeGateway, caplog
) -> None:
    caplog.set_level(logging.INFO)
    assert post(admin_client, "/wifi/kick", {"mac": "02:00:00:00:00:01"}).status_code == 302
    assert post(admin_client, "/wifi/extend",
                {"kind": "member", "owner_id": "3", "mb": "500"}).status_code == 302
    assert post(admin_client, "/wifi/reset", {"kind": "guest", "owner_id": "7"}).status_code == 302
    assert gateway.sent("kick") == [{"cmd": "kick", "mac": "02:00:00:00:00:01"}]
    assert gateway.sent("extend") == [{"cmd": "extend", "kind": "member", "owner_id": 3,
                                       "extra_bytes": 500_000_000}]
    assert gateway.sent("reset") == [{"cmd": "reset", "kind": "guest", "owner_id": 7}]
    assert "Consommation du jour remise à zéro" in text(admin_client.get("/wifi"))
    assert "02:00:00:00:00:01" not in caplog.text  # no MAC in the service log
    # anything off the list is refused before it reaches the gateway
    for data in ({"kind": "member", "owner_id": "3", "mb": "999999"},
                 {"kind": "admin", "owner_id": "3", "mb": "500"},
                 {"kind": "member", "owner_id": "x", "mb": "500"}):
        assert post(admin_client, "/wifi/extend", data).status_code == 400
    assert len(gateway.sent("extend")) == 1


def test_gateway_refusal_is_reported(admin_client: FlaskClient, gateway: FakeGateway) -> None:
    gateway.refuse = "no quota today for member #3"
    post(admin_client, "/wifi/extend", {"kind": "member", "owner_id": "3", "mb": "100"})
    assert "a refusé la commande (no quota today for member #3)" in text(
        admin_client.get("/wifi"))


def test_staff_sees_but_cannot_act_nor_read_the_legal_log(
    app: Flask, conn, gateway: FakeGateway
) -> None:
    staff = app.test_client()
    from .conftest import STAFF
    login(staff, STAFF)
    gateway.status["devices"] = [{"mac": "02:00:00:00:00:03", "ip": "10.42.0.13",
                                  "kind": "guest", "owner_id": 7}]
    html = text(staff.get("/wifi"))
    assert "Invité n° 7" in html
    assert 'class="danger kick"' not in html and 'id="to-log"' not in html
    assert 'id="make-vouchers"' not in text(staff.get("/wifi/vouchers"))
    token = csrf_token(staff, "/wifi")
    for path, data in (("/wifi/kick", {"mac": "02:00:00:00:00:03"}),
                       ("/wifi/extend", {"kind": "guest", "owner_id": "7", "mb": "100"}),
                       ("/wifi/reset", {"kind": "guest", "owner_id": "7"}),
                       ("/wifi/vouchers", {"count": "1"}),
                       ("/wifi/vouchers/1/revoke", {}),
                       ("/members/1/wifi-secret", {"secret": "1234"})):
        assert staff.post(path, data={**data, "csrf_token": token}).status_code == 403, path
    assert staff.get("/wifi/log").status_code == 403
    assert staff.get("/wifi/log.csv").status_code == 403
    assert {c["cmd"] for c in gateway.commands} == {"status"}


def test_writes_need_the_csrf_token(admin_client: FlaskClient, gateway: FakeGateway) -> None:
    r = admin_client.post("/wifi/kick", data={"mac": "02:00:00:00:00:01"})
    assert r.status_code == 400 and "expiré" in text(r)
    r = admin_client.post("/wifi/vouchers", data={"count": "3", "quota_mb": "100",
                                                  "max_devices": "1", "valid_days": "1"})
    assert r.status_code == 400
    assert gateway.commands == []


# --- vouchers --------------------------------------------------------------------------------


def make_batch(client: FlaskClient, **form: str):
    data = {"count": "3", "quota_mb": "500", "max_devices": "2", "valid_days": "7",
            "batch": "Fête du village", **form}
    return post(client, "/wifi/vouchers", data, token_from="/wifi/vouchers")


def _ticket_how(html: str) -> int:
    """How many tickets carry the how-to in French then English (each once)."""
    fr, en = i18n.CATALOG["wifi.ticket_how"]["fr"], i18n.CATALOG["wifi.ticket_how"]["en"]
    tickets = [unescape(t) for t in html.split('<article class="ticket">')[1:]]
    assert all(t.count(fr) == 1 and t.count(en) == 1 for t in tickets)
    assert all(t.index(fr) < t.index(en) for t in tickets)
    assert '<p class="how" lang="fr">' in html and '<p class="how" lang="en">' in html
    return len(tickets)


def test_voucher_batch_sheet_and_codes_work_at_the_portal(
    admin_client: FlaskClient, app: Flask, conn, gateway: FakeGateway
) -> None:
    r = make_batch(admin_client, batch=HOSTILE)
    assert r.status_code == 303 and "/wifi/vouchers/sheet/" in r.location
    assert gateway.sent("voucher_create") == [{
        "cmd": "voucher_create", "batch": HOSTILE, "created_by": ADMIN[0], "count": 3,
        "quota_mb": 500, "max_devices": 2, "valid_days": 7,
    }]
    sheet = admin_client.get(r.location)
    html = text(sheet)
    assert sheet.status_code == 200
    codes = CODE_RE.findall(html)
    assert len(codes) == 3 and len(set(codes)) == 3
    assert "Télécentre" in html and "500 Mo par jour" in html and "Appareils : 2" in html
    assert "Valable jusqu&#39;au" in html
    # The how-to on every ticket in French, then English (tourists), whatever the
    # admin's language.
    assert _ticket_how(html) == 3
    admin_client.set_cookie("lang", "en")
    english = text(admin_client.get(r.location))
    assert "Volume: 500 MB a day" in english  # the rest in the panel's language
    assert _ticket_how(english) == 3
    admin_client.delete_cookie("lang")
    assert HOSTILE not in html and "&lt;script&gt;" in html
    # no external asset, no inline script or style
    assert "<script" not in html and "style=" not in html and "<style" not in html
    assert re.findall(r'(?:href|src)="(https?:)?//', html) == []
    assert 'href="/static/voucher_sheet.css"' in html
    assert admin_client.get("/static/voucher_sheet.css").status_code == 200
    # the codes work at the portal, and only their hashes are stored
    now = dt.datetime(2026, 11, 23).timestamp()
    assert all(wifi_accounts.find_voucher(conn, c, now) for c in codes)
    dump = "\n".join(conn.iterdump())
    assert not any(c in dump or c.replace("-", "") in dump for c in codes)
    # the list shows the batch, escaped
    listing = text(admin_client.get("/wifi/vouchers"))
    assert listing.count('class="voucher state-new"') == 3 and "&lt;script&gt;" in listing


def test_sheet_is_only_for_its_maker_and_expires(
    admin_client: FlaskClient, app: Flask, conn, gateway: FakeGateway
) -> None:
    from appliance import admins
    admins.create_admin(conn, "carol", "another-admin-pass", role="admin")
    location = make_batch(admin_client).location
    other = app.test_client()
    login(other, ("carol", "another-admin-pass"))
    r = other.get(location)
    assert r.status_code == 302 and CODE_RE.search(text(other.get(r.location))) is None
    sheets: VoucherSheets = app.extensions["voucher_sheets"]
    sheets.clock = lambda: 10**12  # an hour later and more
    r = admin_client.get(location)
    assert r.status_code == 302
    assert "plus disponible" in text(admin_client.get("/wifi/vouchers"))


def test_voucher_form_errors_keep_input(admin_client: FlaskClient, gateway: FakeGateway) -> None:
    r = make_batch(admin_client, count="0", quota_mb="abc", max_devices="99")
    html = text(r)
    assert r.status_code == 400
    assert html.count("Entrez un nombre entier") == 3
    assert 'value="abc"' in html and 'value="Fête du village"' in html
    assert gateway.commands == []


def test_voucher_gateway_down(admin_client: FlaskClient, conn) -> None:
    r = make_batch(admin_client)
    assert r.status_code == 503 and 'id="gateway-error"' in text(r)


def test_revoke_goes_through_the_gateway(admin_client: FlaskClient, conn,
                                         gateway: FakeGateway) -> None:
    vid, _ = wifi_accounts.create_voucher(conn, batch="b", quota_bytes=10**8)
    r = post(admin_client, f"/wifi/vouchers/{vid}/revoke", token_from="/wifi/vouchers")
    assert r.status_code == 302
    assert gateway.sent("voucher_revoke") == [{"cmd": "voucher_revoke", "id": vid}]
    assert "appareils déconnectés : 1" in text(admin_client.get("/wifi/vouchers"))


# --- the legal log ---------------------------------------------------------------------------


@pytest.fixture
def sessions(conn) -> dict[str, int]:
    member_id = add_member(conn, "=HYPERLINK(\"http://evil\")")
    vid, _ = wifi_accounts.create_voucher(conn, batch="Lot A", quota_bytes=10**8)
    rows = [
        ("member", member_id, "02:00:00:00:00:01", "10.42.0.11", ts("2026-03-01", 9),
         ts("2026-03-01", 11), "logout", 1000, 250000),
        ("voucher", vid, "02:00:00:00:00:02", "10.42.0.12", ts("2026-03-05"), None, None, 0, 0),
        ("guest", 7, "02:00:00:00:00:03", "10.42.0.13", ts("2026-02-01"), ts("2026-02-01", 13),
         "kicked", 5, 6),
    ]
    conn.executemany(
        "INSERT INTO wifi_sessions (owner_kind, owner_id, mac, ip, started_at, ended_at,"
        " end_reason, bytes_up, bytes_down) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    return {"member": member_id, "voucher": vid}


def test_legal_log_page_and_date_filter(admin_client: FlaskClient, sessions) -> None:
    html = text(admin_client.get("/wifi/log"))
    assert html.count('class="session"') == 3
    assert "02:00:00:00:00:01" in html and "10.42.0.13" in html
    assert "&#34;http://evil&#34;" in html or "&quot;http://evil&quot;" in html
    html = text(admin_client.get("/wifi/log?from=2026-03-01&to=2026-03-01"))
    assert html.count('class="session"') == 1 and "02:00:00:00:00:01" in html
    # a session still open overlaps any later period
    html = text(admin_client.get("/wifi/log?from=2026-03-06"))
    assert html.count('class="session"') == 1 and "Lot A" in html and "en cours" in html
    html = text(admin_client.get("/wifi/log?from=2026-02-01&to=2026-02-01"))
    assert html.count('class="session"') == 1 and "Invité n° 7" in html
    html = text(admin_client.get("/wifi/log?from=bad"))
    assert "Date invalide" in html and html.count('class="session"') == 3


def test_legal_log_csv(admin_client: FlaskClient, sessions) -> None:
    r = admin_client.get("/wifi/log.csv?from=2026-01-01&to=2026-03-31")
    assert r.status_code == 200
    assert r.mimetype == "text/csv"
    assert 'filename="sessions-wifi-' in r.headers["Content-Disposition"]
    body = r.get_data()
    assert body.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig")), delimiter=";"))
    assert rows[0] == ["type", "identité", "adresse MAC", "adresse IP", "début", "fin",
                       "motif de fin", "octets envoyés", "octets reçus"]
    assert len(rows) == 4
    member, voucher, guest = rows[1], rows[2], rows[3]  # oldest row first
    assert member[0] == "member" and member[1].startswith("'=HYPERLINK")  # injection-safe
    assert member[2:5] == ["02:00:00:00:00:01", "10.42.0.11", "2026-03-01 10:00:00"]
    assert member[5:] == ["2026-03-01 12:00:00", "logout", "1000", "250000"]
    assert voucher[1] == f"ticket #{sessions['voucher']} (Lot A)" and voucher[5] == ""
    assert guest[1] == "invité #7"
    # nothing but these columns: no URL, no content
    assert all(len(row) == 9 for row in rows)
    only_feb = admin_client.get("/wifi/log.csv?from=2026-02-01&to=2026-02-01").get_data()
    assert len(only_feb.decode("utf-8-sig").strip().splitlines()) == 2


# --- a member's Wi-Fi secret -----------------------------------------------------------------


def test_admin_sets_a_member_wifi_pin(admin_client: FlaskClient, conn, caplog) -> None:
    caplog.set_level(logging.INFO)
    member_id = add_member(conn, email="jeanne@example.org")
    page = text(admin_client.get(f"/members/{member_id}"))
    assert 'id="wifi-secret"' in page and "Aucun mot de passe Wi-Fi" in page
    today = dt.date(2026, 11, 23)
    r = post(admin_client, f"/members/{member_id}/wifi-secret", {"secret": "12"})
    assert r.status_code == 302
    assert "de 6 à 12 chiffres" in text(admin_client.get(f"/members/{member_id}"))
    assert wifi_accounts.authenticate_member(conn, "jeanne@example.org", "12",
                                             today).result == "bad_credentials"
    # New PINs have at least 6 digits: a 4-digit one is refused with the rule in the form.
    r = post(admin_client, f"/members/{member_id}/wifi-secret", {"secret": "4829"})
    page = text(admin_client.get(f"/members/{member_id}"))
    assert "de 6 à 12 chiffres" in page and "se devine trop facilement" in page
    assert "Aucun mot de passe Wi-Fi" in page
    assert wifi_accounts.authenticate_member(conn, "jeanne@example.org", "4829",
                                             today).result == "bad_credentials"
    post(admin_client, f"/members/{member_id}/wifi-secret", {"secret": "482913"})
    page = text(admin_client.get(f"/members/{member_id}"))
    assert "Mot de passe Wi-Fi enregistré" in page and "Défini le" in page
    assert wifi_accounts.authenticate_member(conn, "jeanne@example.org", "482913",
                                             today).result == "ok"
    assert "482913" not in caplog.text and "482913" not in page
    assert post(admin_client, "/members/9999/wifi-secret", {"secret": "1234"}).status_code == 404
