"""The portal's certificate: checked the way a phone will check it, before it is served.

A certificate that a phone refuses is worse than none: the phone's RFC 8908 request fails
and it falls back to its detection probes anyway, but an admin who sees HTTPS configured
thinks it works. So the web service serves HTTPS only with a certificate that passes a
real TLS handshake, in memory, against the system's trusted authorities and the portal's
name; otherwise it logs why (naming the config key) and serves the portal over http only.
"""

from __future__ import annotations

import datetime as dt
import os
import ssl
import stat
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from appliance.config import Config

WARN_DAYS = 21
CERT_KEY = "gateway.tls_certificate"
KEY_KEY = "gateway.tls_key"

# OpenSSL's X509_V_ERR_* codes a phone would meet, and what the admin should do.
_VERIFY_HINTS = {
    9: "is not valid yet (is the box's clock right?)",
    10: "has expired: renew it (certbot) and copy the new files",
    18: "is self-signed: phones refuse it; get one from a public authority (certbot)",
    19: "is signed by an authority phones do not trust; get one from a public authority",
    20: "lacks its chain, or its authority is not one phones trust: give fullchain.pem "
        "(not cert.pem) from a public authority",
    21: "lacks its chain: give fullchain.pem, not cert.pem",
    62: "is not for this name",
}


class TlsError(Exception):
    """A certificate or key the portal cannot serve, with a message naming the key."""


@dataclass(frozen=True)
class PortalTls:
    """A checked server context for `name`, the certificate's expiry and serial number
    (hexadecimal, as OpenSSL prints it)."""

    name: str
    context: ssl.SSLContext
    not_after: dt.datetime
    serial: str = ""


def portal_name(config: Config) -> str | None:
    """The portal's name when it is to be served over HTTPS (portal_url is https)."""
    url = config.gateway.portal_url
    return urlsplit(url).hostname if url.startswith("https://") else None


def load(config: Config, *, cafile: str | Path | None = None) -> PortalTls:
    """Check gateway.tls_certificate and gateway.tls_key for the portal's name.

    `cafile` replaces the system's trusted authorities (tests use a throwaway CA).
    Raises TlsError with a message for the admin.
    """
    name = portal_name(config)
    if name is None:
        raise TlsError('gateway.portal_url: HTTPS needs portal_url = "https://<name>/"')
    return check(
        Path(config.gateway.tls_certificate), Path(config.gateway.tls_key), name, cafile=cafile
    )


def check(cert: Path, key: str | Path, name: str, *, cafile: str | Path | None = None
          ) -> PortalTls:
    """The server context for `cert` and `key`, once a client trusting `cafile` (None:
    the system's authorities) has accepted them for `name`."""
    key = Path(key)
    _readable(CERT_KEY, cert)
    _readable(KEY_KEY, key)
    mode = key.stat().st_mode
    if mode & (stat.S_IRWXO | stat.S_IWGRP):
        raise TlsError(
            f"{KEY_KEY}: {key} can be read or changed by other users of the box (mode "
            f"{stat.S_IMODE(mode):04o}): chown root:telecentre and chmod 640 it"
        )
    try:
        ssl.create_default_context(cafile=str(cert))  # parses every certificate in the file
    except (ssl.SSLError, ValueError) as exc:
        raise TlsError(f"{CERT_KEY}: {cert} holds no PEM certificate ({exc})") from None
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        server.load_cert_chain(str(cert), str(key))
    except ssl.SSLError as exc:
        what = (f"is not the key of the certificate in {CERT_KEY}"
                if "KEY_VALUES_MISMATCH" in str(exc)
                else f"holds no usable PEM private key ({exc})")
        raise TlsError(f"{KEY_KEY}: {key} {what}") from None
    client = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    try:
        peer = _handshake(server, client, name)
    except ssl.SSLCertVerificationError as exc:
        hint = _VERIFY_HINTS.get(exc.verify_code, f"is refused ({exc.verify_message})")
        raise TlsError(f"{CERT_KEY}: {cert} {hint} (portal name {name})") from None
    except ssl.SSLError as exc:
        raise TlsError(f"{CERT_KEY}: {cert}: a TLS handshake with it failed ({exc})") from None
    not_after = dt.datetime.fromtimestamp(ssl.cert_time_to_seconds(peer["notAfter"]), dt.UTC)
    return PortalTls(name=name, context=server, not_after=not_after,
                     serial=peer.get("serialNumber", ""))


def expires_soon(tls: PortalTls, now: dt.datetime | None = None) -> bool:
    now = now or dt.datetime.now(dt.UTC)
    return tls.not_after - now < dt.timedelta(days=WARN_DAYS)


def files_state(config: Config) -> tuple:
    """What changes when gateway.tls_certificate or gateway.tls_key is replaced, rewritten,
    chmod'ed or chown'ed (os.stat, symlinks followed: certbot's live/ links): cheap enough
    to compare every few seconds. None for a file that cannot be stat'ed."""
    state = []
    for path in (config.gateway.tls_certificate, config.gateway.tls_key):
        try:
            st = os.stat(path)
        except (OSError, TypeError, ValueError):
            state.append(None)
        else:
            state.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return tuple(state)


def _readable(key: str, path: Path) -> None:
    if not path.is_absolute():
        raise TlsError(f"{key}: {path} is not an absolute path")
    try:
        with path.open("rb") as fh:
            fh.read(1)
    except PermissionError:
        raise TlsError(
            f"{key}: {path} cannot be read by the web service (user "
            f"{_user()}): chown root:telecentre and chmod 640 it"
        ) from None
    except OSError as exc:
        raise TlsError(f"{key}: cannot read {path} ({exc.strerror})") from None


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):
        return str(os.geteuid())


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext, name: str) -> dict:
    """A whole TLS handshake between the two contexts in memory; the client's view of
    the server's certificate. Raises what the client raised."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    c = client.wrap_bio(c_in, c_out, server_hostname=name)
    s = server.wrap_bio(s_in, s_out, server_side=True)

    def step(side: ssl.SSLObject) -> bool:
        """One turn of a side's handshake: whether it has finished."""
        try:
            side.do_handshake()
        except ssl.SSLWantReadError:
            return False
        return True

    c_done = s_done = False
    for _ in range(10):
        c_done = c_done or step(c)
        s_in.write(c_out.read())
        s_done = s_done or step(s)
        c_in.write(s_out.read())
        if c_done and s_done:
            return c.getpeercert()
    raise ssl.SSLError("the handshake did not finish")
