"""The captive portal: what a device on the Wi-Fi sees before, during and after login.

A Flask app of its own, served by the web service on `gateway.portal_port` (where the
gateway's ruleset redirects unauthorized HTTP, and HTTP to the box's own address), so
nothing of the admin panel is reachable from the LAN through it.

Built for the phone's captive-portal mini-browser, which may drop cookies between visits
and runs no JavaScript we can count on:
- the device is identified by the address its request came from; the gateway service
  turns that into the MAC from the kernel's neighbour table. Nothing the browser sends
  (form, header, cookie) ever names a device;
- forms carry a token bound to the client's address (an HMAC, no cookie), which stops
  another web site from posting to the portal on the device's behalf;
- the language is a `lang` parameter carried in links and forms (French by default).

The portal holds no capability: it asks the gateway over its UNIX socket.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

from flask import Flask, Response, current_app, g, jsonify, redirect, render_template, request
from prometheus_client import CollectorRegistry, Counter, Histogram

from appliance import db, ipc, wifi_accounts
from appliance.config import Config
from appliance.gateway.dnsmasq import portal_base_url
from appliance.gateway.quotas import local_day
from appliance.web import i18n
from appliance.web.auth import LoginLimiter
from appliance.web.common import clip, close_db, get_db

log = logging.getLogger(__name__)

GATEWAY_TIMEOUT = 3.0
TOKEN_SECONDS = 2 * 3600
MAX_SECRET = 128
CAPTIVE_JSON = "application/captive+json"

# Answers the operating systems expect once a device is online (their probes' URLs).
APPLE_SUCCESS = "<HTML><HEAD><TITLE>Success</TITLE></HEAD><BODY>Success</BODY></HTML>"
FIREFOX_CANONICAL = (
    '<meta http-equiv="refresh" content="0;url=https://support.mozilla.org/kb/captive-portal"/>'
)
ONLINE_TEXT = {
    "/connecttest.txt": "Microsoft Connect Test",
    "/ncsi.txt": "Microsoft NCSI",
    "/success.txt": "success\n",
}
PROBE_PATHS = (
    "/generate_204",
    "/gen_204",
    "/hotspot-detect.html",
    "/library/test/success.html",
    "/connecttest.txt",
    "/ncsi.txt",
    "/redirect",
    "/canonical.html",
    "/success.txt",
)


class PortalMetrics:
    """About the site's portal, never about a person: class and result only."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.logins = Counter(
            "telecentre_portal_logins",
            "Portal logins by class (guest, voucher, member) and result.",
            ["class", "result"],
            registry=registry,
        )
        self.authorize_seconds = Histogram(
            "telecentre_portal_authorize_seconds",
            "From a portal login's request to the gateway's rules in place.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=registry,
        )


class MemberLockout:
    """Failed portal logins per member, whichever identifier (e-mail, number) was typed.

    On top of the per-address and per-identifier LoginLimiter: after `threshold`
    failures in a row the member is locked for `base` seconds, and each further failure
    doubles that, up to `cap` (5 → 1 min, 6 → 2 min, ... then 1 h per guess). A success
    forgets the member, so does a day without failure. In memory, like LoginLimiter and
    for the same reasons (one process, no disk writes an attacker could cause, a restart
    only an admin can cause); keyed by member id only, so the number of entries is
    bounded by the members, not by what strangers type. Nothing about the secret kept.
    """

    def __init__(
        self,
        threshold: int = 5,
        base: float = 60.0,
        cap: float = 3600.0,
        *,
        forget_after: float = 24 * 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.base = base
        self.cap = cap
        self.forget_after = forget_after
        self.clock = clock
        self._lock = threading.Lock()
        self._state: dict[int, tuple[int, float]] = {}  # member id: (failures, last failure)

    def _lock_seconds(self, failures: int) -> float:
        if failures < self.threshold:
            return 0.0
        return min(self.cap, self.base * 2 ** min(failures - self.threshold, 32))

    def wait(self, member_id: int) -> float:
        """Seconds before this member's secret may be tried again (0 when allowed now)."""
        now = self.clock()
        with self._lock:
            failures, last = self._state.get(member_id, (0, now))
            if now - last >= self.forget_after:
                self._state.pop(member_id, None)
                return 0.0
            return max(0.0, last + self._lock_seconds(failures) - now)

    def failure(self, member_id: int) -> float:
        """Count a failure; returns the lock it starts (0 while under the threshold)."""
        now = self.clock()
        with self._lock:
            failures, last = self._state.get(member_id, (0, now))
            failures = 1 if now - last >= self.forget_after else failures + 1
            self._state[member_id] = (failures, now)
        return self._lock_seconds(failures)

    def success(self, member_id: int) -> None:
        with self._lock:
            self._state.pop(member_id, None)


class GatewayDown(Exception):
    """The gateway service did not answer: the portal says so instead of failing."""


# --- helpers --------------------------------------------------------------------------------


def _config() -> Config:
    return current_app.extensions["appliance_config"]


def _portal_url() -> str:
    return current_app.extensions["portal_url"]


def client_ip() -> str:
    """The socket's peer address (waitress's REMOTE_ADDR), never a forwarded-for header."""
    addr = request.remote_addr or ""
    if _config().gateway.backend == "dry-run":
        # Demo and tests only: a browser on the loopback is the emulated LAN's
        # "this browser" device (appliance/gateway/dryrun.py). Never with the kernel.
        from appliance.gateway.dryrun import portal_peer

        return portal_peer(_config(), addr)
    return addr


def on_lan(ip: str) -> bool:
    """Whether an address is on the box's LAN (the network of gateway.lan_address).

    The portal listens on web_listen (all interfaces), so it is reachable from the WAN
    side too; only LAN clients may post a login. `ip` is client_ip(): the socket's
    peer, never a header (there is no trusted proxy in front of the portal).
    """
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr in ipaddress.IPv4Interface(_config().gateway.lan_address).network


def gateway(cmd: str, **args: Any) -> dict[str, Any]:
    """A command to the gateway; a refusal comes back as {"ok": False, ...}."""
    try:
        return ipc.call(_config().gateway_socket, cmd, timeout=GATEWAY_TIMEOUT, **args)
    except ipc.IpcUnavailable:
        raise GatewayDown() from None
    except ipc.IpcError as exc:
        return {"ok": False, "error": str(exc)[:200]}


def client_info() -> dict[str, Any]:
    info = gateway("client", ip=client_ip())
    return info if info.get("ok") else {"ok": False, "known": False, "authorized": False}


def form_token(ip: str, now: float | None = None) -> str:
    """A token for the forms, bound to the client's address and valid two hours."""
    ts = int(time.time() if now is None else now)
    return f"{ts}.{_sign(ip, ts)}"


def _sign(ip: str, ts: int) -> str:
    key: bytes = current_app.extensions["portal_key"]
    return hmac.new(key, f"portal-form|{ip}|{ts}".encode(), hashlib.sha256).hexdigest()[:32]


def token_ok(token: str, ip: str, now: float | None = None) -> bool:
    now = time.time() if now is None else now
    ts_text, _, sig = token.partition(".")
    if not ts_text.isdigit() or len(ts_text) > 12:
        return False
    ts = int(ts_text)
    if not now - TOKEN_SECONDS <= ts <= now + 60:
        return False
    return hmac.compare_digest(sig, _sign(ip, ts))


def url(path: str, **params: Any) -> str:
    """A portal path carrying the language when it is not the site's default."""
    if i18n.current_language() != _config().language:
        params["lang"] = i18n.current_language()
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return path + (f"?{query}" if query else "")


def absolute(path: str, **params: Any) -> str:
    return _portal_url().rstrip("/") + url(path, **params)


def fmt_bytes(n: int | None) -> str:
    """Decimal units (quotas are set in millions of bytes), French decimal comma."""
    if n is None:
        return "—"
    fr = i18n.current_language() == "fr"
    for unit_fr, unit_en, size in (("Go", "GB", 10**9), ("Mo", "MB", 10**6), ("ko", "kB", 10**3)):
        if n >= size:
            text = f"{n / size:.1f}"
            return f"{text.replace('.', ',') if fr else text} {unit_fr if fr else unit_en}"
    return f"{n} {'o' if fr else 'B'}"


def fmt_duration(seconds: int | None) -> str:
    if seconds is None:
        return "—"
    hours, rest = divmod(max(0, int(seconds)), 3600)
    minutes = rest // 60
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


def _blocked(info: dict[str, Any]) -> bool:
    """Authorized, but the quota is spent and the policy cuts the device off."""
    return bool(info.get("authorized") and info.get("spent") and info.get("policy") == "block")


def _render(template: str, status: int = 200, **ctx: Any) -> tuple[str, int]:
    return render_template(template, token=form_token(client_ip()), **ctx), status


# --- the app --------------------------------------------------------------------------------


def create_portal_app(
    config: Config,
    *,
    portal_url: str | None = None,
    registry: CollectorRegistry | None = None,
    secret_key: bytes | None = None,
    clock: Callable[[], float] = time.time,
) -> Flask:
    """The portal for this site. `portal_url` defaults to http://<box's LAN address>/."""
    from appliance.web import load_secret_key

    app = Flask(__name__)
    box = str(ipaddress.IPv4Interface(config.gateway.lan_address).ip)
    portal_url = portal_url or portal_base_url(config)
    app.config.update(MAX_CONTENT_LENGTH=16 * 1024, TEMPLATES_AUTO_RELOAD=False)
    app.extensions["appliance_config"] = config
    app.extensions["portal_url"] = portal_url
    app.extensions["portal_hosts"] = {urlsplit(portal_url).hostname, box}
    key = secret_key if secret_key is not None else load_secret_key(config.state_dir)
    app.extensions["portal_key"] = hashlib.sha256(b"portal|" + key).digest()
    app.extensions["portal_metrics"] = PortalMetrics(registry or CollectorRegistry())
    # In memory, like the panel's: one process, no disk writes an attacker could cause.
    app.extensions["member_limiter"] = LoginLimiter(5, 300.0)
    app.extensions["voucher_limiter"] = LoginLimiter(5, 300.0)
    app.extensions["member_lockout"] = MemberLockout()
    app.extensions["portal_clock"] = clock

    config.state_dir.mkdir(parents=True, exist_ok=True)
    db.open_db(config.db_path).close()
    app.teardown_appcontext(close_db)

    app.jinja_env.globals.update(
        _=i18n.translate,
        lang=i18n.current_language,
        site_name=config.site_name,
        url=url,
        fmt_bytes=fmt_bytes,
        fmt_duration=fmt_duration,
    )

    @app.before_request
    def _language_and_host() -> Any:
        wanted = request.values.get("lang", "")
        if wanted in i18n.LANGUAGES:
            g.lang = wanted
        if request.endpoint in ("probe", "captive_api", "static"):
            return None
        # Logins (member, voucher, guest) only from the LAN, before any token or secret is
        # looked at: from the WAN side a 401/409 would tell a right PIN from a wrong one.
        if request.method == "POST" and not on_lan(client_ip()):
            return _render("portal/message.html", 403, message=i18n.translate("portal.lan_only"))
        # Any other site's address (an unauthorized device's HTTP lands here): to the portal.
        if request.host.rsplit(":", 1)[0] not in app.extensions["portal_hosts"]:
            return redirect(absolute("/"), 302)
        return None

    @app.after_request
    def _headers(response: Response) -> Response:
        h = response.headers
        h.setdefault("X-Content-Type-Options", "nosniff")
        h.setdefault("X-Frame-Options", "DENY")
        h.setdefault("Referrer-Policy", "no-referrer")
        h.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; object-src 'none'; frame-ancestors 'none'; "
            "base-uri 'none'; form-action 'self'",
        )
        if request.endpoint != "static":
            h["Cache-Control"] = "private, no-store"
        return response

    @app.errorhandler(GatewayDown)
    def _gateway_down(_exc: GatewayDown) -> Any:
        if request.endpoint == "captive_api":
            return _captive_json({"captive": True, "user-portal-url": _portal_url()})
        return _render("portal/message.html", 503, message=i18n.translate("portal.unavailable"))

    @app.errorhandler(413)
    def _too_large(_exc: Exception) -> Any:
        return _render("portal/message.html", 413, message=i18n.translate("portal.too_large"))

    _routes(app)
    return app


def _captive_json(body: dict[str, Any]) -> Response:
    response = jsonify(body)
    response.mimetype = CAPTIVE_JSON
    return response


def _routes(app: Flask) -> None:
    metrics: PortalMetrics = app.extensions["portal_metrics"]

    @app.get("/")
    def index() -> Any:
        info = client_info()
        if _blocked(info):
            return redirect(url("/quota"), 303)
        if info.get("authorized"):
            return redirect(url("/status"), 303)
        return _login_page(info)

    def _login_page(info: dict[str, Any], status: int = 200, **ctx: Any) -> Any:
        if not info.get("known"):
            ctx.setdefault("warning", i18n.translate("portal.not_on_lan"))
        return _render("portal/index.html", status, **ctx)

    def _authorize(kind: str, owner_id: int | None = None) -> dict[str, Any]:
        start = time.perf_counter()
        args: dict[str, Any] = {"kind": kind, "ip": client_ip()}
        if owner_id is not None:
            args["owner_id"] = owner_id
        reply = gateway("portal_authorize", **args)
        if reply.get("ok"):
            metrics.authorize_seconds.observe(time.perf_counter() - start)
        return reply

    def _after_login(kind: str, reply: dict[str, Any]) -> Any:
        if not reply.get("ok"):
            metrics.logins.labels(kind, "refused").inc()
            log.info("portal %s login refused by the gateway", kind)  # no address, no MAC
            key = "portal.voucher_full" if "maximum" in reply.get("error", "") else "portal.refused"
            return _login_page(client_info(), 409, error=i18n.translate(key))
        metrics.logins.labels(kind, "ok").inc()
        return redirect(url("/quota" if _blocked(reply) else "/status"), 303)

    def _check_token() -> Any:
        if not token_ok(clip(request.form.get("token"), 100), client_ip()):
            return _login_page(client_info(), 400, error=i18n.translate("portal.expired"))
        return None

    @app.post("/guest")
    def guest() -> Any:
        bad = _check_token()
        if bad is not None:
            return bad
        code = clip(request.form.get("voucher"), wifi_accounts.MAX_VOUCHER_INPUT + 1).strip()
        if request.form.get("accept") != "yes":
            return _login_page(
                client_info(), 400, error=i18n.translate("portal.accept_terms"), voucher=code
            )
        if not code:
            return _after_login("guest", _authorize("guest"))
        limiter: LoginLimiter = current_app.extensions["voucher_limiter"]
        keys = (f"ip:{client_ip()}",)
        wait = limiter.wait(keys)
        if wait > 0:
            metrics.logins.labels("voucher", "rate_limited").inc()
            minutes = max(1, int(wait + 59) // 60)
            return _login_page(
                client_info(), 429, error=i18n.translate("portal.rate_limited", minutes=minutes)
            )
        now = current_app.extensions["portal_clock"]()
        voucher_id = wifi_accounts.find_voucher(get_db(), code, now)
        if voucher_id is None:
            limiter.failure(keys)
            metrics.logins.labels("voucher", "failure").inc()
            return _login_page(
                client_info(), 401, error=i18n.translate("portal.bad_voucher"), voucher=code
            )
        limiter.success(keys)
        return _after_login("voucher", _authorize("voucher", voucher_id))

    @app.post("/member")
    def member() -> Any:
        bad = _check_token()
        if bad is not None:
            return bad
        identifier = clip(request.form.get("identifier"), wifi_accounts.MAX_IDENTIFIER).strip()
        secret = clip(request.form.get("secret"), MAX_SECRET + 1)
        limiter: LoginLimiter = current_app.extensions["member_limiter"]
        lockout: MemberLockout = current_app.extensions["member_lockout"]
        keys = (f"ip:{client_ip()}", f"id:{identifier.lower()}")
        wait = limiter.wait(keys)
        # Per member too: the e-mail and the number name the same member and share a count.
        member_id = wifi_accounts.find_member_id(get_db(), identifier) if wait <= 0 else None
        if member_id is not None:
            wait = lockout.wait(member_id)
        if wait > 0:
            metrics.logins.labels("member", "rate_limited").inc()
            minutes = max(1, int(wait + 59) // 60)
            return _login_page(
                client_info(),
                429,
                error=i18n.translate("portal.rate_limited", minutes=minutes),
                identifier=identifier,
            )
        if len(secret) > MAX_SECRET:
            result = wifi_accounts.MemberLogin("bad_credentials")
        else:
            today = local_day(current_app.extensions["portal_clock"](), _config().tz)
            result = wifi_accounts.authenticate_member(get_db(), identifier, secret, today)
        if result.result != "ok":
            limiter.failure(keys)
            if member_id is not None:
                locked = lockout.failure(member_id)
                if locked:  # never the secret, nor the address
                    log.warning("portal: member #%d locked out for %d s after failed logins",
                                member_id, locked)
            metrics.logins.labels("member", "failure").inc()
            key = "portal.not_allowed" if result.result == "not_allowed" else "portal.bad_login"
            return _login_page(
                client_info(), 401, error=i18n.translate(key), identifier=identifier
            )
        limiter.success(keys)
        if member_id is not None:
            lockout.success(member_id)
        return _after_login("member", _authorize("member", result.member_id))

    @app.get("/status")
    def status() -> Any:
        info = client_info()
        if not info.get("authorized"):
            return redirect(url("/"), 303)
        if _blocked(info):
            return redirect(url("/quota"), 303)
        return _render("portal/status.html", info=info)

    @app.get("/quota")
    def quota() -> Any:
        info = client_info()
        if not info.get("authorized"):
            return redirect(url("/"), 303)
        return _render("portal/quota.html", info=info, blocked=_blocked(info))

    @app.post("/logout")
    def logout() -> Any:
        if not token_ok(clip(request.form.get("token"), 100), client_ip()):
            return _render("portal/message.html", 400, message=i18n.translate("portal.expired"))
        gateway("portal_logout", ip=client_ip())
        return _render("portal/message.html", message=i18n.translate("portal.logged_out"))

    @app.get("/terms")
    def terms() -> Any:
        return _render("portal/terms.html")

    @app.get("/api/captive", endpoint="captive_api")
    def captive_api() -> Any:
        """RFC 8908: the API whose URL DHCP option 114 gives (RFC 8910)."""
        info = client_info()
        body: dict[str, Any] = {
            "captive": not info.get("authorized") or _blocked(info),
            "user-portal-url": _portal_url(),
            "venue-info-url": absolute("/terms"),
        }
        if info.get("authorized"):
            body["bytes-remaining"] = int(info.get("remaining_bytes", 0))
            if info.get("seconds_remaining") is not None:
                body["seconds-remaining"] = int(info["seconds_remaining"])
            body["can-extend-session"] = False
        return _captive_json(body)

    def probe() -> Any:
        """The OSes' detection URLs: the portal before login, their "online" answer after."""
        info = client_info()
        if not info.get("authorized"):
            return redirect(absolute("/"), 302)
        if _blocked(info):
            return redirect(absolute("/quota"), 302)
        path = request.path
        if path in ("/generate_204", "/gen_204"):
            return Response(status=204)
        if path in ("/hotspot-detect.html", "/library/test/success.html"):
            return Response(APPLE_SUCCESS, mimetype="text/html")
        if path == "/canonical.html":
            return Response(FIREFOX_CANONICAL, mimetype="text/html")
        if path == "/redirect":
            return redirect(absolute("/status"), 302)
        return Response(ONLINE_TEXT[path], mimetype="text/plain")

    for path in PROBE_PATHS:
        app.add_url_rule(path, "probe", probe, methods=["GET", "HEAD"])

    @app.get("/<path:_anything>")
    def elsewhere(_anything: str) -> Any:
        return redirect(url("/"), 302)
