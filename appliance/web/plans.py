"""Plans, opening hours and closure days, shown read-only.

They live in the site configuration file (one source of truth that the door reads at
start); the panel shows them in words an admin reads at a glance.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, render_template

from appliance.door.policy import Closure, Plan, Window
from appliance.web.auth import login_required
from appliance.web.common import get_db, site_config
from appliance.web.i18n import current_language, day_name, translate

bp = Blueprint("plans", __name__)


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def describe_days(days: frozenset[int]) -> str:
    """{0,1,2,3,4} → "Du lundi au vendredi"; {5,6} → "Samedi, dimanche"."""
    if len(days) == 7:
        return translate("plans.every_day")
    ordered = sorted(days)
    runs: list[tuple[int, int]] = []
    for day in ordered:
        if runs and day == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    parts = []
    for first, last in runs:
        if last - first >= 2:
            parts.append(translate("plans.day_range", first=day_name(first), last=day_name(last)))
        else:
            parts.extend(day_name(d) for d in range(first, last + 1))
    return _cap(", ".join(parts))


def describe_window(window: Window) -> str:
    start = window.start.strftime("%H:%M")
    end = "24:00" if window.end == dt.time(0) else window.end.strftime("%H:%M")
    text = translate("plans.window", days=describe_days(window.days), start=start, end=end)
    if window.end != dt.time(0) and window.end <= window.start:
        text += translate("plans.next_day")
    return text


def format_date(day: dt.date) -> str:
    return day.strftime("%d/%m/%Y") if current_language() == "fr" else day.isoformat()


def describe_closure(closure: Closure) -> str:
    if closure.start == closure.end:
        return format_date(closure.start)
    return translate(
        "plans.closure_range", start=format_date(closure.start), end=format_date(closure.end)
    )


def describe_plan(plan: Plan) -> list[str]:
    if plan.always:
        return [translate("plans.always")]
    if not plan.windows:
        return [translate("plans.no_window")]
    return [describe_window(w) for w in plan.windows]


@bp.route("/plans")
@login_required
def index() -> Any:
    config = site_config()
    counts = dict(
        get_db()
        .execute("SELECT plan, COUNT(*) FROM members WHERE active = 1 GROUP BY plan")
        .fetchall()
    )
    plans = [
        {
            "name": plan.name,
            "label": plan.label,
            "lines": describe_plan(plan),
            "members": counts.get(plan.name, 0),
        }
        for plan in config.plans.values()
    ]
    closures = [
        {"when": describe_closure(c), "label": c.label}
        for c in sorted(config.closures, key=lambda c: c.start)
    ]
    path = str(config.path) if config.path else translate("plans.config_default")
    return render_template("plans.html", plans=plans, closures=closures, config_path=path)
