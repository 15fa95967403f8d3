"""The Line page: is the line up, where an outage is, what the ISP delivers, "test now".

History comes from the link service's tables, read with a read-only connection (the
panel never writes them); the live state and the "test now" command go over the link
service's UNIX socket, so a test is never a row someone polls, and the page still
shows the history while the service is down.
"""

from __future__ import annotations

import csv
import io
import logging
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)

from appliance import db
from appliance.link import report as report_mod
from appliance.link import store
from appliance.web.auth import admin_required, login_required
from appliance.web.common import (
    STATUS_TIMEOUT,
    ServiceUnavailable,
    local_datetime,
    service_call,
    site_config,
)
from appliance.web.i18n import translate

log = logging.getLogger(__name__)

bp = Blueprint("line", __name__)

CAUSES = ("lan", "access", "upstream", "dns")
WARNINGS = ("budget", "busy")
PHASES = ("starting", "waiting for a quiet line", "idle latency", "download", "upload")
# Range name -> (seconds shown, bucket seconds). 24 h from raw probes in 15-minute
# buckets; 7 and 30 days from the hourly aggregates (raw rows would be 1.3 M for 30 d).
RANGES = {"24h": (86400, 900), "7d": (7 * 86400, 3600), "30d": (30 * 86400, 3 * 3600)}
CHART_W, CHART_H, PAD = 600, 160, 4


class LinkUnavailable(ServiceUnavailable):
    """The link service did not answer or refused."""


def link_call(cmd: str, *, timeout: float = STATUS_TIMEOUT, **args: Any) -> dict[str, Any]:
    return service_call(
        site_config().link_socket, "line", LinkUnavailable, cmd, timeout=timeout, **args
    )


def _mbps(bps: Any) -> str:
    return "-" if bps is None else f"{float(bps) / 1e6:.1f}"


def result_view(r: dict[str, Any] | None) -> dict[str, Any] | None:
    """A test result with its labels in the admin's language (for the page and the JS)."""
    if not r:
        return None
    outcome = r.get("result") if r.get("result") in ("ok", "failed", "skipped_busy",
                                                       "skipped_budget") else "failed"
    view = {
        "result": outcome,
        "label": translate(f"line.result.{outcome}"),
        "when": local_datetime(float(r["at"])).strftime("%Y-%m-%d %H:%M") if r.get("at") else "",
        "download": _mbps(r.get("download_bps")),
        "upload": _mbps(r.get("upload_bps")),
        "grade": str(r.get("grade") or "-")[:2],
        "backend": str(r.get("backend") or "")[:20],
    }
    if outcome == "ok":
        view["summary"] = translate("line.result.summary", down=view["download"],
                                    up=view["upload"], grade=view["grade"])
    else:
        view["summary"] = view["label"]
    return view


def line_status() -> dict[str, Any]:
    """The live state with every label already translated, for the page and /api/line."""
    try:
        st = link_call("status")
    except LinkUnavailable as exc:
        return {"reachable": False, "message": exc.message}
    outage = st.get("outage")
    cause = outage.get("cause") if isinstance(outage, dict) else None
    if cause not in CAUSES:
        cause = None
    test = st.get("test")
    progress = None
    if isinstance(test, dict):
        phase = test.get("phase") if test.get("phase") in PHASES else "starting"
        total = float(test.get("phase_seconds") or 0)
        elapsed = time.time() - float(test.get("phase_at") or time.time())
        progress = {
            "phase": phase,
            "label": translate(f"line.phase.{PHASES.index(phase)}"),
            "fraction": round(min(1.0, elapsed / total), 3) if total > 0 else None,
        }
    since = float(outage["since"]) if cause and outage.get("since") else None
    # Just after the link service restarted: the state its previous run ended with.
    previous = st.get("as_of") == "previous_run"
    state_key = "line.state.up" if cause is None else "line.state.down"
    if previous:
        at = st.get("previous_run_at")
        when = local_datetime(float(at)).strftime("%Y-%m-%d %H:%M") if at else "-"
        state_label = translate(state_key + "_previous", when=when)
    else:
        state_label = translate(state_key)
    return {
        "reachable": True,
        "message": None,
        "up": cause is None,
        "rechecking": previous,
        "state_label": state_label,
        "cause": cause,
        "cause_label": translate(f"line.cause.{cause}") if cause else "",
        "since": local_datetime(since).strftime("%Y-%m-%d %H:%M") if since else "",
        "test": progress,
        "last_test": result_view(st.get("last_test")),
        "month_mb": round(float(st.get("month_bytes") or 0) / 1e6),
        "budget_mb": round(float(st.get("budget_bytes") or 0) / 1e6),
    }


# --- history, read-only -----------------------------------------------------------------


def _history_db() -> sqlite3.Connection | None:
    conn = g.get("_line_db")
    if conn is None:
        try:
            conn = g._line_db = db.connect(site_config().db_path, readonly=True)
        except sqlite3.Error:
            return None
    return conn


@bp.teardown_app_request
def _close_history_db(_exc: BaseException | None = None) -> None:
    conn = g.pop("_line_db", None)
    if conn is not None:
        conn.close()


@dataclass
class Chart:
    """One chart as numbers only: polylines in SVG user units, labels as text."""

    lines: list[dict[str, Any]]
    y_max_label: str
    start_label: str
    end_label: str
    empty: bool


def _points(values: list[tuple[float, float]], t0: float, t1: float, y_max: float) -> str:
    width, height = CHART_W - 2 * PAD, CHART_H - 2 * PAD
    out = []
    for t, v in values:
        x = PAD + (t - t0) / (t1 - t0) * width
        y = PAD + height - min(v, y_max) / y_max * height
        out.append(f"{x:.1f},{y:.1f}")
    return " ".join(out)


def chart(series: list[tuple[str, list[tuple[float, float]]]], t0: float, t1: float,
          unit: str, reference: tuple[str, float] | None = None) -> Chart:
    """Scale series (time, value) to a fixed SVG box; a reference line (the contract)."""
    peak = max([v for _, pts in series for _, v in pts] + [reference[1] if reference else 0])
    y_max = peak * 1.1 if peak > 0 else 1.0
    lines = []
    for name, pts in series:
        points = _points(pts, t0, t1, y_max)
        # Dots only while there are few points (tests, not probes): each one is a test.
        lines.append({"name": name, "points": points, "dots": len(pts) < 60,
                      "coords": [c.split(",") for c in points.split()]})
    if reference:
        name, value = reference
        lines.append({"name": name, "points": _points([(t0, value), (t1, value)], t0, t1,
                                                      y_max), "dots": False, "coords": []})
    fmt = "%d/%m %H:%M" if t1 - t0 > 86400 else "%H:%M"
    return Chart(
        lines=lines,
        y_max_label=f"{y_max:.3g} {unit}",
        start_label=local_datetime(t0).strftime(fmt),
        end_label=local_datetime(t1).strftime(fmt),
        empty=not any(pts for _, pts in series),
    )


def history(conn: sqlite3.Connection, range_name: str, now: float) -> dict[str, Any]:
    """Throughput tests against the contract, and anchor RTT and loss, over one range."""
    span, bucket = RANGES[range_name]
    t0 = now - span
    link = site_config().link
    tests = conn.execute(
        "SELECT at, download_bps, upload_bps FROM link_tests"
        " WHERE result = 'ok' AND at >= ? ORDER BY at", (t0,)
    ).fetchall()
    if range_name == "24h":
        rows = conn.execute(
            "SELECT CAST(at / ? AS INTEGER) * ? AS b, SUM(sent), SUM(received), AVG(rtt_s)"
            " FROM link_probes WHERE role = 'anchor' AND at >= ? GROUP BY b ORDER BY b",
            (bucket, bucket, t0),
        ).fetchall()
    else:
        rows = conn.execute(
            "SELECT CAST(hour / ? AS INTEGER) * ? AS b, SUM(sent), SUM(received),"
            " AVG(rtt_avg_s) FROM link_hourly WHERE role = 'anchor' AND hour >= ?"
            " GROUP BY b ORDER BY b",
            (bucket, bucket, t0),
        ).fetchall()
    mid = bucket / 2
    rtt = [(b + mid, r * 1000) for b, _s, _r, r in rows if r is not None]
    loss = [(b + mid, 100 * (s - rc) / s) for b, s, rc, _ in rows if s]
    return {
        "down": chart([("measured", [(t, d / 1e6) for t, d, _ in tests if d is not None])],
                      t0, now, "Mbit/s", ("contract", link.contracted_download_mbps)),
        "up": chart([("measured", [(t, u / 1e6) for t, _, u in tests if u is not None])],
                    t0, now, "Mbit/s", ("contract", link.contracted_upload_mbps)),
        "rtt": chart([("rtt", rtt)], t0, now, "ms"),
        "loss": chart([("loss", loss)], t0, now, "%"),
    }


def outage_list(conn: sqlite3.Connection, now: float) -> list[dict[str, Any]]:
    out = []
    for row in store.outages(conn, since=now - 30 * 86400, limit=100):
        end = row["end"]
        minutes = ((end if end is not None else now) - row["start"]) / 60
        out.append({
            "cause_label": translate(f"line.cause_short.{row['cause']}")
            if row["cause"] in CAUSES else row["cause"],
            "start": local_datetime(row["start"]).strftime("%Y-%m-%d %H:%M"),
            "end": local_datetime(end).strftime("%Y-%m-%d %H:%M") if end else "",
            "minutes": f"{minutes:.0f}" if minutes >= 1 else "<1",
            "ongoing": end is None,
        })
    return out


# --- routes ------------------------------------------------------------------------------


@bp.route("/line")
@login_required
def page() -> Any:
    range_name = request.args.get("range", "24h")
    if range_name not in RANGES:
        range_name = "24h"
    now = time.time()
    conn = _history_db()
    charts, outages = None, []
    if conn is not None:
        try:
            charts = history(conn, range_name, now)
            outages = outage_list(conn, now)
        except sqlite3.Error as exc:  # no link tables yet: the page still shows the state
            log.warning("line history unavailable: %s", exc)
    return render_template(
        "line.html", status=line_status(), charts=charts, outages=outages,
        range_name=range_name, ranges=list(RANGES), chart_w=CHART_W, chart_h=CHART_H,
        warnings=[{"code": w, "label": translate(f"line.warning.{w}")} for w in WARNINGS],
    )


@bp.route("/api/line")
@login_required
def api_status() -> Any:
    return jsonify(line_status())


def start_test(force: bool) -> tuple[dict[str, Any], int]:
    """Ask the link service for a test: one answer for the JSON and the page-level paths.

    Without `force` the service may answer with warnings (monthly budget spent, line
    busy) instead of starting; an admin then decides, and a forced test runs anyway.
    """
    try:
        reply = link_call("test", force=force)
    except LinkUnavailable as exc:
        return {"started": False, "error": exc.message}, 503
    if not reply.get("ok", True):
        return {"started": False,
                "error": translate("line.refused", detail=str(reply.get("error"))[:200])}, 200
    warnings = [w for w in reply.get("warnings") or [] if w in WARNINGS]
    if warnings:
        return {"started": False, "warnings": [
            {"code": w, "label": translate(f"line.warning.{w}")} for w in warnings]}, 200
    if reply.get("started") or reply.get("running"):
        log.info("admin account #%d started a line test", g.admin["id"])
    return {"started": bool(reply.get("started")), "running": bool(reply.get("running"))}, 200


@bp.route("/line/test", methods=["POST"])
@admin_required
def api_test() -> Any:
    """Start a test (line.js). Without force=1 the service may answer with warnings."""
    reply, code = start_test(request.form.get("force") == "1")
    return jsonify(reply), code


@bp.route("/line/test/start", methods=["POST"])
@admin_required
def test_page() -> Any:
    """The same start without JavaScript: the form's own action.

    Warnings come on a page of their own with a "test anyway" button (force=1); a
    started test sends the admin back to the Line page, which shows its progress as of
    that moment and a link to reload it (no meta refresh, no inline script: CSP).
    """
    reply, _code = start_test(request.form.get("force") == "1")
    if reply.get("warnings"):
        return render_template("line_confirm.html", warnings=reply["warnings"])
    if reply.get("error"):
        flash(reply["error"], "error")
    elif reply.get("started"):
        flash(translate("line.started"), "ok")
    else:
        flash(translate("line.already_running"), "info")
    return redirect(url_for("line.page"))


# --- the monthly ISP report ---------------------------------------------------------------


def _report_month() -> str:
    """The month asked for (YYYY-MM), else the current one; anything malformed is refused."""
    month = request.args.get("month") or local_datetime(time.time()).strftime("%Y-%m")
    try:
        report_mod.month_range(month, site_config().tz)
    except (ValueError, TypeError):
        abort(400)
    return month


def _report() -> tuple[str, report_mod.MonthlyReport | None]:
    month = _report_month()
    conn = _history_db()
    if conn is None:
        return month, None
    link = site_config().link
    try:
        rep = report_mod.monthly_report(
            conn, month, site_config().tz, link.contracted_download_mbps * 1e6,
            link.contracted_upload_mbps * 1e6, time.time(),
        )
    except sqlite3.Error as exc:
        log.warning("line report unavailable: %s", exc)
        return month, None
    return month, rep


def report_rows(rep: report_mod.MonthlyReport) -> list[tuple[str, str]]:
    """(label, value) pairs in the admin's language: the page, the print and the CSV."""

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{x * 100:.1f} %"

    rows = [
        (translate("report.contract"), translate(
            "report.contract_value", down=_mbps(rep.contract_down_bps),
            up=_mbps(rep.contract_up_bps))),
        (translate("report.tests"), str(rep.tests)),
        (translate("report.median_down"), f"{_mbps(rep.median_down_bps)} Mbit/s"),
        (translate("report.median_up"), f"{_mbps(rep.median_up_bps)} Mbit/s"),
        (translate("report.down_80"), pct(rep.down_share_80)),
        (translate("report.down_95"), pct(rep.down_share_95)),
        (translate("report.up_80"), pct(rep.up_share_80)),
        (translate("report.up_95"), pct(rep.up_share_95)),
        (translate("report.availability"), pct(rep.availability)),
    ]
    for cause in CAUSES:
        rows.append((translate("report.outage_minutes",
                               cause=translate(f"line.cause_short.{cause}")),
                     f"{rep.outage_minutes.get(cause, 0):.0f}"))
    for hour, median in rep.worst_hours:
        rows.append((translate("report.worst_hour", hour=f"{hour:02d}:00"),
                     f"{_mbps(median)} Mbit/s"))
    for grade_name, count in rep.grades.items():
        rows.append((translate("report.grade", grade=grade_name), str(count)))
    return rows


@bp.route("/line/report")
@login_required
def report_page() -> Any:
    month, rep = _report()
    return render_template("line_report.html", month=month,
                           rows=report_rows(rep) if rep else [], printable=False)


@bp.route("/line/report/print")
@login_required
def report_print() -> Any:
    month, rep = _report()
    return render_template("line_report_print.html", month=month,
                           rows=report_rows(rep) if rep else [])


@bp.route("/line/report.csv")
@login_required
def report_csv() -> Any:
    month, rep = _report()
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([translate("report.field"), translate("report.value")])
    writer.writerow([translate("report.site"), site_config().site_name])
    writer.writerow([translate("report.month"), month])
    for label, value in report_rows(rep) if rep else []:
        writer.writerow([label, value])
    return Response(
        out.getvalue(), mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="line-report-{month}.csv"'},
    )
