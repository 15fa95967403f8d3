/* Live updates for the panel: door status, new events, badge enrollment.
   Polls JSON every 1.5 s; all text arrives already translated and is inserted with
   textContent, never innerHTML, so a member's name can never become markup. */
(function () {
  "use strict";
  var POLL_MS = 1500;

  function getJSON(url) {
    return fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) {
        if (r.status === 401) { window.location.reload(); throw new Error("signed out"); }
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        return r.json();
      });
  }

  function byId(id) { return document.getElementById(id); }
  function show(el, visible) { if (el) { el.hidden = !visible; } }
  function offline(isOffline) { show(byId("panel-offline"), isOffline); }

  /* Countdowns tick every second between polls, from the last known expiry. */
  var deadlines = {};
  function setCountdown(id, seconds) {
    deadlines[id] = Date.now() + seconds * 1000;
    tick();
  }
  function tick() {
    Object.keys(deadlines).forEach(function (id) {
      var el = byId(id);
      if (el) { el.textContent = String(Math.max(0, Math.ceil((deadlines[id] - Date.now()) / 1000))); }
    });
  }
  document.querySelectorAll(".js-countdown").forEach(function (el) {
    var s = parseFloat(el.getAttribute("data-expires-in") || "0");
    if (s > 0) { setCountdown(el.id, s); }
  });
  setInterval(tick, 1000);

  /* Door status block (dashboard, door page). */
  function renderStatus(st) {
    if (!byId("door-status")) { return; }
    show(byId("door-unreachable"), !st.reachable);
    show(byId("door-live"), st.reachable);
    if (!st.reachable) { byId("door-unreachable").textContent = st.message; return; }
    var state = byId("door-state");
    state.textContent = st.state_label;
    state.className = "door-state state-" + st.state;
    var list = byId("door-alarms");
    list.textContent = "";
    st.alarms.forEach(function (a) {
      var li = document.createElement("li");
      li.textContent = a.label;
      list.appendChild(li);
    });
    show(byId("door-no-alarm"), st.alarms.length === 0);
    var reader = byId("door-reader");
    reader.textContent = st.reader_label;
    reader.className = "reader " + (st.reader_up ? "reader-up" : "reader-down");
    var enr = byId("door-enrollment");
    show(enr, !!st.enrollment);
    if (st.enrollment) {
      byId("door-enrollment-label").textContent = st.enrollment.label;
      setCountdown("door-enrollment-countdown", st.enrollment.expires_in);
    }
    show(byId("door-emulated"), st.emulated);
  }

  /* Enrollment box on a member's page. */
  var box = byId("enroll-box");
  var watching = box && box.getAttribute("data-watch") === "1";
  var sawWaiting = watching && !byId("enroll-waiting").hidden;
  function renderEnrollment(st) {
    if (!watching || !st.reachable) { return; }
    var mid = Number(box.getAttribute("data-member-id"));
    var since = Number(box.getAttribute("data-since"));
    var last = st.last_enrolled;
    if (last && last.member_id === mid && last.at >= since) {
      watching = false;
      window.location.href = box.getAttribute("data-done-url") + "?enrolled=" +
        encodeURIComponent(last.badge_ref) + "#badges";
      return;
    }
    if (st.enrollment && st.enrollment.member_id === mid) {
      sawWaiting = true;
      show(byId("enroll-waiting"), true);
      setCountdown("enroll-countdown", st.enrollment.expires_in);
    } else if (sawWaiting) {
      watching = false;
      show(byId("enroll-waiting"), false);
      show(byId("enroll-expired"), true);
    }
  }

  var statusBox = byId("door-status");
  var statusUrl = (statusBox || box) && (statusBox || box).getAttribute("data-status-url");
  function pollStatus() {
    if (!statusUrl || (!statusBox && !watching)) { return; }
    getJSON(statusUrl).then(function (st) {
      offline(false);
      renderStatus(st);
      renderEnrollment(st);
    }).catch(function () { offline(true); })
      .then(function () { setTimeout(pollStatus, POLL_MS); });
  }

  /* Latest events on the dashboard: new rows go on top. */
  var table = byId("events");
  function addEvent(tbody, labels, e) {
    var tr = document.createElement("tr");
    tr.className = "event new result-" + e.result;
    tr.setAttribute("data-id", String(e.id));
    var pill = document.createElement("span");
    pill.className = "pill pill-" + e.result;
    pill.textContent = e.result_label;
    [e.at, pill, e.reason_label, e.who].forEach(function (value, i) {
      var td = document.createElement("td");
      td.setAttribute("data-label", labels[i] || "");
      if (typeof value === "string") { td.textContent = value; } else { td.appendChild(value); }
      tr.appendChild(td);
    });
    tbody.insertBefore(tr, tbody.firstChild);
  }
  function pollEvents() {
    var url = table.getAttribute("data-events-url") + "?after=" +
      encodeURIComponent(table.getAttribute("data-last-id"));
    getJSON(url).then(function (data) {
      offline(false);
      var tbody = table.tBodies[0];
      var labels = Array.prototype.map.call(table.tHead.rows[0].cells,
        function (th) { return th.textContent; });
      data.events.slice().reverse().forEach(function (e) { addEvent(tbody, labels, e); });
      var max = Number(table.getAttribute("data-max") || "20");
      while (tbody.rows.length > max) { tbody.deleteRow(tbody.rows.length - 1); }
      table.setAttribute("data-last-id", String(data.last_id));
      show(byId("events-empty"), tbody.rows.length === 0);
    }).catch(function () { offline(true); })
      .then(function () { setTimeout(pollEvents, POLL_MS); });
  }

  if (statusBox || watching) { setTimeout(pollStatus, POLL_MS); }
  if (table && table.getAttribute("data-events-url")) { setTimeout(pollEvents, POLL_MS); }
})();
