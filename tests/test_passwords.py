from __future__ import annotations

import datetime as dt
import subprocess
import sys

import pytest
from werkzeug import security

from appliance import admins, db, members, passwords, wifi_accounts


@pytest.fixture
def conn(tmp_path):
    c = db.open_db(tmp_path / "t.db")
    yield c
    c.close()


@pytest.fixture
def scrypt_runs(monkeypatch) -> list[str]:
    """The methods of every hash Werkzeug computes from here on (a check is one)."""
    runs: list[str] = []
    real = security._hash_internal

    def counted(method: str, salt: str, password: str):
        runs.append(method.split(":")[0])
        return real(method, salt, password)

    monkeypatch.setattr(security, "_hash_internal", counted)
    return runs


def test_importing_the_accounts_computes_no_hash():
    """Every service imports them at start. In a fresh interpreter: this one imported
    them already."""
    code = (
        "from werkzeug import security\n"
        "runs = []\n"
        "real = security._hash_internal\n"
        "security._hash_internal = lambda *a: runs.append(a[0]) or real(*a)\n"
        "import appliance.admins, appliance.wifi_accounts, appliance.web.server\n"
        "assert runs == [], runs\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_an_unknown_account_costs_one_scrypt_check_like_a_wrong_password(conn, scrypt_runs):
    admins.create_admin(conn, "marie", "correct horse battery")
    wifi_accounts.set_portal_secret(conn, _member(conn), "482913")
    scrypt_runs.clear()
    today = dt.date(2026, 5, 4)

    assert admins.authenticate(conn, "nobody", "correct horse battery") is None
    assert scrypt_runs == ["scrypt"]  # the first unknown login too: no hash to make
    scrypt_runs.clear()
    assert wifi_accounts.authenticate_member(conn, "nobody@example.org", "482913",
                                             today).result == "bad_credentials"
    assert admins.authenticate(conn, "nobody", "correct horse battery") is None
    assert scrypt_runs == ["scrypt", "scrypt"]  # one each
    scrypt_runs.clear()
    assert admins.authenticate(conn, "marie", "wrong password!") is None
    assert wifi_accounts.authenticate_member(conn, "A-17", "000000",
                                             today).result == "bad_credentials"
    assert scrypt_runs == ["scrypt", "scrypt"]


def test_the_dummy_hash_has_werkzeugs_current_method_and_parameters():
    """Else an unknown account would cost more or less than a known one."""
    fresh = security.generate_password_hash("anything")
    assert passwords.method(passwords.DUMMY_HASH) == passwords.method(fresh)
    assert passwords.method(fresh).startswith("scrypt:")
    assert not security.check_password_hash(passwords.DUMMY_HASH, "not-a-password")


def _member(conn) -> int:
    data = {"name": "Zoé Martin", "email": "zoe@example.org", "number": "A-17"}
    return members.add_member(conn, members.validate_member(data, {}))
