"""The door as the panel sees it: its live state, and the remote unlock.

Everything goes over the door service's UNIX socket; when the service is down the
panel says so in plain words and the rest of it keeps working.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, flash, g, jsonify, redirect, render_template, request, url_for

from appliance.web.auth import actor_name, admin_required, login_required
from appliance.web.common import STATUS_TIMEOUT, DoorUnavailable, door_call
from appliance.web.i18n import CATALOG, translate

log = logging.getLogger(__name__)

bp = Blueprint("door", __name__)

STATES = ("locked", "unlocked", "open", "held_open")


def _alarm_label(code: str) -> str:
    key = f"door.alarm.{code}"
    return translate(key) if key in CATALOG else translate("door.alarm.other", code=code[:40])


def door_status() -> dict[str, Any]:
    """The door's status with every label already in the admin's language.

    The same dict feeds the server-rendered pages and /api/status, so the JavaScript
    only copies text into place and never needs its own translations.
    """
    try:
        st = door_call("status", timeout=STATUS_TIMEOUT)
    except DoorUnavailable as exc:
        return {"reachable": False, "message": exc.message}
    state = st.get("state") if st.get("state") in STATES else "unknown"
    enrollment = st.get("enrollment")
    if isinstance(enrollment, dict):
        name = str(enrollment.get("member_name") or "")[:120]
        enrollment = {
            "member_id": enrollment.get("member_id"),
            "member_name": name,
            "expires_in": max(0.0, float(enrollment.get("expires_in") or 0)),
            "label": translate("door.enrollment_running", name=name),
        }
    else:
        enrollment = None
    last = st.get("last_enrolled")
    if isinstance(last, dict):
        last = {
            "member_id": last.get("member_id"),
            "badge_ref": str(last.get("badge_ref") or "")[:40],
            "at": float(last.get("at") or 0),
        }
    else:
        last = None
    reader_up = bool(st.get("reader_up"))
    return {
        "reachable": True,
        "message": None,
        "state": state,
        "state_label": translate(f"door.state.{state}"),
        "locked": bool(st.get("locked")),
        "open": bool(st.get("open")),
        "alarms": [
            {"code": str(code), "label": _alarm_label(str(code))}
            for code in (st.get("alarms") or [])
        ],
        "reader_up": reader_up,
        "reader_label": translate("door.reader_up" if reader_up else "door.reader_down"),
        "card_mode": st.get("card_mode"),
        "emulated": bool(st.get("emulated")),
        "enrollment": enrollment,
        "last_enrolled": last,
    }


@bp.route("/api/status")
@login_required
def api_status() -> Any:
    return jsonify(door_status())


@bp.route("/door")
@login_required
def page() -> Any:
    return render_template("door.html", status=door_status())


@bp.route("/door/unlock", methods=["POST"])
@admin_required
def unlock() -> Any:
    """Two steps: the first POST shows a confirmation, the second (confirm=yes) unlocks.

    A page rather than a JavaScript confirm() so it reads the same on every phone and
    works without scripts.
    """
    if request.form.get("confirm") != "yes":
        return render_template("door_confirm.html")
    try:
        door_call("unlock", actor=actor_name())
    except DoorUnavailable as exc:
        flash(exc.message, "error")
    else:
        log.info("admin account #%d unlocked the door remotely", g.admin["id"])
        flash(translate("doorpage.unlocked"), "ok")
    return redirect(url_for("door.page"))


EMULATE_ACTIONS = ("tap", "clone", "open", "close", "exit")


@bp.route("/door/emulate", methods=["POST"])
@admin_required
def emulate() -> Any:
    """The demo's simulator: present a card, open or close the door, press the exit button.

    Only a door service running on emulated hardware accepts these; on a real door the
    section is not shown and the door refuses the command.
    """
    action = request.form.get("action", "")
    if action not in EMULATE_ACTIONS:
        flash(translate("sim.bad_action"), "error")
        return redirect(url_for("door.page"))
    args: dict[str, Any] = {"action": action}
    if action in ("tap", "clone"):
        args["uid"] = request.form.get("uid", "").strip()[:40]
    try:
        door_call("emulate", **args)
    except DoorUnavailable as exc:
        flash(exc.message, "error")
    else:
        flash(translate(f"sim.done.{action}"), "ok")
    return redirect(url_for("door.page", uid=args.get("uid", "")))
