"""The Wi-Fi page: live devices (kick, extend, reset), policies, vouchers, the legal log.

Everything that acts goes over the gateway's UNIX socket (`gateway_call`): the panel has
no capability, and `vouchers`, `wifi_sessions` and `wifi_quotas` are the gateway's
tables (DESIGN: each service writes its own), so the panel only *reads* them, with
its ordinary connection. The one table written here is `members` (a member's Wi-Fi
secret), which the web service owns.

Voucher codes exist in clear only once: the gateway returns them in its reply, the
panel keeps them in memory for the admin who made the batch (`VoucherSheets`) long
enough to print the sheet, then forgets them. The database holds only their hashes.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)

from appliance import members, wifi_accounts, wifilog
from appliance.web.auth import actor_name, admin_required, login_required
from appliance.web.common import (
    COMMAND_TIMEOUT,
    STATUS_TIMEOUT,
    ServiceUnavailable,
    clip,
    csv_download,
    get_db,
    service_call,
    site_config,
)
from appliance.web.i18n import CATALOG, current_language, pick, translate

log = logging.getLogger(__name__)

bp = Blueprint("wifi", __name__)

KINDS = ("member", "voucher", "guest")
EXTEND_MB = (100, 500, 1000, 5000)
VALID_DAYS = (1, 2, 7, 30)
LOG_PAGE = 50
SHEET_SECONDS = 3600
SHEETS_KEPT = 20
HOSTNAME_SHOWN = 32  # "iPhone-de-Marie-Claude" fits; a phone's table cell stays narrow


class GatewayUnavailable(ServiceUnavailable):
    """The gateway did not answer or refused."""


def gateway_call(cmd: str, *, timeout: float = COMMAND_TIMEOUT, **args: Any) -> dict[str, Any]:
    """Send a command to the gateway service."""
    return service_call(
        site_config().gateway_socket, "wifi", GatewayUnavailable, cmd, timeout=timeout, **args
    )


def _log_action(action: str) -> None:
    """Who did what in the service log; never a MAC, an IP, a name or a code."""
    log.info("admin account #%d did Wi-Fi %s", g.admin["id"], action)


def fmt_mb(n_bytes: Any) -> str:
    """Bytes as the admin reads them: megabytes, French decimal comma in French."""
    try:
        value = float(n_bytes) / 1e6
    except (TypeError, ValueError):
        return translate("common.none")
    text = f"{value:.0f}" if value >= 100 else f"{value:.1f}"
    if current_language() == "fr":
        text = text.replace(".", ",")
    return translate("wifi.mb", n=text)


def fmt_rate(bps: Any) -> str:
    try:
        return translate("wifi.mbit", n=f"{float(bps) / 1e6:.1f}")
    except (TypeError, ValueError):
        return translate("common.none")


# --- voucher sheets -----------------------------------------------------------------------


@dataclass(frozen=True)
class Sheet:
    admin_id: int
    made_at: float
    batch: str
    valid_until: float
    quota_mb: int
    max_devices: int
    codes: tuple[str, ...]


class VoucherSheets:
    """Freshly made codes, for the admin who made them, for an hour, in memory only.

    Never in the database (only hashes go there) nor in the session cookie (it is
    signed, not encrypted). A restart loses an unprinted sheet: the admin revokes that
    batch and makes another, which the page says.
    """

    def __init__(self, *, clock: Any = time.monotonic) -> None:
        self.clock = clock
        self._sheets: OrderedDict[str, Sheet] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, sheet: Sheet) -> str:
        token = secrets.token_urlsafe(16)
        with self._lock:
            self._sheets[token] = sheet
            while len(self._sheets) > SHEETS_KEPT:
                self._sheets.popitem(last=False)
        return token

    def get(self, token: str, admin_id: int) -> Sheet | None:
        with self._lock:
            sheet = self._sheets.get(token)
            if sheet is None:
                return None
            if self.clock() - sheet.made_at > SHEET_SECONDS:
                del self._sheets[token]
                return None
        return sheet if sheet.admin_id == admin_id else None


def _sheets() -> VoucherSheets:
    return current_app.extensions.setdefault("voucher_sheets", VoucherSheets())


# --- live devices ---------------------------------------------------------------------------


def _names(conn: sqlite3.Connection, table: str, column: str, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    marks = ",".join("?" * len(ids))
    rows = conn.execute(f"SELECT id, {column} FROM {table} WHERE id IN ({marks})", sorted(ids))
    return {int(r[0]): str(r[1]) for r in rows}


def hostname_view(value: Any) -> str:
    """What the device called itself in DHCP, for the admin's eyes only.

    The device chose it: control and format characters (newlines, bidi overrides) go,
    runs of spaces become one, and it is cut to HOSTNAME_SHOWN characters; Jinja escapes
    the rest. "" when there is none (the page shows "—"). Never logged.
    """
    if not isinstance(value, str):
        return ""
    name = " ".join("".join(c if c.isprintable() else " " for c in value[:256]).split())
    return name if len(name) <= HOSTNAME_SHOWN else name[:HOSTNAME_SHOWN - 1] + "…"


def _owner_id(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def devices_view(status: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The gateway's `status` reply joined with who the admin knows: member, voucher, guest."""
    quotas = {
        (q.get("kind"), q.get("id")): q
        for q in status.get("quotas") or []
        if isinstance(q, dict)
    }
    raw = [d for d in status.get("devices") or [] if isinstance(d, dict)
           and d.get("kind") in KINDS and _owner_id(d.get("owner_id")) is not None]
    conn = get_db()
    member_names = _names(conn, "members", "name",
                          {d["owner_id"] for d in raw if d["kind"] == "member"})
    batches = _names(conn, "vouchers", "batch",
                     {d["owner_id"] for d in raw if d["kind"] == "voucher"})
    out = []
    for d in raw:
        kind, oid = d["kind"], d["owner_id"]
        if kind == "member":
            who = member_names.get(oid) or translate("wifi.member_n", n=oid)
        elif kind == "voucher":
            who = translate("wifi.voucher_n", n=oid, batch=batches.get(oid, "?"))
        else:
            who = translate("wifi.guest_n", n=oid)
        q = quotas.get((kind, oid)) or {}
        used, limit = q.get("used_bytes"), q.get("limit_bytes")
        percent = None
        if isinstance(used, int) and isinstance(limit, int) and limit > 0:
            percent = min(100, round(100 * used / limit))
        out.append({
            "kind": kind,
            "kind_label": translate(f"wifi.kind.{kind}"),
            "owner_id": oid,
            "who": who,
            "hostname": hostname_view(d.get("hostname")),
            "mac": clip(d.get("mac"), 17),
            "ip": clip(d.get("ip"), 15),
            "used": fmt_mb(used) if used is not None else translate("common.none"),
            "limit": fmt_mb(limit) if limit is not None else translate("common.none"),
            "percent": percent,
            "spent": bool(q.get("spent")),
            "rate_down": fmt_rate(d["rate_down_bps"]) if "rate_down_bps" in d else None,
            "rate_up": fmt_rate(d["rate_up_bps"]) if "rate_up_bps" in d else None,
        })
    out.sort(key=lambda x: (KINDS.index(x["kind"]), x["who"].lower()))
    return out


def policies_view() -> list[dict[str, Any]]:
    """The classes as configured (read-only here: they live in the site's config file)."""
    gw = site_config().gateway
    return [
        {
            "label": translate(f"wifi.kind.{name}"),
            "quota": fmt_mb(wc.daily_quota_mb * 1_000_000),
            "down": translate("wifi.mbit", n=f"{wc.down_mbit:g}"),
            "up": translate("wifi.mbit", n=f"{wc.up_mbit:g}"),
            "when_spent": translate(f"wifi.when_spent.{wc.when_spent}"),
        }
        for name, wc in (("member", gw.member), ("guest", gw.guest))
    ]


@bp.route("/wifi")
@login_required
def page() -> Any:
    message = None
    devices: list[dict[str, Any]] = []
    day = None
    lan: Mapping[str, Any] | None = None
    try:
        status = gateway_call("status", timeout=STATUS_TIMEOUT)
        devices = devices_view(status)
        day = status.get("day")
        lan = status.get("lan") if isinstance(status.get("lan"), dict) else None
    except GatewayUnavailable as exc:
        message = exc.message
    return render_template(
        "wifi.html",
        message=message,
        # The LAN not ready (no Wi-Fi adapter, a wrong interface name) or forwarding off:
        # nobody gets online, whatever the rest of the page says.
        lan_problem=None if lan is None else (
            "wifi.lan_missing" if not lan.get("ready") else
            "wifi.forwarding_off" if not lan.get("forwarding") else None),
        lan_interface=(lan or {}).get("interface", ""),
        devices=devices,
        day=day,
        policies=policies_view(),
        extend_choices=[(mb, fmt_mb(mb * 1_000_000)) for mb in EXTEND_MB],
    )


def _posted_owner() -> tuple[str, int]:
    kind = request.form.get("kind", "")
    try:
        owner_id = int(request.form.get("owner_id", ""))
    except ValueError:
        abort(400)
    if kind not in KINDS or owner_id < 0:
        abort(400)
    return kind, owner_id


def _act(cmd: str, done_key: str, **args: Any) -> Any:
    try:
        gateway_call(cmd, **args)
    except GatewayUnavailable as exc:
        flash(exc.message, "error")
    else:
        _log_action(cmd)
        flash(translate(done_key), "ok")
    return redirect(url_for("wifi.page"))


@bp.route("/wifi/kick", methods=["POST"])
@admin_required
def kick() -> Any:
    mac = clip(request.form.get("mac"), 17)
    if not mac:
        abort(400)
    return _act("kick", "wifi.kicked", mac=mac)


@bp.route("/wifi/extend", methods=["POST"])
@admin_required
def extend() -> Any:
    kind, owner_id = _posted_owner()
    try:
        mb = int(request.form.get("mb", ""))
    except ValueError:
        abort(400)
    if mb not in EXTEND_MB:
        abort(400)
    return _act("extend", "wifi.extended", kind=kind, owner_id=owner_id,
                extra_bytes=mb * 1_000_000)


@bp.route("/wifi/reset", methods=["POST"])
@admin_required
def reset() -> Any:
    kind, owner_id = _posted_owner()
    return _act("reset", "wifi.was_reset", kind=kind, owner_id=owner_id)


# --- vouchers -------------------------------------------------------------------------------

VOUCHER_FIELDS = {
    # name: (default, low, high)
    "count": (10, 1, 200),
    "quota_mb": (1000, 1, 1_000_000),
    "max_devices": (1, 1, 10),
    "valid_days": (1, 1, 366),
}


def _voucher_form(source: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    values = {k: clip(source.get(k, str(d[0])), 12).strip() for k, d in VOUCHER_FIELDS.items()}
    values["batch"] = clip(source.get("batch"), 60).strip()
    errors = {}
    for key, (_default, lo, hi) in VOUCHER_FIELDS.items():
        try:
            ok = lo <= int(values[key]) <= hi
        except ValueError:
            ok = False
        if not ok:
            errors[key] = translate("wifi.range", lo=lo, hi=hi)
    return values, errors


def vouchers_view(limit: int = 200) -> list[dict[str, Any]]:
    now = time.time()
    rows = get_db().execute(
        "SELECT v.*, (SELECT COUNT(DISTINCT mac) FROM wifi_sessions s WHERE s.owner_kind ="
        " 'voucher' AND s.owner_id = v.id) AS devices FROM vouchers v ORDER BY v.id DESC"
        " LIMIT ?",
        (limit,),
    ).fetchall()
    out = []
    for r in rows:
        if r["revoked_at"] is not None:
            state = "revoked"
        elif r["valid_until"] is not None and r["valid_until"] <= now:
            state = "expired"
        elif r["first_used_at"] is not None:
            state = "used"
        else:
            state = "new"
        out.append({
            "id": r["id"], "batch": r["batch"], "state": state,
            "state_label": translate(f"wifi.voucher_state.{state}"),
            "quota": fmt_mb(r["quota_bytes"]),
            "devices": translate("wifi.devices_of", n=r["devices"], max=r["max_devices"]),
            "valid_until": _local(r["valid_until"]), "created_by": r["created_by"] or "",
        })
    return out


@bp.route("/wifi/vouchers", methods=["GET", "POST"])
@login_required
def vouchers() -> Any:
    if request.method == "POST":
        return _create_vouchers()
    values, _ = _voucher_form({})
    return _render_vouchers(values, {})


def _render_vouchers(values: dict[str, str], errors: dict[str, str], status: int = 200) -> Any:
    return render_template(
        "wifi_vouchers.html", values=values, errors=errors, vouchers=vouchers_view(),
        valid_days=VALID_DAYS, limits=VOUCHER_FIELDS,
    ), status


@admin_required
def _create_vouchers() -> Any:
    values, errors = _voucher_form(request.form)
    if errors:
        return _render_vouchers(values, errors, 400)
    numbers = {k: int(values[k]) for k in VOUCHER_FIELDS}
    try:
        reply = gateway_call(
            "voucher_create", batch=values["batch"], created_by=actor_name(), **numbers
        )
    except GatewayUnavailable as exc:
        errors["gateway"] = exc.message
        return _render_vouchers(values, errors, 503 if exc.unreachable else 400)
    codes = tuple(str(v["code"]) for v in reply.get("vouchers") or [])
    token = _sheets().put(Sheet(
        admin_id=g.admin["id"], made_at=_sheets().clock(), batch=str(reply.get("batch", "")),
        valid_until=float(reply.get("valid_until") or 0), quota_mb=numbers["quota_mb"],
        max_devices=numbers["max_devices"], codes=codes,
    ))
    _log_action(f"voucher batch ({len(codes)})")
    return redirect(url_for("wifi.sheet", token=token), code=303)


@bp.route("/wifi/vouchers/sheet/<token>")
@admin_required
def sheet(token: str) -> Any:
    found = _sheets().get(clip(token, 64), g.admin["id"])
    if found is None:
        flash(translate("wifi.sheet_gone"), "error")
        return redirect(url_for("wifi.vouchers"))
    return render_template(
        "wifi_voucher_sheet.html",
        sheet=found,
        valid_until=_local(found.valid_until),
        quota=fmt_mb(found.quota_mb * 1_000_000),
        # The how-to in French, then English, whatever the panel's language: tickets go
        # to visitors (tourists too), not to the admin.
        how=CATALOG["wifi.ticket_how"],
    )


@bp.route("/wifi/vouchers/<int:voucher_id>/revoke", methods=["POST"])
@admin_required
def revoke(voucher_id: int) -> Any:
    try:
        reply = gateway_call("voucher_revoke", id=voucher_id)
    except GatewayUnavailable as exc:
        flash(exc.message, "error")
    else:
        _log_action("voucher revoke")
        flash(translate("wifi.revoked", n=int(reply.get("kicked") or 0)), "ok")
    return redirect(url_for("wifi.vouchers"))


# --- the legal log --------------------------------------------------------------------------


def _local(timestamp: float | None) -> str:
    if not timestamp:
        return ""
    local = dt.datetime.fromtimestamp(timestamp, site_config().tz)
    return local.strftime("%d/%m/%Y %H:%M" if current_language() == "fr" else "%Y-%m-%d %H:%M")


def _log_filter(args: Mapping[str, str]) -> tuple[wifilog.Filter, dict[str, str], list[str]]:
    """?from=&to= (local days, "to" inclusive) → Filter, values to echo, bad fields."""
    values = {k: clip(args.get(k), 10).strip() for k in ("from", "to")}
    bounds: dict[str, float | None] = {"from": None, "to": None}
    errors = []
    for key, extra in (("from", 0), ("to", 1)):
        if values[key]:
            try:
                day = dt.date.fromisoformat(values[key]) + dt.timedelta(days=extra)
            except ValueError:
                errors.append(key)
                continue
            bounds[key] = dt.datetime.combine(day, dt.time(0), site_config().tz).timestamp()
    return wifilog.Filter(since=bounds["from"], until=bounds["to"]), values, errors


def _who(row: sqlite3.Row) -> str:
    """A legal-log row's owner in the admin's language (the CSV stays French-first)."""
    kind, oid = row["owner_kind"], row["owner_id"]
    if kind == "member":
        if row["member_name"]:
            return translate("wifi.member_named", name=row["member_name"],
                             number=row["member_number"])
        return translate("wifi.member_n", n=oid)
    if kind == "voucher":
        return translate("wifi.voucher_n", n=oid, batch=row["voucher_batch"] or "?")
    return translate("wifi.guest_n", n=oid)


# The legal log is personal data kept under a legal obligation: admins only, like a
# legal request would be handled; staff accounts see devices but not the history.
@bp.route("/wifi/log")
@admin_required
def legal_log() -> Any:
    flt, values, errors = _log_filter(request.args)
    try:
        before = int(request.args.get("before", ""))
    except ValueError:
        before = None
    rows = wifilog.query(get_db(), flt, before_id=before, limit=LOG_PAGE + 1)
    sessions = [
        {
            "id": r["id"],
            "kind_label": translate(f"wifi.kind.{r['owner_kind']}"),
            "who": _who(r),
            "mac": r["mac"], "ip": r["ip"],
            "start": _local(r["started_at"]), "end": _local(r["ended_at"]),
            "reason": r["end_reason"] or "",
            "up": fmt_mb(r["bytes_up"]), "down": fmt_mb(r["bytes_down"]),
        }
        for r in rows[:LOG_PAGE]
    ]
    return render_template(
        "wifi_log.html",
        sessions=sessions,
        values=values,
        errors=errors,
        older=sessions[-1]["id"] if len(rows) > LOG_PAGE else None,
        filter_args={k: v for k, v in values.items() if v},
        retention_days=site_config().wifi_sessions_days,
    )


@bp.route("/wifi/log.csv")
@admin_required
def legal_log_csv() -> Response:
    flt, _values, _errors = _log_filter(request.args)
    tz = site_config().tz
    _log_action("legal log export")
    return csv_download(lambda conn: wifilog.export_csv(conn, flt, tz), "sessions-wifi")


# --- a member's Wi-Fi secret (the web service's own table) ------------------------------------


@bp.route("/members/<int:member_id>/wifi-secret", methods=["POST"])
@admin_required
def member_secret(member_id: int) -> Any:
    conn = get_db()
    if members.get_member(conn, member_id) is None:
        abort(404)
    secret = clip(request.form.get("secret"), 200)
    try:
        wifi_accounts.set_portal_secret(conn, member_id, secret)
    except wifi_accounts.SecretRejected as exc:
        flash(pick(exc.messages), "error")
    else:
        log.info("admin account #%d set the Wi-Fi secret of member #%d", g.admin["id"],
                 member_id)
        flash(translate("wifi.secret_set"), "ok")
    return redirect(url_for("members.edit", member_id=member_id) + "#wifi-secret")
