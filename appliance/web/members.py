"""Members: list, create, edit, suspend, archive, and their badges (revoke, enroll).

Validation is appliance.members' (shared with the CLI); this module only turns its
InvalidInput into messages next to the fields, and never drops what the admin typed.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
import time
from collections.abc import Mapping
from typing import Any

from flask import (
    Blueprint,
    abort,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from appliance import members
from appliance.web.auth import actor_name, admin_required, login_required
from appliance.web.common import DoorUnavailable, clip, door_call, get_db, site_config
from appliance.web.door import door_status
from appliance.web.i18n import pick, translate

log = logging.getLogger(__name__)

bp = Blueprint("members", __name__)

PAGE_SIZE = 25
FIELDS = ("name", "number", "email", "phone", "role", "plan", "valid_from", "valid_until", "notes")
# Per-field bounds for what is echoed back; validate_member enforces the real limits.
FIELD_LIMITS = {"notes": 4000}
REASON_MAX = 200


def _log_action(action: str, member_id: int) -> None:
    """Admin actions in the service log: who did what to which member id, never personal data."""
    log.info("admin account #%d did %s to member #%d", g.admin["id"], action, member_id)


def _form_values(source: Mapping[str, Any]) -> dict[str, str]:
    return {f: clip(source.get(f), FIELD_LIMITS.get(f, 300)) for f in FIELDS}


def _field_errors(exc: members.InvalidInput) -> dict[str, str]:
    return {field: pick(message) for field, message in exc.errors.items()}


def _member_or_404(member_id: int) -> sqlite3.Row:
    row = members.get_member(get_db(), member_id)
    if row is None:
        abort(404)
    return row


def _today() -> str:
    return dt.datetime.now(site_config().tz).date().isoformat()


def member_status(row: Mapping[str, Any], today: str) -> str:
    """One word for the list: what the door will do with this member's badge today."""
    if not row["active"]:
        return "archived"
    if row["suspended"]:
        return "suspended"
    if row["valid_until"] and row["valid_until"] < today:
        return "expired"
    if row["valid_from"] and row["valid_from"] > today:
        return "future"
    return "ok"


def _plan_choices() -> list[tuple[str, str]]:
    return [(name, plan.label) for name, plan in site_config().plans.items()]


@bp.route("/members")
@login_required
def index() -> Any:
    q = clip(request.args.get("q"), 100).strip()
    try:
        page = max(1, int(request.args.get("page", "1")))
    except ValueError:
        page = 1
    rows = members.list_members(get_db(), q, limit=PAGE_SIZE + 1, offset=(page - 1) * PAGE_SIZE)
    plans = site_config().plans
    today = _today()
    items = [
        {
            "row": r,
            "status": member_status(r, today),
            "plan_label": plans[r["plan"]].label if r["plan"] in plans else (r["plan"] or ""),
        }
        for r in rows[:PAGE_SIZE]
    ]
    return render_template(
        "members.html",
        items=items,
        q=q,
        page=page,
        has_next=len(rows) > PAGE_SIZE,
    )


def _render_form(
    values: Mapping[str, str],
    errors: Mapping[str, str],
    member: sqlite3.Row | None = None,
    status: int = 200,
) -> Any:
    context: dict[str, Any] = {
        "values": values,
        "errors": errors,
        "member": member,
        "plans": _plan_choices(),
        "known_plans": site_config().plans,
    }
    if member is not None:
        conn = get_db()
        context["badges"] = members.member_badges(conn, member["id"])
        context["status_word"] = member_status(member, _today())
        context["door"] = door_status()
        context.update(_enrollment_context(member, context["door"], context["badges"]))
    return render_template("member_form.html", **context), status


def _enrollment_context(
    member: sqlite3.Row, door: Mapping[str, Any], badges: list[sqlite3.Row]
) -> dict[str, Any]:
    """What the badge section shows: waiting for a card, just bound, or nothing."""
    started = session.get("enroll") or {}
    since = started.get("since", time.time()) if started.get("member_id") == member["id"] else None
    enrolled_ref = None
    wanted = request.args.get("enrolled")
    if wanted and any(b["ref"] == wanted and b["revoked_at"] is None for b in badges):
        enrolled_ref = wanted
        session.pop("enroll", None)
        since = None
    enrollment = door.get("enrollment") if door.get("reachable") else None
    waiting = bool(enrollment and enrollment.get("member_id") == member["id"])
    last = door.get("last_enrolled") if door.get("reachable") else None
    if (
        since is not None
        and last
        and last.get("member_id") == member["id"]
        and last.get("at", 0) >= since
        and not waiting
    ):
        # The card was tapped before this page even loaded.
        enrolled_ref = last.get("badge_ref")
        session.pop("enroll", None)
        since = None
    expired = False
    if since is not None and not waiting and door.get("reachable"):
        # Started from this session, no longer running, and no card bound: time ran out.
        expired = True
        session.pop("enroll", None)
        since = None
    return {
        "enroll_expired": expired,
        "enroll_waiting": waiting,
        "enroll_since": since if since is not None else time.time(),
        "enroll_watch": waiting or since is not None,
        "enroll_other": enrollment if enrollment and not waiting else None,
        "enrolled_ref": enrolled_ref,
    }


@bp.route("/members/new", methods=["GET", "POST"])
@login_required
def new() -> Any:
    if request.method == "GET":
        return _render_form(_form_values({"role": "member"}), {})
    return _create()


@admin_required
def _create() -> Any:
    values = _form_values(request.form)
    conn = get_db()
    try:
        clean = members.validate_member(values, site_config().plans)
        member_id = members.add_member(conn, clean)
    except members.InvalidInput as exc:
        return _render_form(values, _field_errors(exc), status=400)
    _log_action("create", member_id)
    flash(translate("members.created"), "ok")
    return redirect(url_for("members.edit", member_id=member_id))


@bp.route("/members/<int:member_id>", methods=["GET", "POST"])
@login_required
def edit(member_id: int) -> Any:
    member = _member_or_404(member_id)
    if request.method == "GET":
        return _render_form(_form_values(dict(member)), {}, member)
    return _update(member)


@admin_required
def _update(member: sqlite3.Row) -> Any:
    values = _form_values(request.form)
    try:
        clean = members.validate_member(values, site_config().plans)
        members.update_member(get_db(), member["id"], clean)
    except members.InvalidInput as exc:
        return _render_form(values, _field_errors(exc), member, status=400)
    _log_action("update", member["id"])
    flash(translate("members.updated"), "ok")
    return redirect(url_for("members.edit", member_id=member["id"]))


@bp.route("/members/<int:member_id>/suspend", methods=["POST"])
@admin_required
def suspend(member_id: int) -> Any:
    member = _member_or_404(member_id)
    reason = " ".join(clip(request.form.get("reason"), 1000).split())
    if len(reason) > REASON_MAX or any(ord(c) < 32 for c in reason):
        values = _form_values(dict(member))
        flash(translate("members.reason_too_long"), "error")
        return _render_form(values, {}, member, status=400)
    members.set_suspended(get_db(), member_id, True, reason or None)
    _log_action("suspend", member_id)
    flash(translate("members.suspended_done"), "ok")
    return redirect(url_for("members.edit", member_id=member_id))


@bp.route("/members/<int:member_id>/reactivate", methods=["POST"])
@admin_required
def reactivate(member_id: int) -> Any:
    _member_or_404(member_id)
    members.set_suspended(get_db(), member_id, False)
    _log_action("reactivate", member_id)
    flash(translate("members.reactivated_done"), "ok")
    return redirect(url_for("members.edit", member_id=member_id))


@bp.route("/members/<int:member_id>/archive", methods=["POST"])
@admin_required
def archive(member_id: int) -> Any:
    _member_or_404(member_id)
    if request.form.get("confirm") != "yes":
        flash(translate("members.archive_need_confirm"), "error")
        return redirect(url_for("members.edit", member_id=member_id) + "#archive")
    members.set_active(get_db(), member_id, False)
    _log_action("archive", member_id)
    flash(translate("members.archived_done"), "ok")
    return redirect(url_for("members.index"))


@bp.route("/members/<int:member_id>/restore", methods=["POST"])
@admin_required
def restore(member_id: int) -> Any:
    _member_or_404(member_id)
    members.set_active(get_db(), member_id, True)
    _log_action("restore", member_id)
    flash(translate("members.restored_done"), "ok")
    return redirect(url_for("members.edit", member_id=member_id))


@bp.route("/members/<int:member_id>/badges/<int:badge_id>/revoke", methods=["POST"])
@admin_required
def revoke(member_id: int, badge_id: int) -> Any:
    _member_or_404(member_id)
    conn = get_db()
    badge = next((b for b in members.member_badges(conn, member_id) if b["id"] == badge_id), None)
    if badge is None:
        abort(404)
    if members.revoke_badge(conn, badge_id, actor_name()):
        _log_action(f"revoke badge {badge['ref']}", member_id)
    flash(translate("badges.revoked_done", ref=badge["ref"]), "ok")
    return redirect(url_for("members.edit", member_id=member_id) + "#badges")


@bp.route("/members/<int:member_id>/enroll", methods=["POST"])
@admin_required
def enroll(member_id: int) -> Any:
    """Ask the door to bind the next card tapped to this member; the page then waits."""
    member = _member_or_404(member_id)
    if not member["active"]:
        flash(translate("badges.archived_no_enroll"), "error")
        return redirect(url_for("members.edit", member_id=member_id))
    since = time.time()  # before the call: the card may be tapped before it returns
    try:
        door_call("enroll", member_id=member_id, actor=actor_name())
    except DoorUnavailable as exc:
        flash(exc.message, "error")
    else:
        session["enroll"] = {"member_id": member_id, "since": since}
        _log_action("start badge enrollment", member_id)
    return redirect(url_for("members.edit", member_id=member_id) + "#badges")


@bp.route("/members/<int:member_id>/enroll/cancel", methods=["POST"])
@admin_required
def enroll_cancel(member_id: int) -> Any:
    _member_or_404(member_id)
    try:
        door_call("enroll_cancel")
    except DoorUnavailable as exc:
        flash(exc.message, "error")
    else:
        session.pop("enroll", None)
        _log_action("cancel badge enrollment", member_id)
        flash(translate("badges.enroll_cancelled"), "ok")
    return redirect(url_for("members.edit", member_id=member_id) + "#badges")
