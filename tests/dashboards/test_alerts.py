"""Alert rules and the agent/central configurations, checked by promtool."""

from __future__ import annotations

import json
import re
import subprocess

from appliance import firstboot
from tests.conftest import require_tool
from tests.dashboards import promstack
from tests.dashboards.promstack import ALERTS, DASHBOARDS

# A site's first-boot file, as much as parse() needs (tests/test_firstboot.py has a full one).
FIRST_BOOT = """
[site]
name = "Télécentre de test"
[admin]
username = "mairie"
password = "correct horse battery"
[metrics]
remote_write_url = "https://metrics.example.org/api/v1/write"
bearer_token = "t"
"""


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([require_tool("promtool"), *args], capture_output=True, text=True,
                          timeout=60, cwd=DASHBOARDS)


def test_rules_pass_promtool_check_rules():
    result = promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 10 rules found" in result.stdout


def test_rules_pass_their_unit_tests():
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_asked_for_is_defined_and_unit_tested():
    rules = set(re.findall(r"^\s*- alert: (\w+)", (DASHBOARDS / "alerts.yml").read_text(),
                           re.M))
    assert rules == ALERTS
    tested = set(re.findall(r"alertname: (\w+)", (DASHBOARDS / "alerts_test.yml").read_text()))
    assert tested == ALERTS


def test_a_broken_rule_makes_the_unit_tests_fail(tmp_path):
    """The unit tests can fail: a reader alert without its 2 minutes of grace."""
    rules = (DASHBOARDS / "alerts.yml").read_text().replace("for: 2m", "for: 1m")
    (tmp_path / "alerts.yml").write_text(rules)
    (tmp_path / "alerts_test.yml").write_text((DASHBOARDS / "alerts_test.yml").read_text())
    result = subprocess.run([require_tool("promtool"), "test", "rules", "alerts_test.yml"],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode != 0 and "DoorReaderDown" in result.stdout + result.stderr


def test_site_agent_configuration_passes_promtool(tmp_path):
    """Both as the tests run it and as first boot writes it for a site."""
    agent = promstack.agent(tmp_path, {"door": 9101, "web": 9102, "link": 9103,
                                       "gateway": 9104}, 9090)
    cfg = next(a.split("=", 1)[1] for a in agent.args if a.startswith("--config.file="))
    result = promtool("check", "config", "--agent", cfg)
    assert result.returncode == 0, result.stdout + result.stderr
    shipped = tmp_path / "metrics-agent.yml"
    shipped.write_text(firstboot.agent_config(firstboot.parse(FIRST_BOOT), ""))
    result = promtool("check", "config", "--agent", "--syntax-only", str(shipped))
    assert result.returncode == 0, result.stdout + result.stderr


def test_central_configuration_passes_promtool(tmp_path):
    store = promstack.central(tmp_path)
    cfg = next(a.split("=", 1)[1] for a in store.args if a.startswith("--config.file="))
    result = promtool("check", "config", cfg)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 10 rules found" in result.stdout


def test_agent_keeps_72_hours_and_more_on_persistent_storage():
    """The unit that runs the site agent, and the configuration first boot writes for it."""
    args = promstack.unit_args(promstack.AGENT_UNIT)
    flags = dict(a.split("=", 1) for a in args if "=" in a)
    assert "agent" in flags["--enable-feature"].split(",")
    hours = int(flags["--storage.agent.retention.max-time"].removesuffix("h"))
    assert hours >= 72 + 2  # the outage, plus one 2 h WAL truncation period
    assert "--storage.agent.wal-compression" in args
    assert flags["--storage.agent.path"].startswith("/var/lib/")
    assert "StateDirectory=telecentre-agent" in promstack.AGENT_UNIT.read_text()
    assert flags["--web.listen-address"] == firstboot.AGENT_LISTEN  # it scrapes itself there
    doc = json.loads(firstboot.agent_config(firstboot.parse(FIRST_BOOT), ""))
    jobs = {j["job_name"]: j for j in doc["scrape_configs"]}
    assert {job: j["static_configs"][0]["targets"] for job, j in jobs.items()} == {
        "door": ["127.0.0.1:9101"], "web": ["127.0.0.1:9102"], "link": ["127.0.0.1:9103"],
        "gateway": ["127.0.0.1:9104"], "agent": [firstboot.AGENT_LISTEN]}
    assert doc["global"]["external_labels"] == {"site": "Télécentre de test"}
    assert doc["remote_write"][0]["queue_config"]["max_shards"] == 2
