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
