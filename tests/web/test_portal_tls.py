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
