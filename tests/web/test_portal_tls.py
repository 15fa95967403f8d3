"""The portal over HTTPS (RFC 8908 wants its API there): a throwaway CA and certificates
made here with `cryptography`, the real servers (waitress for http, cheroot for https),
fetched with verification against that CA; and every certificate the portal must refuse,
each named by its config key, with the portal still answering over http."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import logging
import socket
import ssl
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from appliance.config import Config
from appliance.web import tls
from appliance.web.portal import CAPTIVE_JSON
from appliance.web.server import portal_servers

NAME = "portail.telecentre-test.fr"
NOW = dt.datetime.now(dt.UTC)


class Pki:
    """A CA, an intermediate and the certificates they sign, written as PEM files."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.ca_key, self.ca = self._cert("Test root", None, ca=True)
        self.ca_file = self._write("ca.pem", self.ca)
        self.mid_key, self.mid = self._cert("Test intermediate", (self.ca_key, self.ca), ca=True)

    def _cert(self, cn, issuer, *, ca=False, names=(), days=(-1, 30)):
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        signer_key, signer = issuer if issuer else (key, None)
        b = (x509.CertificateBuilder()
             .subject_name(subject)
             .issuer_name(signer.subject if signer else subject)
             .public_key(key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(NOW + dt.timedelta(days=days[0]))
             .not_valid_after(NOW + dt.timedelta(days=days[1]))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if names:
            b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                                critical=False)
        if ca:
            b = b.add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                              False, False), critical=True)
        return key, b.sign(signer_key, hashes.SHA256())

    def _write(self, name, *certs) -> Path:
        path = self.dir / name
        path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))
        return path

    def leaf(self, tag: str, *, names=(NAME,), days=(-1, 30), chain=True,
             self_signed=False, mode=0o640) -> tuple[Path, Path]:
        """(certificate file, key file) for `names`, signed by the intermediate."""
        issuer = None if self_signed else (self.mid_key, self.mid)
        key, cert = self._cert(names[0], issuer, names=names, days=days)
        certs = (cert, self.mid) if chain and not self_signed else (cert,)
        cert_file = self._write(f"{tag}.crt", *certs)
        key_file = self.dir / f"{tag}.key"
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        key_file.chmod(mode)
        return cert_file, key_file


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


def https_config(config: Config, cert: Path, key: Path) -> Config:
    gw = replace(config.gateway, portal_url=f"https://{NAME}/", tls_certificate=str(cert),
                 tls_key=str(key), portal_port=0, portal_tls_port=0)
    return replace(config, gateway=gw, web_listen="127.0.0.1")


@pytest.fixture
def servers():
    """Start what portal_servers returned; stop it at the end."""
    started = []

    def run(server):
        try:
            server.run()
        except OSError:  # waitress's loop meets its closed socket when closed from here
            pass

    def start(*found):
        for server in found:
            if server is not None:
                threading.Thread(target=run, args=(server,), daemon=True).start()
                started.append(server)
                watch = getattr(server, "tls_watch", None)  # as serve() does
                if watch is not None:
                    watch.start()
                    started.append(watch)
        return found

    yield start
    for server in started:
        server.close()


def fetch(port: int, path: str, ca: Path, *, headers=None, timeout=10.0):
    """GET over TLS to 127.0.0.1:port, verifying the certificate for NAME against `ca`."""
    ctx = ssl.create_default_context(cafile=str(ca))
    conn = http.client.HTTPSConnection(NAME, port, context=ctx, timeout=timeout)
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    conn.sock = ctx.wrap_socket(raw, server_hostname=NAME)
    conn.request("GET", path, headers={"Host": NAME, **(headers or {})})
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response, body


def test_rfc8908_api_over_https_verified_against_the_site_s_ca(config, conn, gateway, pki,
                                                                servers):
    cert, key = pki.leaf("good")
    cfg = https_config(config, cert, key)
    portal, secure = servers(*portal_servers(cfg, cafile=pki.ca_file))
    assert secure is not None and secure.bound_port != portal.bound_port

    # The peer is the socket's: a forwarded-for header changes nothing.
    r, body = fetch(secure.bound_port, "/api/captive", pki.ca_file,
                    headers={"X-Forwarded-For": "10.42.0.99"})
    assert r.status == 200 and r.getheader("Content-Type") == CAPTIVE_JSON
    assert json.loads(body) == {
        "captive": True,
        "user-portal-url": f"https://{NAME}/",
        "venue-info-url": f"https://{NAME}/terms",
    }
    assert [c["ip"] for c in gateway.sent("client")] == ["127.0.0.1"]

    # The login page itself over https; the http portal sends probes to the https one.
    r, body = fetch(secure.bound_port, "/", pki.ca_file)
    assert r.status == 200 and b'name="token"' in body
    plain = http.client.HTTPConnection("127.0.0.1", portal.bound_port, timeout=10)
    plain.request("GET", "/generate_204", headers={"Host": "connectivitycheck.gstatic.com"})
    probe = plain.getresponse()
    assert probe.status == 302 and probe.getheader("Location") == f"https://{NAME}/"
    plain.close()


def test_a_silent_or_plain_http_client_does_not_stall_the_https_portal(config, conn, gateway,
                                                                       pki, servers):
    cert, key = pki.leaf("good2")
    _portal, secure = servers(*portal_servers(https_config(config, cert, key),
                                              cafile=pki.ca_file))
    port = secure.bound_port
    silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
    plain = socket.create_connection(("127.0.0.1", port), timeout=10)
    plain.sendall(b"GET /api/captive HTTP/1.1\r\nHost: x\r\n\r\n")
    start = time.monotonic()
    r, _body = fetch(port, "/api/captive", pki.ca_file, timeout=5)
    assert r.status == 200 and time.monotonic() - start < 3
    assert plain.recv(4096) == b""  # closed without an answer; the server goes on
    for s in (*silent, plain):
        s.close()


def test_https_is_refused_by_a_client_without_the_ca(config, conn, gateway, pki, servers,
                                                     tmp_path):
    cert, key = pki.leaf("good3")
    _portal, secure = servers(*portal_servers(https_config(config, cert, key),
                                              cafile=pki.ca_file))
    other = Pki(tmp_path)  # another CA: the phone would refuse the box's certificate
    with pytest.raises(ssl.SSLCertVerificationError):
        fetch(secure.bound_port, "/api/captive", other.ca_file)


@pytest.mark.parametrize(
    ("case", "key_name", "message"),
    [
        ("missing", "gateway.tls_certificate", "No such file"),
        ("expired", "gateway.tls_certificate", "has expired"),
        ("not_yet", "gateway.tls_certificate", "is not valid yet"),
        ("other_name", "gateway.tls_certificate", f"is not for this name (portal name {NAME})"),
        ("no_chain", "gateway.tls_certificate", "give fullchain.pem (not cert.pem)"),
        ("self_signed", "gateway.tls_certificate", "is self-signed"),
        ("garbage", "gateway.tls_certificate", "holds no PEM certificate"),
        ("other_key", "gateway.tls_key", "is not the key of the certificate in "
                                         "gateway.tls_certificate"),
        ("open_key", "gateway.tls_key", "can be read or changed by other users of the box "
                                        "(mode 0644)"),
        ("missing_key", "gateway.tls_key", "No such file"),
    ],
)
def test_a_bad_certificate_is_named_and_the_portal_stays_on_http(
        config, conn, gateway, pki, servers, caplog, case, key_name, message):
    cert, key = pki.leaf("ok-" + case)
    if case == "missing":
        cert = pki.dir / "nowhere.crt"
    elif case == "expired":
        cert, key = pki.leaf(case, days=(-60, -1))
    elif case == "not_yet":
        cert, key = pki.leaf(case, days=(2, 30))
    elif case == "other_name":
        cert, key = pki.leaf(case, names=("portail.elsewhere.fr",))
    elif case == "no_chain":
        cert, key = pki.leaf(case, chain=False)
    elif case == "self_signed":
        cert, key = pki.leaf(case, self_signed=True)
    elif case == "garbage":
        cert.write_text("not a certificate\n")
    elif case == "other_key":
        _cert, key = pki.leaf(case)
    elif case == "open_key":
        key.chmod(0o644)
    elif case == "missing_key":
        key = pki.dir / "nowhere.key"
    cfg = https_config(config, cert, key)

    with pytest.raises(tls.TlsError) as err:
        tls.load(cfg, cafile=pki.ca_file)
    assert str(err.value).startswith(f"{key_name}: ") and message in str(err.value)

    with caplog.at_level(logging.ERROR, logger="appliance.web.server"):
        portal, secure = servers(*portal_servers(cfg, cafile=pki.ca_file))
    assert secure is None
    assert f"the portal is served over http only: {err.value}" in caplog.text
    plain = http.client.HTTPConnection("127.0.0.1", portal.bound_port, timeout=10)
    plain.request("GET", "/api/captive", headers={"Host": NAME})
    r = plain.getresponse()
    assert r.status == 200 and r.getheader("Content-Type") == CAPTIVE_JSON
    assert json.loads(r.read())["user-portal-url"] == f"http://{NAME}/"  # not a dead https
    plain.close()


def test_a_certificate_close_to_its_end_is_served_with_a_warning(config, conn, gateway, pki,
                                                                   servers, caplog):
    cert, key = pki.leaf("soon", days=(-80, 10))
    with caplog.at_level(logging.WARNING, logger="appliance.web.server"):
        _portal, secure = servers(*portal_servers(https_config(config, cert, key),
                                                  cafile=pki.ca_file))
    assert secure is not None
    assert "gateway.tls_certificate: the portal's certificate expires on" in caplog.text


def test_check_config_checks_the_certificate_as_the_web_service_will(tmp_path, pki, capsys):
    from appliance.cli import main

    cert, key = pki.leaf("cli")
    path = tmp_path / "telecentre.toml"
    path.write_text(f'[gateway]\nportal_url = "https://{NAME}/"\n'
                    f'tls_certificate = "{cert}"\ntls_key = "{tmp_path}/none.key"\n')
    assert main(["--config", str(path), "check-config"]) == 1
    err = capsys.readouterr().err
    assert "gateway.tls_key: cannot read" in err and "served over http only" in err
    path.write_text(path.read_text().replace(f"{tmp_path}/none.key", str(key)))
    assert main(["--config", str(path), "check-config"]) == 1  # the test CA: not the system's
    assert "gateway.tls_certificate" in capsys.readouterr().err


# Renewals: the running https portal takes a renewed certificate without a restart.

RELOAD = 0.05  # seconds between two looks at the files (2 s in service)


def install(directory: Path, cert: Path, key: Path, *, mode=0o640, which=("cert", "key")
            ) -> tuple[Path, Path]:
    """Put `cert` and `key` in place as the portal's fullchain.pem and privkey.pem, each
    written aside then renamed over the old one (as `install` and certbot do)."""
    live = (directory / "live/fullchain.pem", directory / "live/privkey.pem")
    live[0].parent.mkdir(exist_ok=True)
    for tag, src, dst, file_mode in (("cert", cert, live[0], 0o644), ("key", key, live[1], mode)):
        if tag in which:
            tmp = dst.with_suffix(".new")
            tmp.write_bytes(src.read_bytes())
            tmp.chmod(file_mode)
            tmp.replace(dst)
    return live


def pem(cert: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificates(cert.read_bytes())[0]


def served(port: int, ca: Path, conn: http.client.HTTPSConnection | None = None) -> int:
    """The serial number of the certificate a connection to the https portal got (a new
    one unless `conn`), after a verified GET /api/captive on it that answered."""
    if conn is None:
        ctx = ssl.create_default_context(cafile=str(ca))
        conn = http.client.HTTPSConnection(NAME, port, context=ctx, timeout=10)
        conn.sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                                    server_hostname=NAME)
        close = True
    else:
        close = False
    serial = x509.load_der_x509_certificate(conn.sock.getpeercert(binary_form=True)).serial_number
    conn.request("GET", "/api/captive", headers={"Host": NAME})
    r = conn.getresponse()
    assert r.status == 200 and json.loads(r.read())["captive"] is True
    if close:
        conn.close()
    return serial


def wait_for(predicate, timeout=5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(RELOAD)
    return predicate()


def test_a_renewed_certificate_is_served_without_a_restart(config, conn, gateway, pki,
                                                           servers, caplog, tmp_path):
    caplog.set_level(logging.INFO, logger="appliance.web.server")
    old = pki.leaf("renew-old", days=(-80, 10))  # close to its end: warned at start
    new = pki.leaf("renew-new", days=(-1, 89))
    cert, key = install(tmp_path, *old)
    _portal, secure = servers(*portal_servers(https_config(config, cert, key),
                                              cafile=pki.ca_file, reload_seconds=RELOAD))
    port = secure.bound_port
    assert served(port, pki.ca_file) == pem(old[0]).serial_number
    time.sleep(RELOAD * 4)  # nothing changed: nothing reloaded
    assert served(port, pki.ca_file) == pem(old[0]).serial_number

    install(tmp_path, *new)
    assert wait_for(lambda: served(port, pki.ca_file) == pem(new[0]).serial_number)
    expiry = pem(new[0]).not_valid_after_utc.date().isoformat()
    assert ("gateway.tls_certificate: the portal now serves the renewed certificate; it "
            f"expires on {expiry}") in caplog.text
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "expires on" in warnings[0].getMessage()  # the start's


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("cert_before_key", "gateway.tls_key: {key} is not the key of the certificate in "
                            "gateway.tls_certificate"),
        ("expired", "gateway.tls_certificate: {cert} has expired"),
        ("other_name", "gateway.tls_certificate: {cert} is not for this name"),
        ("open_key", "gateway.tls_key: {key} can be read or changed by other users of the "
                     "box (mode 0644)"),
    ],
)
def test_a_refused_renewal_keeps_the_old_certificate_until_the_files_are_right(
        config, conn, gateway, pki, servers, caplog, tmp_path, case, message):
    caplog.set_level(logging.INFO, logger="appliance.web.server")
    old, new = pki.leaf(f"{case}-old"), pki.leaf(f"{case}-new")
    cert, key = install(tmp_path, *old)
    _portal, secure = servers(*portal_servers(https_config(config, cert, key),
                                              cafile=pki.ca_file, reload_seconds=RELOAD))
    port = secure.bound_port
    assert served(port, pki.ca_file) == pem(old[0]).serial_number

    if case == "cert_before_key":  # a deploy hook seen between its two copies
        install(tmp_path, *new, which=("cert",))
    elif case == "expired":
        install(tmp_path, *pki.leaf(case, days=(-60, -1)))
    elif case == "other_name":
        install(tmp_path, *pki.leaf(case, names=("portail.elsewhere.fr",)))
    elif case == "open_key":
        install(tmp_path, *new, mode=0o644)

    def errors():
        return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]

    assert wait_for(lambda: errors())
    old_expiry = pem(old[0]).not_valid_after_utc.date().isoformat()
    [error] = errors()
    assert error.startswith(f"the portal keeps its current certificate (it expires on "
                            f"{old_expiry}): {message.format(cert=cert, key=key)}")
    assert served(port, pki.ca_file) == pem(old[0]).serial_number
    time.sleep(RELOAD * 6)  # the same files are not checked (nor logged) again
    assert len(errors()) == 1 and "renewed" not in caplog.text
    assert served(port, pki.ca_file) == pem(old[0]).serial_number

    if case == "cert_before_key":
        install(tmp_path, *new, which=("key",))
    elif case == "open_key":
        key.chmod(0o640)
    else:
        install(tmp_path, *new)
    assert wait_for(lambda: served(port, pki.ca_file) == pem(new[0]).serial_number)
    assert "the portal now serves the renewed certificate" in caplog.text
    assert len(errors()) == 1


def test_connections_in_flight_during_a_renewal_go_on(config, conn, gateway, pki, servers,
                                                      tmp_path):
    old, new = pki.leaf("flight-old"), pki.leaf("flight-new")
    cert, key = install(tmp_path, *old)
    _portal, secure = servers(*portal_servers(https_config(config, cert, key),
                                              cafile=pki.ca_file, reload_seconds=RELOAD))
    port = secure.bound_port
    ctx = ssl.create_default_context(cafile=str(pki.ca_file))
    # One connection accepted (wrapped) whose handshake has not begun; one kept alive.
    pending = socket.create_connection(("127.0.0.1", port), timeout=10)
    alive = http.client.HTTPSConnection(NAME, port, context=ctx, timeout=10)
    alive.sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                                 server_hostname=NAME)
    assert served(port, pki.ca_file, alive) == pem(old[0]).serial_number
    time.sleep(0.5)  # the pending connection is accepted and wrapped by now

    install(tmp_path, *new)
    assert wait_for(lambda: served(port, pki.ca_file) == pem(new[0]).serial_number)

    assert served(port, pki.ca_file, alive) == pem(old[0]).serial_number  # same connection
    late = http.client.HTTPSConnection(NAME, port, context=ctx, timeout=10)
    late.sock = ctx.wrap_socket(pending, server_hostname=NAME)  # its handshake, only now
    assert served(port, pki.ca_file, late) == pem(old[0]).serial_number
    alive.close()
    late.close()


def test_the_expiry_warning_follows_the_certificate_in_use(config, conn, gateway, pki,
                                                           servers, caplog, tmp_path,
                                                           monkeypatch):
    from appliance.web import server

    old = pki.leaf("warn-old", days=(-1, 60))
    soon = pki.leaf("warn-soon", days=(-80, 10))  # a renewal that is itself near its end
    cert, key = install(tmp_path, *old)
    with caplog.at_level(logging.WARNING, logger="appliance.web.server"):
        _portal, secure = servers(*portal_servers(https_config(config, cert, key),
                                                  cafile=pki.ca_file, reload_seconds=RELOAD))
        assert served(secure.bound_port, pki.ca_file) == pem(old[0]).serial_number
        time.sleep(RELOAD * 4)
        assert "expires on" not in caplog.text
        install(tmp_path, *soon)
        expiry = pem(soon[0]).not_valid_after_utc.date().isoformat()
        warning = f"gateway.tls_certificate: the portal's certificate expires on {expiry}"
        assert wait_for(lambda: warning in caplog.text)  # at once, with the new date
        assert served(secure.bound_port, pki.ca_file) == pem(soon[0]).serial_number
        monkeypatch.setattr(server, "WARN_EVERY_SECONDS", 0.3)  # a day, for the test
        assert wait_for(lambda: caplog.text.count(warning) >= 3)  # repeated while it runs


# A certificate refused at start: the portal on http, then on https once the files are
# fixed, without a restart (the panel and the http portal go on).


def captive_url(port: int) -> str:
    """user-portal-url from the http portal's RFC 8908 API (what its links are)."""
    plain = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    plain.request("GET", "/api/captive", headers={"Host": NAME})
    r = plain.getresponse()
    assert r.status == 200 and r.getheader("Content-Type") == CAPTIVE_JSON
    url = json.loads(r.read())["user-portal-url"]
    plain.close()
    return url


def refused_at_start(config, pki, tmp_path, servers, case):
    """The portal started with certificate files that `case` makes refused: (portal,
    its tls_watch, the files' paths), once checked that it serves http only."""
    if case == "missing_key":  # the certificate copied, not yet its key
        cert, key = install(tmp_path, *pki.leaf(case), which=("cert",))
    elif case == "other_name":
        cert, key = install(tmp_path, *pki.leaf(case, names=("portail.elsewhere.fr",)))
    portal, secure = servers(*portal_servers(https_config(config, cert, key),
                                             cafile=pki.ca_file, reload_seconds=RELOAD))
    assert secure is None and portal.tls_watch is not None
    assert captive_url(portal.bound_port) == f"http://{NAME}/"
    return portal, portal.tls_watch, cert, key


def errors(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("case", ["missing_key", "other_name"])
def test_a_certificate_fixed_after_start_is_served_over_https_without_a_restart(
        config, conn, gateway, pki, servers, caplog, tmp_path, case):
    caplog.set_level(logging.INFO, logger="appliance.web.server")
    portal, watch, _cert, _key = refused_at_start(config, pki, tmp_path, servers, case)
    assert len(errors(caplog)) == 1  # the start's
    time.sleep(RELOAD * 4)  # nothing changed: nothing checked
    assert watch.secure is None and len(errors(caplog)) == 1

    good = pki.leaf(f"{case}-fixed")
    install(tmp_path, *good)
    assert wait_for(lambda: watch.secure is not None)
    port = watch.secure.bound_port
    assert served(port, pki.ca_file) == pem(good[0]).serial_number
    _r, body = fetch(port, "/api/captive", pki.ca_file)
    assert json.loads(body)["user-portal-url"] == f"https://{NAME}/"
    assert captive_url(portal.bound_port) == f"https://{NAME}/"  # the http portal's too
    expiry = pem(good[0]).not_valid_after_utc.date().isoformat()
    assert ("gateway.tls_certificate: the certificate files pass now: the captive portal is "
            f"served over HTTPS on 127.0.0.1:{port}, its certificate expires on {expiry}"
            ) in caplog.text
    assert len(errors(caplog)) == 1

    # From now on the https portal follows its renewals, as if it had started with it.
    renewed = pki.leaf(f"{case}-renewed")
    install(tmp_path, *renewed)
    assert wait_for(lambda: served(port, pki.ca_file) == pem(renewed[0]).serial_number)
    assert "the portal now serves the renewed certificate" in caplog.text
    assert caplog.text.count("the certificate files pass now") == 1


def test_files_still_refused_after_a_change_keep_the_portal_on_http(
        config, conn, gateway, pki, servers, caplog, tmp_path):
    caplog.set_level(logging.INFO, logger="appliance.web.server")
    portal, watch, cert, _key = refused_at_start(config, pki, tmp_path, servers,
                                                 "other_name")
    install(tmp_path, *pki.leaf("still-expired", days=(-60, -1)))
    assert wait_for(lambda: len(errors(caplog)) == 2)
    assert errors(caplog)[1] == (f"the portal is served over http only: "
                                 f"gateway.tls_certificate: {cert} has expired: renew it "
                                 f"(certbot) and copy the new files (portal name {NAME})")
    time.sleep(RELOAD * 6)  # the same files are not checked (nor logged) again
    assert len(errors(caplog)) == 2 and watch.secure is None
    assert captive_url(portal.bound_port) == f"http://{NAME}/"
    assert "pass now" not in caplog.text

    good = pki.leaf("still-fixed")
    install(tmp_path, *good)
    assert wait_for(lambda: watch.secure is not None)
    assert served(watch.secure.bound_port, pki.ca_file) == pem(good[0]).serial_number
    assert captive_url(portal.bound_port) == f"https://{NAME}/"
    assert len(errors(caplog)) == 2


def test_a_certificate_not_valid_yet_at_start_is_served_once_it_is(
        config, conn, gateway, pki, servers, caplog, tmp_path):
    """A Pi starting with its clock behind (no clock battery, no network yet) refuses a
    certificate as not valid yet; the files do not change, the time does: the rechecks
    take it once it is valid, and log nothing while the reason stays the same."""
    caplog.set_level(logging.INFO, logger="appliance.web.server")
    valid_in = 3.0  # seconds from now (X.509 times are to the second)
    start = (dt.datetime.now(dt.UTC) - NOW).total_seconds() + valid_in
    good = pki.leaf("not-yet", days=(start / 86400, 30))
    cert, key = install(tmp_path, *good)
    portal, secure = servers(*portal_servers(https_config(config, cert, key),
                                             cafile=pki.ca_file, reload_seconds=RELOAD,
                                             recheck_seconds=0.2))
    assert secure is None and captive_url(portal.bound_port) == f"http://{NAME}/"
    (refused,) = errors(caplog)
    assert refused.startswith(f"the portal is served over http only: gateway.tls_certificate: "
                              f"{cert} is not valid yet (is the box's clock right?)")
    watch = portal.tls_watch
    assert wait_for(lambda: watch.secure is not None, timeout=valid_in + 5)
    assert served(watch.secure.bound_port, pki.ca_file) == pem(good[0]).serial_number
    assert captive_url(portal.bound_port) == f"https://{NAME}/"
    assert "the certificate files pass now" in caplog.text
    assert len(errors(caplog)) == 1  # ~15 rechecks refused it for the same reason


# The same through `telecentre web` itself (serve(): the watch started with the portal,
# closed with it), its real 2 s interval, the test CA trusted as the system's.

WEB = """
import signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
from appliance.cli import main
sys.exit(main(["--config", sys.argv[1], "web"]))
"""


def test_the_web_service_serves_https_once_the_refused_certificate_is_fixed(pki):
    import re
    import shutil
    import signal
    import subprocess
    import sys
    import tempfile

    from appliance import config as config_mod
    from appliance.runtime import init_state
    from tests.conftest import write_site_config

    from .conftest import serving
    from .fake_gateway import PortalGateway

    base = Path(tempfile.mkdtemp(prefix="tc-tls-", dir="/tmp"))  # a short socket path
    cert, key = install(base, *pki.leaf("web-other", names=("portail.elsewhere.fr",)))
    free = []
    for _ in range(3):  # the config wants real ports: free ones, closed just before
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            free.append(s.getsockname()[1])
    path = write_site_config(base, portal_url=f"https://{NAME}/", tls_certificate=str(cert),
                             tls_key=str(key), portal_port=free[0], portal_tls_port=free[1],
                             listen="127.0.0.1", port=free[2])
    cfg = config_mod.load(path)
    init_state(cfg)
    gateway = serving(PortalGateway(cfg.gateway_socket))
    next(gateway)
    lines: list[str] = []
    proc = subprocess.Popen([sys.executable, "-c", WEB, str(path)], stderr=subprocess.PIPE,
                            text=True, env={**__import__("os").environ,
                                            "SSL_CERT_FILE": str(pki.ca_file)})
    threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True).start()

    def logged(pattern: str) -> re.Match | None:
        return next((m for line in list(lines) if (m := re.search(pattern, line))), None)

    try:
        assert wait_for(lambda: logged(r"captive portal listening on 127\.0\.0\.1:(\d+)"), 20)
        http_port = int(logged(r"captive portal listening on 127\.0\.0\.1:(\d+)")[1])
        assert logged(r"ERROR .*the portal is served over http only: "
                      r"gateway\.tls_certificate: .* is not for this name")
        assert captive_url(http_port) == f"http://{NAME}/"

        good = pki.leaf("web-fixed")
        start = time.monotonic()
        install(base, *good)
        https = r"the captive portal is served over HTTPS on 127\.0\.0\.1:(\d+)"
        assert wait_for(lambda: logged(https), 10)
        waited = time.monotonic() - start
        port = int(logged(https)[1])
        assert served(port, pki.ca_file) == pem(good[0]).serial_number
        assert captive_url(http_port) == f"https://{NAME}/"
        assert proc.poll() is None  # the same process: no restart
        print(f"https served {waited:.1f} s after the files were fixed")

        proc.send_signal(signal.SIGINT)  # Ctrl-C: the servers and the watch are closed
        assert proc.wait(timeout=20) == 0
        time.sleep(0.2)  # the last lines
        assert not [line for line in lines if "Traceback" in line]
        assert len([line for line in lines if "ERROR" in line]) == 1  # the start's
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        next(gateway, None)
        shutil.rmtree(base, ignore_errors=True)


def test_a_taken_https_port_leaves_the_portal_on_http_with_http_links(config, conn, gateway,
                                                                      pki, servers, caplog):
    cert, key = pki.leaf("port-taken")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        cfg = https_config(config, cert, key)
        cfg = replace(cfg, gateway=replace(cfg.gateway,
                                           portal_tls_port=taken.getsockname()[1]))
        with caplog.at_level(logging.ERROR, logger="appliance.web.server"):
            portal, secure = servers(*portal_servers(cfg, cafile=pki.ca_file))
    assert secure is None and portal.tls_watch is None  # not a certificate matter
    assert "the portal is served over http only: gateway.portal_tls_port" in caplog.text
    assert captive_url(portal.bound_port) == f"http://{NAME}/"  # not a dead https
