"""The captive portal against a stand-in gateway at its UNIX socket (the real one is in
tests/gateway/test_dhcp_portal.py): pages, languages, detection probes, RFC 8908,
logins, rate limits, hostile input, and that the device is never named by the browser."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.security import generate_password_hash

from appliance import members, wifi_accounts
from appliance.config import Config
from appliance.ipc import CommandServer
from appliance.web import i18n
from appliance.web.portal import (
    APPLE_SUCCESS,
    CAPTIVE_JSON,
    FIREFOX_CANONICAL,
    MemberLockout,
    create_portal_app,
)

TOKEN_RE = re.compile(r'name="token" value="([^"]+)"')
PHONE = "10.42.0.23"
OTHER = "10.42.0.24"
TEMPLATES = Path(__file__).resolve().parents[2] / "appliance" / "web" / "templates" / "portal"


@pytest.fixture
def portal(config: Config, conn, gateway) -> Flask:
    app = create_portal_app(config, secret_key=b"p" * 32)
    app.testing = True
    return app


class Phone:
    """A test client that is one device: its address and the host name it asked for."""

    def __init__(self, app: Flask, ip: str, host: str) -> None:
        self.client: FlaskClient = app.test_client()
        self.kw = {"base_url": f"http://{host}", "environ_base": {"REMOTE_ADDR": ip}}

    def get(self, path: str, **kw: Any):
        return self.client.get(path, **self.kw, **kw)

    def post(self, path: str, **kw: Any):
        return self.client.post(path, **self.kw, **kw)


def phone(app: Flask, ip: str = PHONE, host: str = "10.42.0.1") -> Phone:
    return Phone(app, ip, host)


def token(c: Phone, path: str = "/") -> str:
    m = TOKEN_RE.search(c.get(path).get_data(as_text=True))
    assert m, "no form token"
    return m.group(1)


def guest_login(c: Phone, **form: str):
    data = {"token": token(c), "accept": "yes", **form}
    return c.post("/guest", data=data)


def test_login_page_french_first_english_carried_in_forms(portal):
    c = phone(portal)
    html = c.get("/").get_data(as_text=True)
    assert '<html lang="fr">' in html and "Accéder à Internet" in html
    en = c.get("/?lang=en").get_data(as_text=True)
    assert '<html lang="en">' in en and "Go online" in en
    assert 'action="/guest?lang=en"' in en and 'name="lang" value="en"' in en
    # No cookie is needed for the language: a fresh client posting lang=en gets English.
    c2 = phone(portal)
    r = c2.post("/guest", data={"token": token(c2), "lang": "en"})
    assert r.status_code == 400 and "Tick the box" in r.get_data(as_text=True)
    assert "Set-Cookie" not in r.headers
    assert "script" not in html.lower()  # no script: the mini-browser may run none


def test_other_sites_and_paths_go_to_the_portal(portal):
    c = phone(portal, host="example.com")
    r = c.get("/some/page?x=1")
    assert r.status_code == 302 and r.headers["Location"] == "http://10.42.0.1/"
    r = phone(portal).get("/nothing-here")
    assert r.status_code == 302 and r.headers["Location"] == "/"


PROBES = {
    ("connectivitycheck.gstatic.com", "/generate_204"): (204, ""),
    ("clients3.google.com", "/generate_204"): (204, ""),
    ("captive.apple.com", "/hotspot-detect.html"): (200, APPLE_SUCCESS),
    ("www.msftconnecttest.com", "/connecttest.txt"): (200, "Microsoft Connect Test"),
    ("detectportal.firefox.com", "/canonical.html"): (200, FIREFOX_CANONICAL),
    ("detectportal.firefox.com", "/success.txt"): (200, "success\n"),
}


def test_detection_probes_portal_before_login_online_after(portal, gateway):
    for (host, path) in [*PROBES, ("www.msftconnecttest.com", "/redirect")]:
        r = phone(portal, host=host).get(path)
        assert r.status_code == 302, (host, path)
        assert r.headers["Location"] == "http://10.42.0.1/", (host, path)
    assert guest_login(phone(portal)).status_code == 303
    for (host, path), (status, body) in PROBES.items():
        r = phone(portal, host=host).get(path)
        assert (r.status_code, r.get_data(as_text=True)) == (status, body), (host, path)
    r = phone(portal, host="www.msftconnecttest.com").get("/redirect")
    assert r.headers["Location"] == "http://10.42.0.1/status"
    # Another device on the LAN is still captive.
    assert phone(portal, OTHER, "connectivitycheck.gstatic.com").get(
        "/generate_204").status_code == 302


def test_rfc8908_api(portal, gateway):
    c = phone(portal, host="10.42.0.1")
    r = c.get("/api/captive")
    assert r.mimetype == CAPTIVE_JSON and "private" in r.headers["Cache-Control"]
    assert r.get_json() == {
        "captive": True,
        "user-portal-url": "http://10.42.0.1/",
        "venue-info-url": "http://10.42.0.1/terms",
    }
    assert guest_login(phone(portal), voucher="").status_code == 303
    body = c.get("/api/captive").get_json()
    assert body["captive"] is False and body["bytes-remaining"] == 750_000_000
    assert "seconds-remaining" not in body and body["can-extend-session"] is False
    gateway.authorized[PHONE].update(spent=True, remaining_bytes=0)
    assert c.get("/api/captive").get_json()["captive"] is True  # spent and blocked


def test_guest_login_names_the_device_by_its_address_only(portal, gateway):
    c = phone(portal)
    r = c.post("/guest", data={"token": token(c), "accept": "yes",
                               "mac": "02:00:00:00:00:99", "ip": "10.42.0.99"},
               headers={"X-Forwarded-For": "10.42.0.99"})
    assert r.status_code == 303 and r.headers["Location"] == "/status"
    (sent,) = gateway.sent("portal_authorize")
    assert sent == {"cmd": "portal_authorize", "kind": "guest", "ip": PHONE}
    page = c.get("/status").get_data(as_text=True)
    assert "250,0 Mo / 1,0 Go" in page and "750,0 Mo" in page and "5 h 02 min" in page
    # Logout: by address again, and the device is back at the login page.
    r = c.post("/logout", data={"token": token(c, "/status")})
    assert r.status_code == 200 and "déconnecté" in r.get_data(as_text=True)
    assert gateway.sent("portal_logout") == [{"cmd": "portal_logout", "ip": PHONE}]
    assert c.get("/status").headers["Location"] == "/"


def test_forms_need_the_terms_and_a_token_bound_to_the_address(portal, gateway):
    c = phone(portal)
    assert c.post("/guest", data={"token": token(c)}).status_code == 400  # terms not ticked
    assert c.post("/guest", data={"accept": "yes"}).status_code == 400  # no token
    stolen = token(phone(portal, OTHER))
    r = c.post("/guest", data={"token": stolen, "accept": "yes"})
    assert r.status_code == 400 and "expiré" in r.get_data(as_text=True)
    assert c.post("/logout", data={"token": stolen}).status_code == 400
    assert gateway.sent("portal_authorize") == [] and gateway.sent("portal_logout") == []


def _member(conn, **fields: Any) -> int:
    data = {"name": "Zoé Martin", "email": "zoe@example.org", "number": "A-17", **fields}
    return members.add_member(conn, members.validate_member(data, {}))


def _legacy_pin(conn, member_id: int, pin: str) -> None:
    """A 4-digit PIN set before new PINs needed 6 digits: it must keep working."""
    conn.execute("UPDATE members SET portal_secret_hash = ? WHERE id = ?",
                 (generate_password_hash(pin), member_id))


def test_member_login_by_email_or_number_and_rate_limit(portal, gateway, conn):
    member_id = _member(conn)
    # Was set_portal_secret(..., "4321"); a new 4-digit PIN is now refused, an old one works.
    _legacy_pin(conn, member_id, "4321")
    c = phone(portal)

    def attempt(identifier: str, secret: str, client: Phone = c):
        return client.post("/member", data={"token": token(client), "identifier": identifier,
                                            "secret": secret})

    r = attempt("ZOE@example.org", "4321")
    assert r.status_code == 303
    assert gateway.sent("portal_authorize")[-1] == {
        "cmd": "portal_authorize", "kind": "member", "ip": PHONE, "owner_id": member_id}
    gateway.authorized.clear()
    assert attempt("a-17", "4321").status_code == 303

    other = phone(portal, OTHER)
    for _ in range(5):
        assert attempt("A-17", "0000", other).status_code == 401
    r = attempt("A-17", "4321", other)  # right secret, but too many failures: still refused
    assert r.status_code == 429 and "Trop de tentatives" in r.get_data(as_text=True)
    # The limit is per identifier too: another address cannot keep guessing that member.
    assert attempt("A-17", "4321", phone(portal, "10.42.0.50")).status_code == 429
    assert len(gateway.sent("portal_authorize")) == 2


def test_member_not_allowed_is_said_only_with_the_right_secret(portal, gateway, conn):
    member_id = _member(conn, valid_until="2020-01-31")
    wifi_accounts.set_portal_secret(conn, member_id, "long-wifi-password")
    c = phone(portal)
    r = c.post("/member", data={"token": token(c), "identifier": "A-17", "secret": "nope-nope"})
    assert r.status_code == 401 and "incorrect" in r.get_data(as_text=True)
    r = c.post("/member", data={"token": token(c), "identifier": "A-17",
                                "secret": "long-wifi-password"})
    assert r.status_code == 401 and "expirée" in r.get_data(as_text=True)
    assert gateway.sent("portal_authorize") == []


def test_voucher_code_and_its_rate_limit(portal, gateway, conn):
    vid, code = wifi_accounts.create_voucher(conn, batch="fête", quota_bytes=500_000_000)
    c = phone(portal)
    typed = code.replace("-", " ").lower()
    r = guest_login(c, voucher=typed)
    assert r.status_code == 303
    assert gateway.sent("portal_authorize")[-1] == {
        "cmd": "portal_authorize", "kind": "voucher", "ip": PHONE, "owner_id": vid}
    assert "1 h 00 min" in c.get("/status").get_data(as_text=True)

    other = phone(portal, OTHER)
    for _ in range(5):
        assert guest_login(other, voucher="ABCD-EFGH-JKMN").status_code == 401
    assert guest_login(other, voucher=code).status_code == 429
    gateway.refuse = "voucher already used by its maximum number of devices"
    r = guest_login(phone(portal, "10.42.0.60"), voucher=code)
    assert r.status_code == 409 and "nombre maximal" in r.get_data(as_text=True)


def test_hostile_input_is_escaped_and_bounded(portal, gateway):
    c = phone(portal)
    evil = '"><script>alert(1)</script>'
    r = c.post("/member", data={"token": token(c), "identifier": evil, "secret": "x" * 5000})
    html = r.get_data(as_text=True)
    assert r.status_code == 401 and "<script>alert" not in html
    assert "&#34;&gt;&lt;script&gt;" in html
    r = c.post("/member", data={"token": token(c), "identifier": "a" * 10_000, "secret": "y"})
    assert r.status_code == 401 and "a" * 255 not in r.get_data(as_text=True)
    r = c.post("/guest", data={"token": token(c), "accept": "yes", "voucher": "v" * 40_000})
    assert r.status_code == 413
    assert "default-src 'self'" in r.headers["Content-Security-Policy"]


def test_quota_reached_page(portal, gateway):
    c = phone(portal)
    assert guest_login(c).status_code == 303
    gateway.authorized[PHONE].update(spent=True, remaining_bytes=0, used_bytes=10**9)
    assert c.get("/status").headers["Location"] == "/quota"
    assert c.get("/").headers["Location"] == "/quota"
    html = c.get("/quota?lang=en").get_data(as_text=True)
    assert "Daily volume reached" in html and "1.0 GB" in html and "paused" in html
    r = phone(portal, host="connectivitycheck.gstatic.com").get("/generate_204")
    assert r.headers["Location"] == "http://10.42.0.1/quota"


def test_gateway_down_is_said_plainly(portal, gateway):
    gateway.server.stop()
    c = phone(portal)
    r = c.get("/")
    assert r.status_code == 503 and "indisponible" in r.get_data(as_text=True)
    r = c.get("/api/captive")
    assert r.mimetype == CAPTIVE_JSON and r.get_json()["captive"] is True
    gateway.server = CommandServer(gateway.server.path, gateway.server.handlers)  # for teardown
    gateway.server.start()


def test_metrics_count_logins_without_personal_labels(config, conn, gateway):
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    app = create_portal_app(config, secret_key=b"p" * 32, registry=registry)
    c = phone(app)
    assert guest_login(c).status_code == 303
    c.post("/member", data={"token": token(c, "/status"), "identifier": "zoe@example.org",
                            "secret": "1"})
    samples = [s for fam in registry.collect() for s in fam.samples]
    labels = {k for s in samples for k in s.labels} - {"le"}
    assert labels <= {"class", "result"}
    got = {(s.labels.get("class"), s.labels.get("result")): s.value for s in samples
           if s.name == "telecentre_portal_logins_total"}
    assert got == {("guest", "ok"): 1.0, ("member", "failure"): 1.0}
    values = " ".join(v for s in samples for v in s.labels.values())
    assert PHONE not in values and "zoe" not in values


def test_portal_templates_use_known_keys_and_no_bare_text():
    used: set[str] = set()
    for path in TEMPLATES.glob("*.html"):
        source = path.read_text("utf-8")
        used |= set(re.findall(r"_\(\s*'([^']+)'\s*[,)]", source))
        stripped = re.sub(r"{[{%#].*?[}%#]}", "", source, flags=re.S)
        stripped = re.sub(r"<[^>]*>|&[a-z]+;", "", stripped)
        assert not re.findall(r"[A-Za-zÀ-ÿ]{3,}", stripped), path.name
    source = (TEMPLATES.parents[1] / "portal.py").read_text("utf-8")
    used |= set(re.findall(r'translate\(\s*"([^"]+)"', source))
    used |= {f"portal.kind.{k}" for k in ("guest", "voucher", "member")}
    assert sorted(k for k in used if k not in i18n.CATALOG) == []
    assert len(used) > 30


def test_member_secret_rules(conn):
    member_id = _member(conn)
    for bad in ("12", "1234", "12345", "1" * 13, "short", "x" * 129, "tab\there1"):
        with pytest.raises(wifi_accounts.SecretRejected):
            wifi_accounts.set_portal_secret(conn, member_id, bad)
    with pytest.raises(wifi_accounts.SecretRejected) as refused:
        wifi_accounts.check_secret("4321")
    assert "de 6 à 12 chiffres" in refused.value.messages["fr"]
    assert "6 to 12 digits" in refused.value.messages["en"]
    today = dt.date(2026, 5, 4)
    _legacy_pin(conn, member_id, "4321")  # set before the rule: still lets the member in
    assert wifi_accounts.authenticate_member(conn, "A-17", "4321", today).result == "ok"
    wifi_accounts.set_portal_secret(conn, member_id, "123456")
    assert wifi_accounts.authenticate_member(conn, "A-17", "4321", today).result != "ok"
    assert wifi_accounts.find_member_id(conn, " zoe@EXAMPLE.org ") == member_id
    assert wifi_accounts.find_member_id(conn, "a-17") == member_id
    assert wifi_accounts.find_member_id(conn, "nobody@example.org") is None
    assert wifi_accounts.authenticate_member(conn, "A-17", "123456", today).result == "ok"
    assert wifi_accounts.authenticate_member(conn, "", "123456", today).result != "ok"
    assert wifi_accounts.authenticate_member(conn, "A-17' OR 1=1 --", "123456",
                                             today).result == "bad_credentials"
    codes = {wifi_accounts.generate_voucher_code() for _ in range(200)}
    assert len(codes) == 200
    assert all(wifi_accounts.normalize_voucher_code(c.lower()) for c in codes)
    assert wifi_accounts.normalize_voucher_code("ABCD-EFGH-JKM0") is None  # 0 is not used


# --- brute force: per-member lockout, logins from the LAN only --------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_member_lockout_grows_doubles_caps_and_resets():
    clock = FakeClock()
    lock = MemberLockout(clock=clock)
    for _ in range(4):
        assert lock.failure(7) == 0
        assert lock.wait(7) == 0
    assert [lock.failure(7) for _ in range(9)] == [60, 120, 240, 480, 960, 1920, 3600, 3600,
                                                   3600]
    assert lock.wait(7) == 3600 and lock.wait(8) == 0  # per member
    clock.now += 3599
    assert lock.wait(7) == 1
    lock.success(7)
    assert lock.wait(7) == 0 and lock.failure(7) == 0  # counting starts again
    for _ in range(4):
        lock.failure(7)
    clock.now += 24 * 3600  # a quiet day forgets the failures
    assert lock.wait(7) == 0 and lock.failure(7) == 0


def test_member_lockout_holds_across_identifiers_and_addresses(portal, gateway, conn, caplog):
    caplog.set_level("INFO")
    member_id = _member(conn)
    _legacy_pin(conn, member_id, "4321")
    clock = FakeClock()
    portal.extensions["member_limiter"].clock = clock
    portal.extensions["member_lockout"].clock = clock

    def attempt(ip: str, identifier: str, secret: str):
        c = phone(portal, ip)
        return c.post("/member", data={"token": token(c), "identifier": identifier,
                                       "secret": secret})

    # 5 wrong PINs spread over both identifiers and two addresses: under the old
    # per-address and per-identifier limits (5 each), but the member is now locked.
    for guess in ("0000", "1111", "2222"):
        assert attempt("10.42.0.31", "zoe@example.org", guess).status_code == 401
    for guess in ("3333", "4444"):
        assert attempt("10.42.0.32", "A-17", guess).status_code == 401
    for ip, identifier in (("10.42.0.33", "zoe@example.org"), ("10.42.0.34", "a-17")):
        r = attempt(ip, identifier, "4321")  # the right PIN, from a fresh address
        assert r.status_code == 429, identifier
        assert "Réessayez dans 1 min" in r.get_data(as_text=True)
    assert gateway.sent("portal_authorize") == []
    clock.now += 61  # the first lock is one minute; a success forgets the failures
    assert attempt("10.42.0.33", "A-17", "4321").status_code == 303
    gateway.authorized.clear()

    clock.now += 400  # past the per-identifier window
    for guess in ("0001", "0002", "0003"):
        assert attempt("10.42.0.35", "zoe@example.org", guess).status_code == 401
    for guess in ("0004", "0005"):
        assert attempt("10.42.0.36", "A-17", guess).status_code == 401
    assert attempt("10.42.0.37", "A-17", "4321").status_code == 429
    clock.now += 61
    assert attempt("10.42.0.36", "A-17", "0006").status_code == 401  # 6th: two minutes
    clock.now += 61
    r = attempt("10.42.0.37", "zoe@example.org", "4321")
    assert r.status_code == 429 and "Réessayez dans 1 min" in r.get_data(as_text=True)
    clock.now += 60
    assert attempt("10.42.0.37", "zoe@example.org", "4321").status_code == 303
    assert len(gateway.sent("portal_authorize")) == 2
    assert "locked out for 60 s" in caplog.text and "locked out for 120 s" in caplog.text
    for secret in ("4321", "0000", "0006"):
        assert secret not in caplog.text


WAN = "203.0.113.7"


def test_logins_are_answered_only_on_the_lan(portal, gateway, conn):
    member_id = _member(conn)
    wifi_accounts.set_portal_secret(conn, member_id, "864209")
    vid, code = wifi_accounts.create_voucher(conn, batch="wan", quota_bytes=500_000_000)
    lan_token = token(phone(portal))
    for ip in (WAN, "10.42.1.5", "192.168.1.20", "::1"):
        c = phone(portal, ip)
        forms = {
            "/member": {"identifier": "A-17", "secret": "864209"},
            "/guest": {"accept": "yes"},
            "/guest?voucher": {"accept": "yes", "voucher": code},
        }
        for path, form in forms.items():
            # Even with a valid form, a spoofed forwarded-for and the right secret.
            r = c.post(path.split("?")[0], data={"token": token(c), **form},
                       headers={"X-Forwarded-For": PHONE})
            html = r.get_data(as_text=True)
            assert r.status_code == 403, (ip, path)
            assert "uniquement depuis le Wi-Fi ou le réseau local" in html, (ip, path)
            assert "incorrect" not in html and "Trop de tentatives" not in html
        assert c.post("/member", data={"token": lan_token, "identifier": "A-17",
                                       "secret": "0000"}).status_code == 403
        r = c.post("/member?lang=en", data={"identifier": "A-17", "secret": "0000"})
        assert r.status_code == 403
        assert "Wi-Fi login is only possible from the telecentre" in r.get_data(as_text=True)
    assert gateway.sent("portal_authorize") == []
    # Not a single secret was checked: the many WAN tries locked nothing on the LAN.
    for _ in range(10):
        phone(portal, WAN).post("/member", data={"identifier": "A-17", "secret": "0000"})
    c = phone(portal)
    r = c.post("/member", data={"token": token(c), "identifier": "A-17", "secret": "864209"})
    assert r.status_code == 303
    # An IPv4-mapped LAN peer is on the LAN.
    mapped = phone(portal, "::ffff:10.42.0.40")
    assert mapped.post("/guest", data={"accept": "yes"}).status_code == 400  # token, not 403


def test_probes_and_rfc8908_api_still_answer_off_the_lan(portal, gateway):
    r = phone(portal, WAN, "connectivitycheck.gstatic.com").get("/generate_204")
    assert r.status_code == 302 and r.headers["Location"] == "http://10.42.0.1/"
    r = phone(portal, WAN).get("/api/captive")
    assert r.status_code == 200 and r.mimetype == CAPTIVE_JSON
    assert r.get_json()["captive"] is True
    assert phone(portal, WAN).get("/").status_code == 200
