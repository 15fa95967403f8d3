"""The dashboard: the door right now and the latest events, kept live by panel.js."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template

from appliance import accesslog, members
from appliance.web.accesslog import DASHBOARD_EVENTS, event_view
from appliance.web.auth import login_required
from appliance.web.common import get_db
from appliance.web.door import door_status

bp = Blueprint("dashboard", __name__)


@bp.route("/")
@login_required
def index() -> Any:
    conn = get_db()
    events = [event_view(r) for r in accesslog.query(conn, limit=DASHBOARD_EVENTS)]
    return render_template(
        "dashboard.html",
        status=door_status(),
        events=events,
        last_id=max([e["id"] for e in events], default=0),
        member_count=members.count_members(conn),
    )
