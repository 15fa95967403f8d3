"""The admin panel: a Flask app built from the site configuration.

`create_app(config)` is all a caller needs: the secret key, the database schema, CSRF
protection, cookie settings, metrics and the blueprints are set up here, so the panel
served by waitress, the demo and the tests are the same app.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
from pathlib import Path
from typing import Any

from flask import Flask, g, render_template, request
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFError, CSRFProtect
from prometheus_client import CollectorRegistry, Counter
from werkzeug.exceptions import HTTPException

from appliance import db
from appliance.config import Config
from appliance.web import i18n
from appliance.web.common import close_db

log = logging.getLogger(__name__)

# Forms are a few kilobytes; anything far larger is a mistake or an attack.
MAX_CONTENT_LENGTH = 256 * 1024
SESSION_HOURS = 12

__all__ = ["create_app", "load_secret_key"]


class _SessionInterface(SecureCookieSessionInterface):
    """Secure cookies whenever the request came over HTTPS, whatever the config says.

    The box is often reached over plain HTTP on the LAN (no certificate for a private
    address), where a Secure cookie would never come back; behind HTTPS it must be Secure.
    """

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(request and request.is_secure) or super().get_cookie_secure(app)


class WebMetrics:
    """The panel's Prometheus metrics: about the site's panel, never about a person."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "telecentre_web_requests",
            "Panel HTTP requests by endpoint and status class",
            ["endpoint", "status"],
            registry=registry,
        )
        self.logins = Counter(
            "telecentre_web_login_attempts",
            "Panel login attempts by result (success, failure, rate_limited)",
            ["result"],
            registry=registry,
        )


def load_secret_key(state_dir: Path) -> bytes:
    """The session-signing key, created once with mode 0600 so sessions survive restarts."""
    path = Path(state_dir) / "web.key"
    try:
        key = path.read_bytes()
        if len(key) >= 32:
            return key
        log.warning("%s is too short; generating a new one", path)
        path.unlink()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race: use its key
        return path.read_bytes()
    with os.fdopen(fd, "wb") as fh:
        os.fchmod(fh.fileno(), 0o600)
        fh.write(key)
    return key


def create_app(config: Config, *, secret_key: bytes | None = None) -> Flask:
    """Build the panel for this site. `secret_key` overrides the key file (tests)."""
    from appliance.web import accesslog, auth, dashboard, door, line, members, plans, wifi

    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=secret_key if secret_key is not None else load_secret_key(config.state_dir),
        SESSION_COOKIE_NAME="telecentre_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=dt.timedelta(hours=SESSION_HOURS),
        MAX_CONTENT_LENGTH=MAX_CONTENT_LENGTH,
        # The token lives as long as the session: an admin who leaves a form open on a
        # phone for an hour must not lose what they typed to an expired token.
        WTF_CSRF_TIME_LIMIT=None,
        TEMPLATES_AUTO_RELOAD=False,
    )
    app.session_interface = _SessionInterface()
    app.extensions["appliance_config"] = config
    registry = CollectorRegistry()
    app.extensions["metrics_registry"] = registry
    app.extensions["web_metrics"] = WebMetrics(registry)
    app.extensions["login_limiter"] = auth.LoginLimiter()
    CSRFProtect(app)

    # The panel may start before any other service; make sure the schema is there.
    config.state_dir.mkdir(parents=True, exist_ok=True)
    db.open_db(config.db_path).close()

    app.teardown_appcontext(close_db)
    app.before_request(auth.load_admin)

    for module in (auth, dashboard, members, accesslog, plans, door, line, wifi):
        app.register_blueprint(module.bp)

    app.jinja_env.globals.update(
        _=i18n.translate,
        pick=i18n.pick,
        lang=i18n.current_language,
        can_write=auth.can_write,
        site_name=config.site_name,
        uid_only=config.door.card_mode == "uid-only",
        fmt_date=accesslog.format_time,
    )

    @app.after_request
    def _finish(response: Any) -> Any:
        metrics: WebMetrics = app.extensions["web_metrics"]
        endpoint = request.url_rule.endpoint if request.url_rule else "unmatched"
        metrics.requests.labels(endpoint=endpoint, status=f"{response.status_code // 100}xx").inc()
        headers = response.headers
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "same-origin")
        headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; object-src 'none'; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        )
        if request.endpoint != "static":
            headers.setdefault("Cache-Control", "no-store")
        return response

    def _error_page(message_key: str, status: int) -> Any:
        return render_template("error.html", message=i18n.translate(message_key)), status

    @app.errorhandler(CSRFError)
    def _csrf_error(_exc: CSRFError) -> Any:
        return _error_page("error.csrf", 400)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Any:
        key = f"error.{exc.code}"
        if key not in i18n.CATALOG:
            return exc
        if request.path.startswith("/api/"):
            return {"error": i18n.translate(key)}, exc.code
        return _error_page(key, exc.code or 500)

    @app.errorhandler(Exception)
    def _server_error(exc: Exception) -> Any:
        if isinstance(exc, HTTPException):
            return _http_error(exc)
        log.exception("unhandled error on %s", request.endpoint)
        return _error_page("error.500", 500)

    @app.context_processor
    def _layout() -> dict[str, Any]:
        return {"admin": g.get("admin"), "current_path": request.full_path.rstrip("?")}

    return app
