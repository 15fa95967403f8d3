"""Alert rules and the agent/central configurations, checked by promtool."""

from __future__ import annotations

import re
import subprocess

from tests.conftest import require_tool
from tests.dashboards import promstack
from tests.dashboards.promstack import ALERTS, DASHBOARDS


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
    agent = promstack.agent(tmp_path, {"door": 9101, "web": 9102, "link": 9103,
                                       "gateway": 9104}, 9090)
    cfg = next(a.split("=", 1)[1] for a in agent.args if a.startswith("--config.file="))
    result = promtool("check", "config", "--agent", cfg)
    assert result.returncode == 0, result.stdout + result.stderr
    shipped = promtool("check", "config", "--agent", "--syntax-only",
                       "site/prometheus-agent.yml")
    assert shipped.returncode == 0, shipped.stdout + shipped.stderr


def test_central_configuration_passes_promtool(tmp_path):
    store = promstack.central(tmp_path)
    cfg = next(a.split("=", 1)[1] for a in store.args if a.startswith("--config.file="))
    result = promtool("check", "config", cfg)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 10 rules found" in result.stdout


def test_agent_keeps_72_hours_and_more_on_persistent_storage():
    env, args = promstack.default_args(DASHBOARDS / "site" / "default-prometheus")
    flags = dict(a.split("=", 1) for a in args if "=" in a)
    assert "agent" in flags["--enable-feature"].split(",")
    assert "expand-external-labels" in flags["--enable-feature"].split(",")
    hours = int(flags["--storage.agent.retention.max-time"].removesuffix("h"))
    assert hours >= 72 + 2  # the outage, plus one 2 h WAL truncation period
    assert flags["--storage.agent.path"].startswith("/var/lib/")
    assert flags["--web.listen-address"].startswith("127.0.0.1:")
    assert "TELECENTRE_SITE" in env
    text = (DASHBOARDS / "site" / "prometheus-agent.yml").read_text()
    assert "site: ${TELECENTRE_SITE}" in text
    for port in (9101, 9102, 9103, 9104):
        assert f'"127.0.0.1:{port}"' in text
