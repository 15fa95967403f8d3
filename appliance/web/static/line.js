/* The Line page: live state and "test now" with progress.
   Polls /api/line every second while a test runs (every 5 s otherwise); every text
   arrives already translated and goes in with textContent, never innerHTML. */
(function () {
  "use strict";
  var form = document.getElementById("line-test-form");
  var statusBox = document.getElementById("line-status");
  if (!statusBox) { return; }
  var statusUrl = statusBox.getAttribute("data-api");
  var csrf = (document.querySelector("meta[name=csrf-token]") || {}).content || "";
  var running = !document.getElementById("line-progress").hidden;
  var timer = null;

  function byId(id) { return document.getElementById(id); }
  function show(el, visible) { if (el) { el.hidden = !visible; } }

  function render(st) {
    show(byId("line-unreachable"), !st.reachable);
    show(byId("line-live"), st.reachable);
    if (!st.reachable) { byId("line-unreachable").textContent = st.message; return; }
    var state = byId("line-state");
    state.textContent = st.state_label;
    state.className = "line-state " + (st.up ? "state-up" : "state-down");
    show(byId("line-cause"), !!st.cause);
    byId("line-cause-label").textContent = st.cause_label;
    if (st.last_test) { byId("line-last-summary").textContent = st.last_test.summary; }
    if (!form) { return; }
    var progress = byId("line-progress");
    if (st.test) {
      show(progress, true);
      byId("line-phase").textContent = st.test.label;
      var bar = byId("line-progress-bar");
      if (st.test.fraction === null) { bar.removeAttribute("value"); } else { bar.value = st.test.fraction; }
    } else if (running) {
      running = false;
      show(progress, false);
      byId("line-test-start").disabled = false;
      if (st.last_test) {
        var out = byId(st.last_test.result === "ok" ? "line-test-result" : "line-test-error");
        out.textContent = st.last_test.summary;
        show(out, true);
      }
    }
  }

  function poll() {
    fetch(statusUrl, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) {
        if (r.status === 401) { window.location.reload(); throw new Error("signed out"); }
        return r.json();
      })
      .then(render)
      .catch(function () { /* the next poll tries again */ })
      .then(function () { timer = setTimeout(poll, running ? 1000 : 5000); });
  }

  function start(force) {
    var body = new URLSearchParams();
    body.set("csrf_token", csrf);
    if (force) { body.set("force", "1"); }
    show(byId("line-warnings"), false);
    show(byId("line-test-result"), false);
    show(byId("line-test-error"), false);
    byId("line-test-start").disabled = true;
    fetch(form.getAttribute("data-api"), {
      method: "POST", credentials: "same-origin", body: body,
      headers: { "Accept": "application/json", "X-CSRFToken": csrf }
    }).then(function (r) { return r.json(); }).then(function (reply) {
      if (reply.warnings && reply.warnings.length) {
        var codes = reply.warnings.map(function (w) { return w.code; });
        document.querySelectorAll("#line-warning-list li").forEach(function (li) {
          li.hidden = codes.indexOf(li.getAttribute("data-code")) < 0;
        });
        show(byId("line-warnings"), true);
        byId("line-test-start").disabled = false;
        return;
      }
      if (reply.error) {
        byId("line-test-error").textContent = reply.error;
        show(byId("line-test-error"), true);
        byId("line-test-start").disabled = false;
        return;
      }
      running = true;
      show(byId("line-progress"), true);
      clearTimeout(timer);
      poll();
    }).catch(function () { byId("line-test-start").disabled = false; });
  }

  if (form) {
    form.addEventListener("submit", function (ev) { ev.preventDefault(); start(false); });
    byId("line-test-force").addEventListener("click", function () { start(true); });
    byId("line-test-cancel").addEventListener("click", function () {
      show(byId("line-warnings"), false);
    });
  }
  timer = setTimeout(poll, running ? 1000 : 5000);
})();
