"""Login, logout, language switch, and the permission decorators every route wears.

Roles: "admin" may do everything; "staff" may look at everything and change nothing.
Permissions live on the routes (decorators) so a forgotten hidden button can never be
the only thing standing between a staff account and a write.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from functools import wraps
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    abort,
    current_app,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from appliance import admins
from appliance.web.common import clip, get_db
from appliance.web.i18n import LANGUAGES, translate

log = logging.getLogger(__name__)

bp = Blueprint("auth", __name__)

F = TypeVar("F", bound=Callable[..., Any])

LANG_COOKIE = "lang"


class LoginLimiter:
    """Counts failed logins per key (client address, username) over a sliding window.

    In memory on purpose: the panel is one process on one box, so there is nothing to
    share; a failed login costs no write to the SD card (and an attacker cannot turn
    failures into disk wear); and a restart, which only an admin can cause, forgetting
    the counters is harmless. The number of keys is bounded so a flood of made-up
    usernames cannot grow memory without limit.
    """

    def __init__(
        self,
        max_failures: int = 5,
        window: float = 300.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        self.max_failures = max_failures
        self.window = window
        self.clock = clock
        self.max_keys = max_keys
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def wait(self, keys: Iterable[str]) -> float:
        """Seconds before any of these keys may try again (0 when allowed now)."""
        now = self.clock()
        longest = 0.0
        for key in keys:
            times = self._recent(key, now)
            if len(times) >= self.max_failures:
                longest = max(longest, times[-self.max_failures] + self.window - now)
        return longest

    def failure(self, keys: Iterable[str]) -> None:
        now = self.clock()
        for key in keys:
            self._recent(key, now)
            self._failures.setdefault(key, deque(maxlen=self.max_failures)).append(now)
            self._failures.move_to_end(key)
        while len(self._failures) > self.max_keys:
            self._failures.popitem(last=False)

    def success(self, keys: Iterable[str]) -> None:
        for key in keys:
            self._failures.pop(key, None)


def load_admin() -> None:
    """Reload the account on every request, so a removed account or role takes effect now."""
    g.admin = None
    admin_id = session.get("admin_id")
    if admin_id is None:
        return
    row = get_db().execute(
        "SELECT id, username, role, display_name FROM admins WHERE id = ?", (admin_id,)
    ).fetchone()
    if row is None:
        session.clear()
        return
    g.admin = row


def actor_name() -> str:
    """How the door's log and ours name the admin doing something."""
    return g.admin["username"]


def can_write() -> bool:
    return g.get("admin") is not None and g.admin["role"] == "admin"


def login_required(view: F) -> F:
    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if g.get("admin") is None:
            if request.path.startswith("/api/"):
                return jsonify({"error": translate("auth.session_expired")}), 401
            return redirect(url_for("auth.login", next=request.full_path))
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


def admin_required(view: F) -> F:
    """Writes: admins only. Staff accounts get 403 whatever the button they forged."""

    @login_required
    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not can_write():
            abort(403)
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


def _safe_next(target: str | None) -> str:
    """Only local paths: a login link must never send the admin to another site."""
    if not target:
        return url_for("dashboard.index")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return url_for("dashboard.index")
    if "\\" in target:
        return url_for("dashboard.index")
    return target


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    metrics = current_app.extensions["web_metrics"]
    limiter: LoginLimiter = current_app.extensions["login_limiter"]
    error = None
    status = 200
    username = ""
    if request.method == "POST":
        username = clip(request.form.get("username"), 100).strip()
        password = clip(request.form.get("password"), 1024)
        keys = (f"addr:{request.remote_addr}", f"user:{username.lower()}")
        wait = limiter.wait(keys)
        if wait > 0:
            metrics.logins.labels(result="rate_limited").inc()
            minutes = max(1, int(wait + 59) // 60)
            error = translate("login.rate_limited", minutes=minutes)
            status = 429
        else:
            row = admins.authenticate(get_db(), username, password) if username else None
            if row is None:
                limiter.failure(keys)
                metrics.logins.labels(result="failure").inc()
                log.warning("failed panel login")  # no address: an IP is personal data
                error = translate("login.bad_credentials")
                status = 401
            else:
                limiter.success(keys)
                metrics.logins.labels(result="success").inc()
                session.clear()  # no session fixation: a fresh session for the account
                session.permanent = True
                session["admin_id"] = row["id"]
                log.info("admin account #%d logged in", row["id"])
                return redirect(_safe_next(request.args.get("next")))
    return (
        render_template("login.html", error=error, username=username),
        status,
    )


@bp.route("/logout", methods=["POST"])
def logout() -> Any:
    if g.get("admin") is not None:
        log.info("admin account #%d logged out", g.admin["id"])
    session.clear()
    return redirect(url_for("auth.login"))


@bp.route("/lang/<code>")
def set_language(code: str) -> Any:
    """A plain link, so it works on the login page and without JavaScript."""
    if code not in LANGUAGES:
        abort(404)
    response = redirect(_safe_next(request.args.get("next")))
    response.set_cookie(
        LANG_COOKIE,
        code,
        max_age=365 * 86400,
        httponly=True,
        samesite="Lax",
        secure=request.is_secure,
    )
    return response
