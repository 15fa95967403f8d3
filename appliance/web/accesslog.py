"""The access log page: filters, paging, CSV export, and the live feed for the dashboard."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Response, jsonify, render_template, request

from appliance import accesslog
from appliance.door.policy import REASON_LABELS, Reason
from appliance.web.auth import login_required
from appliance.web.common import clip, csv_download, get_db, local_datetime, site_config
from appliance.web.i18n import CATALOG, current_language, pick, translate

bp = Blueprint("accesslog", __name__)

PAGE_SIZE = 50
DASHBOARD_EVENTS = 20
RESULTS = ("granted", "denied", "alarm", "info")
_REASON_VALUES = frozenset(r.value for r in Reason)
# Reasons the door logs for alarms and door movements, not badge decisions.
_EXTRA_REASONS = tuple(k.removeprefix("reason.") for k in CATALOG if k.startswith("reason.")
                       and k != "reason.all")


def reason_label(value: str | None) -> str:
    """Plain words for a stored reason; an unknown value is shown as stored, never dropped."""
    if not value:
        return ""
    if value in _REASON_VALUES:
        return pick(REASON_LABELS.get(Reason(value)))
    if f"reason.{value}" in CATALOG:
        return translate(f"reason.{value}")
    return value


def format_time(timestamp: float) -> str:
    local = local_datetime(timestamp)
    if current_language() == "fr":
        return local.strftime("%d/%m/%Y %H:%M:%S")
    return local.strftime("%Y-%m-%d %H:%M:%S")


def event_view(row: sqlite3.Row) -> dict[str, Any]:
    """One event as the pages and /api/events show it (labels translated)."""
    result = row["result"]
    return {
        "id": row["id"],
        "at": format_time(row["at"]),
        "result": result if result in RESULTS else "info",
        "result_label": translate(f"result.{result}") if result in RESULTS else result,
        "reason_label": reason_label(row["reason"]),
        "who": row["member_name"] or row["actor"] or row["badge_ref"] or "—",
        "badge": row["badge_ref"] or "",
    }


def reason_choices() -> list[tuple[str, str]]:
    choices = [(r.value, reason_label(r.value)) for r in Reason]
    choices += [(value, reason_label(value)) for value in _EXTRA_REASONS]
    return sorted(choices, key=lambda c: c[1].lower())


def _day_start(value: str) -> dt.datetime:
    day = dt.date.fromisoformat(value)
    return dt.datetime.combine(day, dt.time(0), site_config().tz)


def parse_filter(args: Mapping[str, str]) -> tuple[accesslog.Filter, dict[str, str], list[str]]:
    """Query-string filters → (Filter, the values to echo back, messages about bad ones)."""
    values = {key: clip(args.get(key), 100).strip() for key in ("from", "to", "result",
                                                                  "reason", "q")}
    errors: list[str] = []
    since = until = None
    if values["from"]:
        try:
            since = _day_start(values["from"]).timestamp()
        except ValueError:
            errors.append("from")
    if values["to"]:
        try:
            # "to" is inclusive for a person: up to the end of that day.
            until = (_day_start(values["to"]) + dt.timedelta(days=1)).timestamp()
        except ValueError:
            errors.append("to")
    result = values["result"] if values["result"] in RESULTS else None
    reason = values["reason"] if values["reason"] in _REASON_VALUES | set(_EXTRA_REASONS) else None
    flt = accesslog.Filter(
        since=since, until=until, result=result, reason=reason, text=values["q"] or None
    )
    return flt, values, errors


def _int_arg(name: str) -> int | None:
    try:
        value = int(request.args.get(name, ""))
    except ValueError:
        return None
    return value if value >= 0 else None


@bp.route("/log")
@login_required
def index() -> Any:
    flt, values, errors = parse_filter(request.args)
    before = _int_arg("before")
    rows = accesslog.query(get_db(), flt, before_id=before, limit=PAGE_SIZE + 1)
    more = len(rows) > PAGE_SIZE
    events = [event_view(r) for r in rows[:PAGE_SIZE]]
    return render_template(
        "log.html",
        events=events,
        values=values,
        errors=errors,
        results=RESULTS,
        reasons=reason_choices(),
        older=events[-1]["id"] if more else None,
        paged=before is not None,
        retention_days=site_config().access_log_days,
        filter_args={k: v for k, v in values.items() if v},
    )


@bp.route("/log/export.csv")
@login_required
def export() -> Response:
    flt, _values, _errors = parse_filter(request.args)
    tz = site_config().tz
    return csv_download(lambda conn: accesslog.export_csv(conn, flt, tz), "journal-acces")


@bp.route("/api/events")
@login_required
def api_events() -> Any:
    """Events newer than ?after=<id> (newest first), or the latest ones without it."""
    after = _int_arg("after")
    if after is None:
        rows = accesslog.query(get_db(), limit=DASHBOARD_EVENTS)
    else:
        rows = accesslog.query(get_db(), after_id=after, limit=PAGE_SIZE)
    events = [event_view(r) for r in rows]
    last_id = max([e["id"] for e in events], default=after or 0)
    return jsonify({"events": events, "last_id": last_id})
