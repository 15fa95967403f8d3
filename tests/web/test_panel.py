"""The admin panel through Flask's test client, a real SQLite file and a real door socket."""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
import re
import stat
import string
import threading
import urllib.request
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from appliance import accesslog, members
from appliance.config import Config
from appliance.web import create_app, i18n
from appliance.web.auth import LoginLimiter
from appliance.web.server import make_server

from .conftest import ADMIN, STAFF, FakeDoor, csrf_token, login, post

TEMPLATES = Path(__file__).resolve().parents[2] / "appliance" / "web" / "templates"
WEB_PY = TEMPLATES.parent


def text(response) -> str:
    return response.get_data(as_text=True)


def sample(app: Flask, name: str, labels: dict[str, str]) -> float:
    value = app.extensions["metrics_registry"].get_sample_value(name, labels)
    return value or 0.0


def add_member(conn, name: str = "Jeanne Martin", plan: str | None = "resident", **extra) -> int:
    clean = members.validate_member({"name": name, "plan": plan, **extra}, {plan: None})
    return members.add_member(conn, clean)


# --- login, sessions, CSRF, roles ---------------------------------------------------------


def test_login_good_and_bad(client: FlaskClient, app: Flask) -> None:
    assert client.get("/").status_code == 302  # not signed in → login page
    bad = login(client, (ADMIN[0], "wrong-password"))
    assert bad.status_code == 401
    assert "Identifiant ou mot de passe incorrect" in text(bad)
    good = login(client)
    assert good.status_code == 302 and good.headers["Location"] == "/"
    page = client.get("/")
    assert page.status_code == 200 and "Tableau de bord" in text(page)
    assert sample(app, "telecentre_web_login_attempts_total", {"result": "failure"}) == 1
    assert sample(app, "telecentre_web_login_attempts_total", {"result": "success"}) == 1
    # logout needs its CSRF token too, and ends the session
    out = post(client, "/logout")
    assert out.status_code == 302
    assert client.get("/members").status_code == 302


def test_login_rate_limited_per_address_and_per_user(client: FlaskClient, app: Flask) -> None:
    for _ in range(5):
        assert login(client, (ADMIN[0], "nope-nope-nope")).status_code == 401
    # even the right password is refused now, with the wait time
    limited = login(client)
    assert limited.status_code == 429
    assert "Trop de tentatives" in text(limited) and "5 min" in text(limited)
    assert sample(app, "telecentre_web_login_attempts_total", {"result": "rate_limited"}) == 1
    # the same username from another address is also held back (per-user counter) ...
    other = login(app.test_client(), REMOTE_ADDR="10.0.0.9")
    assert other.status_code == 429
    # ... while another account from another address still gets in
    assert login(app.test_client(), STAFF, REMOTE_ADDR="10.0.0.10").status_code == 302


def test_limiter_window_slides() -> None:
    now = [1000.0]
    limiter = LoginLimiter(max_failures=3, window=60, clock=lambda: now[0])
    keys = ("addr:1", "user:x")
    for _ in range(3):
        assert limiter.wait(keys) == 0
        limiter.failure(keys)
        now[0] += 1
    assert limiter.wait(keys) == pytest.approx(57)
    now[0] += 57
    assert limiter.wait(keys) == 0
    limiter.failure(keys)
    limiter.success(keys)
    assert limiter.wait(keys) == 0
    small = LoginLimiter(max_keys=10, clock=lambda: now[0])
    for i in range(100):
        small.failure([f"user:{i}"])
    assert len(small._failures) <= 10


def test_session_cookie_flags(client: FlaskClient, app: Flask) -> None:
    response = login(client)
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    https = app.test_client()
    token = csrf_token(https, "https://localhost/login")
    secure = https.post(
        "https://localhost/login",
        data={"username": ADMIN[0], "password": ADMIN[1], "csrf_token": token},
        headers={"Referer": "https://localhost/login"},  # CSRF checks it over HTTPS
    )
    assert secure.status_code == 302
    assert "Secure" in secure.headers["Set-Cookie"]


def test_login_next_is_local_only(client: FlaskClient) -> None:
    token = csrf_token(client)
    for target, expected in (("/members?q=a", "/members?q=a"), ("https://evil.example/", "/"),
                             ("//evil.example/", "/"), ("/\\evil.example", "/")):
        client.get("/")  # keep a session
        r = client.post(
            f"/login?next={target}",
            data={"username": ADMIN[0], "password": ADMIN[1], "csrf_token": token},
        )
        assert r.headers["Location"] == expected, target
        token = csrf_token(client, "/")


def test_csrf_rejected_without_token(admin_client: FlaskClient, conn) -> None:
    r = admin_client.post("/members/new", data={"name": "Sans Jeton", "plan": "resident"})
    assert r.status_code == 400
    assert "formulaire a expiré" in text(r)
    assert members.count_members(conn) == 0
    r = admin_client.post("/door/unlock", data={"confirm": "yes", "csrf_token": "forged"})
    assert r.status_code == 400
    # the same form with the token goes through
    r = post(admin_client, "/members/new", {"name": "Avec Jeton", "plan": "resident"})
    assert r.status_code == 302 and members.count_members(conn) == 1


def test_csrf_token_accepted_in_header(admin_client: FlaskClient, door: FakeDoor) -> None:
    token = csrf_token(admin_client, "/")
    r = admin_client.post("/door/unlock", data={"confirm": "yes"},
                          headers={"X-CSRFToken": token})
    assert r.status_code == 302
    assert door.sent("unlock")


def test_staff_gets_403_on_every_write_and_sees_no_buttons(
    staff_client: FlaskClient, app: Flask, conn, door: FakeDoor
) -> None:
    member_id = add_member(conn)
    badge_id, _ = members.insert_badge(conn, member_id=member_id, uid_h="h1", mode="token",
                                       token_h="t", by="alice")
    writes = [
        rule for rule in app.url_map.iter_rules()
        if "POST" in rule.methods and rule.endpoint not in ("auth.login", "auth.logout")
    ]
    assert len(writes) >= 10
    token = csrf_token(staff_client, "/")
    for rule in writes:
        path = rule.rule.replace("<int:member_id>", str(member_id)).replace(
            "<int:badge_id>", str(badge_id)).replace("<int:voucher_id>", "1")
        r = staff_client.post(path, data={"csrf_token": token, "confirm": "yes",
                                          "name": "Changed", "reason": "x"})
        assert r.status_code == 403, path
        assert "réservée aux administrateurs" in text(r)
    assert door.commands == [c for c in door.commands if c["cmd"] == "status"]
    row = members.get_member(conn, member_id)
    assert row["name"] == "Jeanne Martin" and row["active"] == 1 and not row["suspended"]
    assert members.member_badges(conn, member_id)[0]["revoked_at"] is None
    for page in ("/", "/members", f"/members/{member_id}", "/door"):
        html = text(staff_client.get(page))
        assert "consultation seule" in html
        for button in ('id="add-member"', 'id="enroll"', 'id="unlock"', 'id="save"',
                       'id="suspend"', "Désactiver</button>", "Ouvrir la porte…"):
            assert button not in html, (page, button)
    # staff can still read everything
    assert staff_client.get("/log").status_code == 200
    assert staff_client.get("/log/export.csv").status_code == 200
    assert staff_client.get("/plans").status_code == 200


def test_api_requires_login(client: FlaskClient) -> None:
    r = client.get("/api/status")
    assert r.status_code == 401 and "error" in r.get_json()
    assert client.get("/api/events?after=0").status_code == 401


# --- members ------------------------------------------------------------------------------


def test_add_member_and_log_line(admin_client: FlaskClient, conn, caplog) -> None:
    caplog.set_level(logging.INFO)
    r = post(admin_client, "/members/new", {
        "name": "Élodie  Durand", "email": "elodie@example.fr", "phone": "06 12 34 56 78",
        "plan": "coworking", "role": "member", "valid_from": "2026-01-01",
        "valid_until": "2026-12-31", "notes": "",
    })
    assert r.status_code == 302
    member_id = int(r.headers["Location"].rsplit("/", 1)[1])
    row = members.get_member(conn, member_id)
    assert (row["name"], row["plan"], row["valid_until"]) == ("Élodie Durand", "coworking",
                                                              "2026-12-31")
    page = text(admin_client.get(r.headers["Location"]))
    assert "Membre enregistré" in page and "Élodie Durand" in page
    assert f"admin account #1 did create to member #{member_id}" in caplog.text
    assert "alice" not in caplog.text
    assert "Élodie" not in caplog.text and "elodie@example.fr" not in caplog.text
    listing = text(admin_client.get("/members?q=elodie"))
    assert "Élodie Durand" in listing and "Coworking (jours ouvrés)" in listing
    assert "Aucun membre" in text(admin_client.get("/members?q=zzzz"))


def test_bad_input_is_rerendered_with_messages(admin_client: FlaskClient, conn) -> None:
    data = {"name": "Paul Bernard", "email": "pas-une-adresse", "phone": "abc",
            "plan": "gold", "valid_from": "2026-13-45", "valid_until": "", "notes": "à garder"}
    r = post(admin_client, "/members/new", data)
    assert r.status_code == 400
    html = text(r)
    assert "Adresse e-mail invalide" in html
    assert "Numéro de téléphone invalide" in html
    assert "Forfait inconnu" in html
    assert "Date invalide" in html
    # nothing typed is lost
    for value in ('value="Paul Bernard"', 'value="pas-une-adresse"', 'value="2026-13-45"',
                  "à garder</textarea>"):
        assert value in html, value
    assert members.count_members(conn) == 0
    # the same mistakes in English once the admin switched language
    admin_client.get("/lang/en")
    html = text(post(admin_client, "/members/new", data))
    assert "Invalid e-mail address" in html and "Unknown plan" in html
    assert "Adresse e-mail invalide" not in html


def test_hostile_text_is_escaped_and_bounded(admin_client: FlaskClient, conn) -> None:
    evil = '<script>alert("x")</script> O\'Neil & "Co"'
    r = post(admin_client, "/members/new", {"name": evil, "plan": "resident",
                                            "notes": "<img src=x onerror=alert(1)>"})
    assert r.status_code == 302
    for page in ("/members", r.headers["Location"]):
        html = text(admin_client.get(page))
        assert "<script>alert" not in html and "<img src=x" not in html
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    long = post(admin_client, "/members/new", {"name": "A" * 50_000, "plan": "resident"})
    assert long.status_code == 400
    assert "Nom trop long" in text(long)
    assert "A" * 301 not in text(long)  # echoed back, but bounded
    huge = post(admin_client, "/members/new", {"name": "B" * 400_000})
    assert huge.status_code == 413
    assert members.count_members(conn) == 1


def test_edit_suspend_reactivate_archive(admin_client: FlaskClient, conn, caplog) -> None:
    caplog.set_level(logging.INFO)
    member_id = add_member(conn)
    url = f"/members/{member_id}"
    form = text(admin_client.get(url))
    assert 'value="Jeanne Martin"' in form and "Résident 24 h/24" in form
    r = post(admin_client, url, {"name": "Jeanne Martin-Dupuis", "plan": "weekend",
                                 "role": "member", "valid_until": "2027-06-30"})
    assert r.status_code == 302
    row = members.get_member(conn, member_id)
    assert (row["name"], row["plan"], row["valid_until"]) == ("Jeanne Martin-Dupuis", "weekend",
                                                              "2027-06-30")
    bad = post(admin_client, url, {"name": "", "plan": "weekend",
                                   "valid_from": "2027-01-01", "valid_until": "2026-01-01"})
    assert bad.status_code == 400
    assert "Le nom est obligatoire" in text(bad) and "La fin de validité doit suivre" in text(bad)

    assert post(admin_client, f"{url}/suspend", {"reason": "Cotisation impayée"}).status_code == 302
    row = members.get_member(conn, member_id)
    assert row["suspended"] == 1 and row["suspended_reason"] == "Cotisation impayée"
    html = text(admin_client.get(url))
    assert "Accès suspendu. Motif : Cotisation impayée" in html and 'id="reactivate"' in html
    assert post(admin_client, f"{url}/reactivate").status_code == 302
    assert members.get_member(conn, member_id)["suspended"] == 0

    # archiving needs the confirmation box
    post(admin_client, f"{url}/archive", {})
    assert members.get_member(conn, member_id)["active"] == 1
    assert post(admin_client, f"{url}/archive", {"confirm": "yes"}).status_code == 302
    assert members.get_member(conn, member_id)["active"] == 0
    assert "Jeanne" not in text(admin_client.get("/members"))
    post(admin_client, f"{url}/restore")
    assert members.get_member(conn, member_id)["active"] == 1
    for action in ("update", "suspend", "reactivate", "archive", "restore"):
        assert f"admin account #1 did {action} to member #{member_id}" in caplog.text
    assert "Cotisation" not in caplog.text and "Jeanne" not in caplog.text
    assert admin_client.get("/members/9999").status_code == 404


def test_revoke_badge(admin_client: FlaskClient, conn) -> None:
    member_id = add_member(conn)
    other_id = add_member(conn, "Autre Personne")
    badge_id, ref = members.insert_badge(conn, member_id=member_id, uid_h="h1", mode="token",
                                         token_h="t", by="alice")
    # a badge can only be revoked through its own member
    assert post(admin_client, f"/members/{other_id}/badges/{badge_id}/revoke").status_code == 404
    r = post(admin_client, f"/members/{member_id}/badges/{badge_id}/revoke")
    assert r.status_code == 302
    badge = members.member_badges(conn, member_id)[0]
    assert badge["revoked_at"] is not None and badge["revoked_by"] == "alice"
    assert f"Badge {ref} désactivé" in text(admin_client.get(f"/members/{member_id}"))


def test_enroll_sends_command_and_page_follows(
    admin_client: FlaskClient, conn, door: FakeDoor
) -> None:
    member_id = add_member(conn)
    r = post(admin_client, f"/members/{member_id}/enroll")
    assert r.status_code == 302
    assert door.sent("enroll") == [{"cmd": "enroll", "member_id": member_id, "actor": "alice"}]
    html = text(admin_client.get(f"/members/{member_id}"))
    waiting = re.search(r'<div id="enroll-waiting"[^>]*>', html).group(0)
    assert "hidden" not in waiting
    assert "Présentez le badge sur le lecteur" in html
    assert 'data-expires-in="60.0"' in html and 'data-watch="1"' in html
    # the card is tapped: the door binds it and reports it in status.last_enrolled
    _, ref = members.insert_badge(conn, member_id=member_id, uid_h="h2", mode="token",
                                  token_h="t", by="alice")
    door.bind(member_id, ref)
    status = admin_client.get("/api/status").get_json()
    assert status["last_enrolled"]["member_id"] == member_id
    assert status["last_enrolled"]["badge_ref"] == ref
    # a page loaded after the tap shows the result straight away
    html = text(admin_client.get(f"/members/{member_id}"))
    assert f"Badge {ref} enregistré pour ce membre" in html
    # and the page the script navigates to says the same
    html = text(admin_client.get(f"/members/{member_id}?enrolled={ref}"))
    assert f"Badge {ref} enregistré pour ce membre" in html
    # someone else's badge reference is not announced on this page
    assert "enregistré pour ce membre" not in text(
        admin_client.get(f"/members/{member_id}?enrolled=B99999"))


def test_enroll_cancel_and_expiry(admin_client: FlaskClient, conn, door: FakeDoor) -> None:
    member_id = add_member(conn)
    post(admin_client, f"/members/{member_id}/enroll")
    r = post(admin_client, f"/members/{member_id}/enroll/cancel")
    assert r.status_code == 302 and door.sent("enroll_cancel")
    assert "Enrôlement annulé" in text(admin_client.get(f"/members/{member_id}"))
    post(admin_client, f"/members/{member_id}/enroll")
    door.status["enrollment"] = None  # a minute went by with no card
    assert "Temps écoulé sans badge" in text(admin_client.get(f"/members/{member_id}"))


def test_remote_unlock_confirms_then_sends_actor(admin_client: FlaskClient, door: FakeDoor,
                                                 caplog) -> None:
    caplog.set_level(logging.INFO)
    first = post(admin_client, "/door/unlock")
    assert first.status_code == 200 and "Ouvrir la porte maintenant ?" in text(first)
    assert not door.sent("unlock")
    r = post(admin_client, "/door/unlock", {"confirm": "yes"})
    assert r.status_code == 302
    assert door.sent("unlock") == [{"cmd": "unlock", "actor": "alice"}]
    assert "Porte déverrouillée" in text(admin_client.get("/door"))
    assert "admin account #1 unlocked the door remotely" in caplog.text


def test_door_state_alarms_and_enrollment_shown(admin_client: FlaskClient, door: FakeDoor) -> None:
    door.status.update(state="held_open", open=True, alarms=["held_open", "forced_open"],
                       reader_up=False,
                       enrollment={"member_id": 3, "member_name": "<b>Zoé</b>",
                                   "expires_in": 41.2})
    html = text(admin_client.get("/"))
    assert "Restée ouverte" in html
    assert "restée ouverte trop longtemps" in html and "forcée" in html
    assert "hors service" in html
    assert "Enrôlement en cours pour &lt;b&gt;Zoé&lt;/b&gt;" in html
    assert ">42</strong>" in html
    status = admin_client.get("/api/status").get_json()
    assert status["state"] == "held_open" and status["reachable"] is True
    assert [a["code"] for a in status["alarms"]] == ["held_open", "forced_open"]


def test_door_unreachable_says_so_and_rest_works(admin_client: FlaskClient, conn) -> None:
    # no `door` fixture: nothing listens on the socket
    member_id = add_member(conn)
    html = text(admin_client.get("/"))
    assert "Le service de la porte ne répond pas" in html
    status = admin_client.get("/api/status").get_json()
    assert status["reachable"] is False and "ne répond pas" in status["message"]
    assert admin_client.get("/members").status_code == 200
    assert "ne répond pas" in text(admin_client.get(f"/members/{member_id}"))
    assert admin_client.get("/log").status_code == 200
    r = post(admin_client, "/door/unlock", {"confirm": "yes"}, follow_redirects=True)
    assert r.status_code == 200 and "ne répond pas" in text(r)
    r = post(admin_client, f"/members/{member_id}/enroll", follow_redirects=True)
    assert "ne répond pas" in text(r)
    admin_client.get("/lang/en")
    assert "The door service is not responding" in text(admin_client.get("/"))


def test_door_refusal_is_reported(admin_client: FlaskClient, conn, door: FakeDoor) -> None:
    member_id = add_member(conn)
    door.server.handlers["enroll"] = lambda req: {"ok": False, "error": "reader busy"}
    r = post(admin_client, f"/members/{member_id}/enroll", follow_redirects=True)
    assert "La porte a refusé la commande (reader busy)" in text(r)


# --- access log -----------------------------------------------------------------------------


def _at(config: Config, day: str, hour: int = 10) -> float:
    return dt.datetime.combine(dt.date.fromisoformat(day), dt.time(hour), config.tz).timestamp()


@pytest.fixture
def events(conn, config: Config) -> list[int]:
    ids = [
        accesslog.record(conn, kind="badge", result="granted", reason="granted_schedule",
                         at=_at(config, "2026-03-02"), badge_ref="B00001", member_id=1,
                         member_name="Jeanne Martin"),
        accesslog.record(conn, kind="badge", result="denied", reason="denied_outside_schedule",
                         at=_at(config, "2026-03-03", 23), badge_ref="B00002", member_id=2,
                         member_name="=HYPERLINK(\"http://x\")"),
        accesslog.record(conn, kind="badge", result="denied", reason="denied_unknown_card",
                         at=_at(config, "2026-03-04"), badge_ref="?1a2b3c4d"),
        accesslog.record(conn, kind="remote", result="granted", reason="granted_remote",
                         at=_at(config, "2026-03-05"), actor="alice"),
    ]
    return ids


def test_access_log_filters(admin_client: FlaskClient, events: list[int]) -> None:
    html = text(admin_client.get("/log"))
    assert html.count('class="event ') == 4
    assert "Hors des horaires du forfait" in html and "Badge inconnu" in html
    denied = text(admin_client.get("/log?result=denied"))
    assert denied.count('class="event ') == 2 and "Jeanne Martin" not in denied
    period = text(admin_client.get("/log?from=2026-03-03&to=2026-03-04"))
    assert period.count('class="event ') == 2  # "to" includes the whole day, 23:00 included
    reason = text(admin_client.get("/log?reason=granted_remote"))
    assert reason.count('class="event ') == 1 and "alice" in reason
    who = text(admin_client.get("/log?q=jeanne"))
    assert who.count('class="event ') == 1
    bad = text(admin_client.get("/log?from=03/03/2026&result=evil"))
    assert "Date invalide" in bad and bad.count('class="event ') == 4
    assert 'value="03/03/2026"' in bad


def test_access_log_paging(admin_client: FlaskClient, conn, config: Config) -> None:
    for i in range(60):
        accesslog.record(conn, kind="badge", result="granted", reason="granted_always",
                         at=_at(config, "2026-03-01") + i, member_name=f"M{i}")
    first = text(admin_client.get("/log"))
    assert first.count('class="event ') == 50
    older = re.search(r'href="(/log\?before=\d+)"', first).group(1)
    second = text(admin_client.get(older))
    assert second.count('class="event ') == 10 and "Plus récents" in second


def test_access_log_csv(admin_client: FlaskClient, events: list[int]) -> None:
    r = admin_client.get("/log/export.csv?result=denied")
    assert r.status_code == 200
    assert r.mimetype == "text/csv"
    assert re.fullmatch(r'attachment; filename="journal-acces-\d{8}-\d{4}\.csv"',
                        r.headers["Content-Disposition"])
    rows = list(csv.reader(io.StringIO(r.get_data().decode("utf-8-sig")), delimiter=";"))
    assert rows[0][:5] == ["date", "heure", "type", "résultat", "motif"]
    assert len(rows) == 3
    assert {row[3] for row in rows[1:]} == {"denied"}
    assert rows[1][0] == "2026-03-03" and rows[1][1] == "23:00:00"
    # a name that a spreadsheet would run as a formula is neutralised
    assert rows[1][6] == "'=HYPERLINK(\"http://x\")"
    everything = admin_client.get("/log/export.csv").get_data().decode("utf-8-sig")
    assert len(list(csv.reader(io.StringIO(everything), delimiter=";"))) == 5
    page = text(admin_client.get("/log?result=denied&q=x"))
    assert 'href="/log/export.csv?result=denied&amp;q=x"' in page


def test_api_events_after_id(admin_client: FlaskClient, events: list[int], conn) -> None:
    latest = admin_client.get("/api/events").get_json()
    assert [e["id"] for e in latest["events"]] == events[::-1]
    assert latest["last_id"] == events[-1]
    after = admin_client.get(f"/api/events?after={events[1]}").get_json()
    assert [e["id"] for e in after["events"]] == [events[3], events[2]]
    assert after["events"][0]["result"] == "granted"
    assert after["events"][0]["reason_label"] == "Ouverture à distance par un administrateur"
    none = admin_client.get(f"/api/events?after={events[-1]}").get_json()
    assert none == {"events": [], "last_id": events[-1]}
    new_id = accesslog.record(conn, kind="badge", result="granted", reason="granted_always",
                              member_name="Nouvelle")
    fresh = admin_client.get(f"/api/events?after={events[-1]}").get_json()
    assert [e["id"] for e in fresh["events"]] == [new_id] and fresh["last_id"] == new_id
    assert fresh["events"][0]["who"] == "Nouvelle"


def test_dashboard_lists_last_events(admin_client: FlaskClient, events: list[int],
                                     door: FakeDoor) -> None:
    html = text(admin_client.get("/"))
    assert f'data-last-id="{events[-1]}"' in html
    assert html.count('class="event ') == 4
    assert "Verrouillée" in html and "Lecteur de badges : en service" in html


# --- plans, language, warnings ----------------------------------------------------------------


def test_plans_page(admin_client: FlaskClient, conn) -> None:
    add_member(conn, plan="weekend")
    html = text(admin_client.get("/plans"))
    assert "Du lundi au vendredi : 08:00 – 20:00" in html
    assert "Samedi : 09:00 – 13:00" in html
    assert "Vendredi : 22:00 – 02:00 (le lendemain)" in html
    assert "Accès à toute heure" in html
    assert "du 24/12/2026 au 26/12/2026" in html and "Noël" in html
    assert "fichier de configuration du site (/etc/telecentre/telecentre.toml)" in html
    assert "1 membre(s) sur ce forfait" in html
    admin_client.get("/lang/en")
    assert "Monday to Friday: 08:00 – 20:00" in text(admin_client.get("/plans"))


def test_language_switch(admin_client: FlaskClient) -> None:
    assert "Membres" in text(admin_client.get("/members"))
    r = admin_client.get("/lang/en?next=/members")
    assert r.status_code == 302 and r.headers["Location"] == "/members"
    assert "lang=en" in r.headers["Set-Cookie"] and "HttpOnly" in r.headers["Set-Cookie"]
    html = text(admin_client.get("/members"))
    assert '<html lang="en">' in html and "Add a member" in html and "Ajouter" not in html
    assert admin_client.get("/lang/en?next=https://evil.example").headers["Location"] == "/"
    assert admin_client.get("/lang/de").status_code == 404
    admin_client.get("/lang/fr")
    assert "Ajouter un membre" in text(admin_client.get("/members"))


def test_login_page_follows_site_language(config: Config, conn) -> None:
    from dataclasses import replace

    app = create_app(replace(config, language="en"), secret_key=b"k" * 32)
    assert "Sign in" in text(app.test_client().get("/login"))


def test_uid_only_warning(uid_only_app: Flask, app: Flask) -> None:
    client = uid_only_app.test_client()
    login(client)
    for page in ("/", "/members", "/members/new"):
        assert "un badge peut donc être copié" in text(client.get(page)), page
    normal = app.test_client()
    login(normal)
    assert "uid-only-warning" not in text(normal.get("/"))


# --- i18n catalog ---------------------------------------------------------------------------


def _placeholders(s: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(s) if name}


def test_catalog_complete() -> None:
    for key, entry in i18n.CATALOG.items():
        assert set(entry) == {"fr", "en"}, key
        assert entry["fr"].strip() and entry["en"].strip(), key
        assert _placeholders(entry["fr"]) == _placeholders(entry["en"]), key


def test_templates_and_code_use_known_keys() -> None:
    used: set[str] = set()
    dynamic: list[str] = []
    for path in TEMPLATES.glob("*.html"):
        source = path.read_text("utf-8")
        used |= set(re.findall(r"_\(\s*'([^']+)'", source))
        used |= set(re.findall(r'_\(\s*"([^"]+)"', source))
        used |= {m for pair in re.findall(r"label='([a-z_.0-9]+)'|help='([a-z_.0-9]+)'", source)
                 for m in pair if m}
        dynamic += re.findall(r"_\(\s*'([a-z_.]+)'\s*~", source)
        # every visible literal in a template goes through _(): no bare French words
        stripped = re.sub(r"{[{%#].*?[}%#]}", "", source, flags=re.S)
        stripped = re.sub(r"<[^>]*>|&[a-z]+;", "", stripped)
        leftover = re.findall(r"[A-Za-zÀ-ÿ]{3,}", stripped)
        assert not leftover, (path.name, leftover[:5])
    for path in WEB_PY.glob("*.py"):
        source = path.read_text("utf-8")
        used |= set(re.findall(r'translate\(\s*"([^"]+)"', source))
    used -= set(dynamic)  # prefixes completed at render time, checked below
    unknown = sorted(k for k in used if k not in i18n.CATALOG)
    assert not unknown, unknown
    assert len(used) > 100
    # dynamic keys ('members.status.' ~ status, 'result.' ~ r, ...) exist for every value
    for prefix in dynamic:
        assert any(k.startswith(prefix) for k in i18n.CATALOG), prefix
    for value in ("ok", "suspended", "archived", "expired", "future"):
        assert f"members.status.{value}" in i18n.CATALOG
    for value in ("granted", "denied", "alarm", "info"):
        assert f"result.{value}" in i18n.CATALOG
    for value in ("locked", "unlocked", "open", "held_open", "unknown"):
        assert f"door.state.{value}" in i18n.CATALOG


def test_translate_missing_key_does_not_crash(app: Flask) -> None:
    with app.test_request_context("/"):
        assert i18n.translate("no.such.key") == "no.such.key"


# --- app plumbing -------------------------------------------------------------------------


def test_secret_key_file_is_private_and_reused(config: Config, conn) -> None:
    first = create_app(config)
    path = config.state_dir / "web.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    second = create_app(config)
    assert first.secret_key == second.secret_key and len(first.secret_key) >= 32


def test_metrics_and_security_headers(admin_client: FlaskClient, app: Flask) -> None:
    r = admin_client.get("/members")
    assert r.headers["X-Frame-Options"] == "DENY"
    assert "default-src 'self'" in r.headers["Content-Security-Policy"]
    admin_client.get("/nowhere")
    assert sample(app, "telecentre_web_requests_total",
                  {"endpoint": "members.index", "status": "2xx"}) == 1
    assert sample(app, "telecentre_web_requests_total",
                  {"endpoint": "unmatched", "status": "4xx"}) == 1


def test_make_server_on_port_zero(config: Config, conn) -> None:
    server = make_server(config, "127.0.0.1", 0)
    port = server.bound_port
    assert port > 0 and server.url == f"http://127.0.0.1:{port}/"
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=5) as response:
            body = response.read().decode()
        assert response.status == 200 and "Connexion" in body
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/static/panel.css",
                                    timeout=5) as response:
            assert response.status == 200
    finally:
        server.close()
        thread.join(timeout=5)


def test_metrics_server_serves_the_panel_registry(config: Config, conn) -> None:
    from dataclasses import replace

    from appliance.web.server import make_metrics_server

    server = make_server(config, "127.0.0.1", 0)
    metrics = make_metrics_server(replace(config, web_metrics_port=0), server)
    try:
        client = server.flask_app.test_client()
        client.get("/login")
        url = f"http://127.0.0.1:{metrics.server_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            body = response.read().decode()
        assert 'telecentre_web_requests_total{endpoint="auth.login",status="2xx"} 1.0' in body
        assert "telecentre_web_login_attempts_total" in body
        import subprocess

        from tests.conftest import require_tool

        check = subprocess.run([require_tool("promtool"), "check", "metrics"], input=body,
                               text=True, capture_output=True, timeout=30)
        assert check.returncode == 0 and not (check.stdout + check.stderr).strip(), (
            check.stdout + check.stderr)
    finally:
        metrics.shutdown()
        server.close()


def test_members_paging_and_odd_parameters(admin_client: FlaskClient, conn) -> None:
    for i in range(30):
        add_member(conn, f"Membre {i:02d}")
    first = text(admin_client.get("/members"))
    assert first.count("/members/") - first.count('href="/members/new"') >= 25
    assert "Membre 24" in first and "Membre 25" not in first
    second = text(admin_client.get("/members?page=2"))
    assert "Membre 25" in second and "Membre 29" in second and "Membre 00" not in second
    for odd in ("/members?page=abc", "/members?page=-4", "/log?before=abc",
                "/api/events?after=zz", "/log?from=2026-02-30", "/members/new?x=%00"):
        assert admin_client.get(odd).status_code == 200, odd


def test_simulator_drives_the_emulated_door(admin_client: FlaskClient, door: FakeDoor,
                                            staff_client: FlaskClient) -> None:
    page = text(admin_client.get("/door"))
    assert page.count('id="simulator"') == 1 and "Présenter ce badge" in page
    assert "<section" not in page.split("<title>")[1].split("</title>")[0]
    r = post(admin_client, "/door/emulate", {"action": "tap", "uid": "04A1B2C3D4E5F6"})
    assert r.status_code == 302
    r = post(admin_client, "/door/emulate", {"action": "open"})
    assert [c for c in door.commands if c["cmd"] == "emulate"] == [
        {"cmd": "emulate", "action": "tap", "uid": "04A1B2C3D4E5F6"},
        {"cmd": "emulate", "action": "open"},
    ]
    r = post(admin_client, "/door/emulate", {"action": "format"})
    assert "Action inconnue" in text(admin_client.get("/door"))
    assert len([c for c in door.commands if c["cmd"] == "emulate"]) == 2
    assert post(staff_client, "/door/emulate", {"action": "open"}).status_code == 403
    door.status["emulated"] = False
    assert 'id="simulator"' not in text(admin_client.get("/door"))
