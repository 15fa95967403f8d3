"""The fleet path with real processes, on loopback only:

door service + panel and portal + link service + gateway service (emulated site, line
and Wi-Fi: the gateway's dry-run backend) → site agent (Debian's
Prometheus, agent mode, the checked-in configuration) → remote_write → central store
(Debian's Prometheus, the checked-in reference configuration with dashboards/alerts.yml).
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from appliance import config as config_mod
from tests.conftest import require_tool, write_site_config
from tests.dashboards import promstack
from tests.dashboards.promstack import ALERTS, DASHBOARDS, SITE, free_port, http_get, wait_for

pytestmark = pytest.mark.slow

# What Grafana substitutes before sending a query (for the test: short ranges, 1 s scrapes).
GRAFANA_VARIABLES = {
    "$__range_s": "3600",
    "$__range": "1h",
    "$__rate_interval": "10s",
    "$__interval": "10s",
    "$site": SITE,
}
METRIC = re.compile(r"\b(telecentre_[a-z_]+|up)\b")


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target of the checked-in dashboards."""
    out = []
    for name in ("fleet.json", "site.json"):
        for panel in json.loads((DASHBOARDS / name).read_text("utf-8"))["panels"]:
            for t in panel.get("targets", []):
                out.append((f"{name}: {panel['title']}", t["expr"]))
    return out


def grafana_substitute(expr: str) -> str:
    for var, value in GRAFANA_VARIABLES.items():  # longest names first (dict order)
        expr = expr.replace(var, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr}"
    return expr


def cli(cfg_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "appliance", "--config", str(cfg_path), *args],
        capture_output=True, text=True, timeout=60,
    )


@pytest.fixture(scope="module")
def site_services(tmp_path_factory):
    """An emulated site after `telecentre init`: `telecentre door`, `telecentre web`,
    `telecentre link run` (on the emulated line, probing every second) and `telecentre
    gateway` (dry-run backend, counts saved every 5 s, guests' quota 2 MB) running,
    metrics, panel and portal on free loopback ports. Killed by PID afterwards."""
    require_tool("prometheus")
    base = tmp_path_factory.mktemp("site")
    ports = {"door": free_port(), "web": free_port(), "panel": free_port(),
             "link": free_port(), "gateway": free_port(), "portal": free_port()}
    cfg_path = write_site_config(base)
    text = cfg_path.read_text("utf-8")
    text = text.replace("door_port = 0", f"door_port = {ports['door']}")
    text = text.replace("web_port = 0", f"web_port = {ports['web']}")
    text = text.replace('listen = "0.0.0.0"', 'listen = "127.0.0.1"')
    text = text.replace("\nport = 8080\n", f"\nport = {ports['panel']}\n")
    for old, new in (("link_port = 9103", f"link_port = {ports['link']}"),
                     ('line = "real"', 'line = "emulated"'),
                     ("probe_interval = 10", "probe_interval = 1"),
                     ("probe_timeout = 1.0", "probe_timeout = 0.3"),
                     ("down_after = 3", "down_after = 2"), ("up_after = 3", "up_after = 2"),
                     ("scheduled_tests = true", "scheduled_tests = false"),
                     ("test_seconds = 8", "test_seconds = 2"),
                     ('backend = "kernel"', 'backend = "dry-run"'),
                     ("gateway_port = 9104", f"gateway_port = {ports['gateway']}"),
                     ("portal_port = 8088", f"portal_port = {ports['portal']}"),
                     ("persist_seconds = 60", "persist_seconds = 5"),
                     ("daily_quota_mb = 1000\n", "daily_quota_mb = 2\n")):
        text = promstack.replace_once(text, old, new)
    cfg_path.write_text(text, "utf-8")
    cfg = config_mod.load(cfg_path)
    assert (cfg.door_metrics_port, cfg.web_metrics_port, cfg.web_port, cfg.web_listen) == (
        ports["door"], ports["web"], ports["panel"], "127.0.0.1")
    assert (cfg.link_metrics_port, cfg.link.line) == (ports["link"], "emulated")
    result = cli(cfg_path, "init", "--generate-password")
    assert result.returncode == 0, result.stderr
    result = cli(cfg_path, "members", "add", "Ana Test", "--email", "ana@example.org")
    assert result.returncode == 0, result.stderr  # whose Wi-Fi devices the member ones are
    procs: list[subprocess.Popen] = []
    try:
        for service in (["door"], ["web"], ["link", "run"], ["gateway"]):
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "appliance", "--config", str(cfg_path), *service],
                stdout=subprocess.DEVNULL, stderr=open(base / f"{service[0]}.log", "wb"),
                start_new_session=True,
            ))
        for job in ("door", "web", "link", "gateway"):
            wait_for(lambda job=job: http_get(f"http://127.0.0.1:{ports[job]}/metrics"), 20,
                     f"the {job} metrics")
        wait_for(lambda: http_get(f"http://127.0.0.1:{ports['panel']}/login"), 20, "the panel")
        yield cfg_path, ports
    finally:
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the service and anything it started
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)


def activity(cfg_path: Path, panel_port: int) -> None:
    """A refused badge at the door, and a failed panel login: door and panel counters."""
    tap = cli(cfg_path, "emulate", "tap", "04A1B2C3D4E5F6")
    assert tap.returncode == 0, tap.stderr
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    url = f"http://127.0.0.1:{panel_port}/login"
    page = opener.open(url, timeout=5).read().decode()
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)[1]
    form = urllib.parse.urlencode(
        {"csrf_token": token, "username": "admin", "password": "not the password"}).encode()
    try:
        opener.open(url, data=form, timeout=5)
    except urllib.error.HTTPError as exc:
        assert exc.code == 401


@pytest.fixture
def stack(site_services, tmp_path):
    """Central store and site agent from the checked-in configurations; stopped by PID."""
    cfg_path, ports = site_services
    store = promstack.central(tmp_path)
    agent = promstack.agent(tmp_path, ports, store.port)
    try:
        store.start()
        agent.start()
        yield cfg_path, ports, store, agent
    finally:
        agent.stop()
        store.stop()


def wifi_scenario(cfg_path: Path, portal_port: int) -> None:
    """The Wi-Fi on the dry-run gateway: emulated guests, a voucher and a member's device
    browsing; one guest downloads past its 2 MB quota (cut off); the test itself logs in
    on the portal as a guest (a loopback visitor is the emulated "this browser" device)
    after a failed member login."""
    for args in (["add", "guest", "2"], ["add", "voucher"], ["add", "member"],
                 ["download", "guest-1", "5"]):
        done = cli(cfg_path, "gateway", "emulate", *args)
        assert done.returncode == 0, (args, done.stderr)
    portal = f"http://127.0.0.1:{portal_port}/"
    host = {"Host": "10.42.0.1"}  # as a phone reaches it (the box's LAN address)
    page = urllib.request.urlopen(urllib.request.Request(portal, headers=host),
                                  timeout=5).read().decode()
    token = re.search(r'name="token" value="([^"]+)"', page)[1]
    form = urllib.parse.urlencode({"token": token, "identifier": "ana@example.org",
                                   "secret": "wrong PIN"}).encode()
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(urllib.request.Request(portal + "member", form, host), timeout=5)
    assert refused.value.code == 401
    form = urllib.parse.urlencode({"token": token, "accept": "yes"}).encode()
    page = urllib.request.urlopen(urllib.request.Request(portal + "guest", form, host),
                                  timeout=5).read().decode()
    assert "Vous êtes connecté" in page


def line_scenario(cfg_path: Path, store: promstack.Prometheus) -> None:
    """A bad day on the emulated line, seen through the central store: three throughput
    tests on a degraded, bloated line (12/0.4 Mbit/s of 30/1, grade F) until
    LineUnderHalfContract fires, then the access line down until the outage is counted,
    then repaired."""
    done = cli(cfg_path, "link", "emulate", "set", "down_mbps=12", "up_mbps=0.4",
               "down_buffer_kb=1000", "up_buffer_kb=64")
    assert done.returncode == 0, done.stderr
    in_a_row = (f'telecentre_link_tests_below_half_contract_in_a_row{{site="{SITE}",'
                'direction="download"}')
    for n in (1, 2, 3):
        # The bloated line's probes time out under load, but a test makes no outage of
        # its own, so the next test runs at once.
        assert cli(cfg_path, "link", "status").stdout.startswith("line: up")
        test = cli(cfg_path, "link", "test", "--yes")
        assert test.returncode == 0 and "grade F" in test.stdout, (test.stdout, test.stderr)
        wait_for(lambda n=n: [r for r in store.query(f"{in_a_row} == {n}")["data"]["result"]],
                 30, f"{n} low test(s) in a row at the central store")
        if n == 2:  # two low tests are not yet an alert
            assert not _alerts(store, "LineUnderHalfContract")
    firing = wait_for(lambda: _alerts(store, "LineUnderHalfContract"), 30,
                      "LineUnderHalfContract to fire")
    assert {(a["labels"]["site"], a["labels"]["direction"], a["state"]) for a in firing} == {
        (SITE, "download", "firing"), (SITE, "upload", "firing")}
    assert cli(cfg_path, "link", "emulate", "break", "access").returncode == 0
    seconds = f'sum(telecentre_link_outage_seconds_total{{site="{SITE}",cause="access"}})'
    wait_for(lambda: (r := store.query(seconds)["data"]["result"]) and float(r[0]["value"][1]) >= 2,
             30, "the access outage's seconds at the central store")
    assert cli(cfg_path, "link", "emulate", "repair", "all").returncode == 0
    wait_for(lambda: store.query(f'telecentre_link_up{{site="{SITE}",layer="dns"}} == 1')[
        "data"]["result"], 30, "the line back up at the central store")


def test_every_dashboard_and_alert_query_runs_and_door_panel_and_line_ones_return_data(stack):
    cfg_path, ports, store, agent = stack
    scenario_start = time.time()
    activity(cfg_path, ports["panel"])
    wifi_scenario(cfg_path, ports["portal"])
    line_scenario(cfg_path, store)

    def arrived() -> bool:
        counts = [store.query(f'count_over_time({m}{{site="{SITE}"}}[1m])')["data"]["result"]
                  for m in ("telecentre_door_decisions_total", "telecentre_web_requests_total",
                            "telecentre_web_login_attempts_total")]
        return all(c and float(c[0]["value"][1]) >= 4 for c in counts)

    wait_for(arrived, 30, "the door's and the panel's counters at the central store")
    spent = f'telecentre_wifi_quotas_exhausted{{site="{SITE}",class="guest"}} >= 1'
    wait_for(lambda: store.query(spent)["data"]["result"], 30,
             "the spent guest quota at the central store")

    queries = dashboard_queries()
    assert len(queries) >= 40
    rules = wait_for(lambda: _evaluated_rules(store), 15, "the alert rules to be evaluated")
    assert {r["name"] for r in rules} == ALERTS
    for rule in rules:
        assert rule["health"] == "ok", (rule["name"], rule.get("lastError"))
        queries.append((f"alert {rule['name']}", rule["query"]))

    empty, line_queries, wifi_queries = [], 0, 0
    for where, expr in queries:
        answer = store.query(grafana_substitute(expr))
        assert answer["status"] == "success", (where, expr, answer.get("error"))
        names = set(METRIC.findall(expr))
        about_site_services = names and all(
            n.startswith(("telecentre_door_", "telecentre_web_")) for n in names)
        about_line = names and all(n.startswith("telecentre_link_") for n in names)
        about_wifi = names and all(
            n.startswith(("telecentre_wifi_", "telecentre_portal_")) for n in names)
        line_queries += bool(about_line)
        wifi_queries += bool(about_wifi)
        if where.startswith("alert"):
            # Alert expressions are filters, empty while nothing is wrong: the line's
            # must have returned data at some point of the bad day above.
            if about_line:
                ranged = store.query_range(expr, scenario_start, time.time())
                assert ranged["status"] == "success", (where, ranged.get("error"))
                if not ranged["data"]["result"]:
                    empty.append((where, expr))
            continue
        if (about_site_services or about_line or about_wifi) and not answer["data"]["result"]:
            empty.append((where, expr))
    assert not empty, f"door/panel/line/Wi-Fi queries with no data: {empty}"
    assert line_queries >= 30
    assert wifi_queries >= 5
    # The Wi-Fi figures by class, as the fleet sees them (no device, address or name).
    def by_class(expr: str) -> dict[str, float]:
        return {r["metric"]["class"]: float(r["value"][1])
                for r in store.query(expr)["data"]["result"]}

    devices = by_class(f'sum by (class) (telecentre_wifi_devices{{site="{SITE}"}})')
    assert devices["guest"] >= 3 and devices["voucher"] >= 1 and devices["member"] >= 1
    moved = by_class(f'sum by (class) (increase(telecentre_wifi_bytes_total{{site="{SITE}"}}'
                     "[10m]))")
    assert all(moved[c] > 0 for c in ("guest", "voucher", "member")), moved
    logins = store.query(f'sum by (class, result) (telecentre_portal_logins_total'
                         f'{{site="{SITE}"}})')["data"]["result"]
    assert {(r["metric"]["class"], r["metric"]["result"]) for r in logins} >= {
        ("guest", "ok"), ("member", "failure")}
    labels_seen = {k for r in store.query(f'{{site="{SITE}",__name__=~"telecentre_wifi_.*"}}')[
        "data"]["result"] for k in r["metric"]}
    assert labels_seen <= {"__name__", "site", "job", "instance", "class", "direction", "result",
                           "reason"}, labels_seen

    # The site variable's query (label_values(up, site)) and the site label itself.
    labels = json.loads(http_get(f"{store.url}/api/v1/label/site/values"))
    assert SITE in labels["data"]
    up = store.query(f'up{{site="{SITE}"}}')["data"]["result"]
    assert {r["metric"]["job"]: r["value"][1] for r in up} == {
        "door": "1", "web": "1", "link": "1", "gateway": "1", "agent": "1"}
    # Nothing personal and no _created series crossed the line.
    names = json.loads(http_get(f"{store.url}/api/v1/label/__name__/values"))["data"]
    assert not [n for n in names if n.endswith("_created")]
    # The central store runs with the out-of-order window that takes late samples.
    config = json.loads(http_get(f"{store.url}/api/v1/status/config"))["data"]["yaml"]
    assert "out_of_order_time_window: 4d" in config
    # The door's refused badge is counted, under the site's name.
    denied = store.query(f'sum(telecentre_door_decisions_total{{site="{SITE}",result="denied"}})')
    assert float(denied["data"]["result"][0]["value"][1]) >= 1


def _alerts(store: promstack.Prometheus, name: str) -> list[dict]:
    """The central store's active (pending or firing) alerts of that name."""
    body = http_get(f"{store.url}/api/v1/alerts")
    return [a for a in json.loads(body)["data"]["alerts"] if a["labels"]["alertname"] == name]


def _evaluated_rules(store: promstack.Prometheus) -> list[dict] | None:
    body = http_get(f"{store.url}/api/v1/rules")
    if not body:
        return None
    rules = [r for g in json.loads(body)["data"]["groups"] for r in g["rules"]]
    if rules and all(r.get("lastEvaluation", "").startswith("0001") is False for r in rules):
        return rules
    return None


def test_samples_taken_while_the_central_store_is_down_arrive_when_it_returns(stack):
    _cfg_path, _ports, store, agent = stack
    door = f'up{{site="{SITE}",job="door"}}'
    wait_for(lambda: store.query(door)["data"]["result"], 20, "the first samples")

    store.stop()
    down_at = time.time()
    time.sleep(10)
    pending = agent.metric("prometheus_remote_storage_samples_pending")
    back_at = time.time()
    store.start()

    # Count the door's scrapes (one a second) strictly inside the outage.
    window = int(back_at - down_at - 2)
    expr = f"count_over_time({door}[{window}s])"

    def gap_samples() -> float:
        result = store.query(expr, at=back_at - 1)["data"]["result"]
        return float(result[0]["value"][1]) if result else 0.0

    count = wait_for(lambda: gap_samples() >= window * 0.8 and gap_samples(), 25,
                     "the samples taken during the outage")
    assert count <= window + 1
    assert pending > 0, "the agent had nothing waiting: was the central store really down?"
    assert agent.metric("prometheus_remote_storage_samples_retried_total") > 0
    # WAL cost per sample, for the 72 h sizing in dashboards/README.md.
    wal = sum(f.stat().st_size for f in (Path(agent.log).parent / "agent-wal").rglob("*")
              if f.is_file())
    appended = agent.metric("prometheus_agent_samples_appended_total")
    print(f"agent WAL: {wal} B for {appended:.0f} samples ({wal / appended:.1f} B/sample)")
