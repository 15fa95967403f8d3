"""A link service restart, seen by a real Prometheus: `telecentre link run` (its own
process, emulated line) → site agent → central store, from the checked-in configurations.

After a restart the last test's gauges and the run of tests under half the contract come
back from the database (the dashboards never show the line at 0), and the counters start
again from 0, which increase() over the restart counts right.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from appliance import config as config_mod
from appliance import ipc
from appliance.runtime import init_state
from tests.conftest import require_tool, write_site_config
from tests.dashboards import promstack
from tests.dashboards.promstack import SITE, free_port, http_get, wait_for

pytestmark = pytest.mark.slow


def cli(cfg_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "appliance", "--config", str(cfg_path), *args],
                          capture_output=True, text=True, timeout=60)


class LinkProcess:
    def __init__(self, cfg_path: Path, port: int, log: Path) -> None:
        self.cfg_path, self.port, self.log = cfg_path, port, log
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "appliance", "--config", str(self.cfg_path), "link",
                 "run"], stdout=subprocess.DEVNULL, stderr=out, start_new_session=True)
        wait_for(lambda: http_get(f"http://127.0.0.1:{self.port}/metrics"), 20,
                 "the link metrics")

    def stop(self) -> None:
        promstack.stop_process(self.proc, 20)


def test_a_restart_keeps_the_gauges_and_increase_counts_the_tests_across_it(tmp_path):
    require_tool("prometheus")
    port = free_port()
    cfg_path = write_site_config(tmp_path)
    text = cfg_path.read_text("utf-8")
    for old, new in (("link_port = 9103", f"link_port = {port}"),
                     ('line = "real"', 'line = "emulated"'),
                     ("probe_interval = 10", "probe_interval = 1"),
                     ("probe_timeout = 1.0", "probe_timeout = 0.3"),
                     ("scheduled_tests = true", "scheduled_tests = false"),
                     ("test_seconds = 8", "test_seconds = 2")):
        text = promstack.replace_once(text, old, new)
    cfg_path.write_text(text, "utf-8")
    cfg = config_mod.load(cfg_path)
    init_state(cfg)
    link = LinkProcess(cfg_path, port, tmp_path / "link.log")
    store = promstack.central(tmp_path)
    # Only the link service runs; the other jobs' ports answer nothing.
    agent = promstack.agent(tmp_path, {"door": free_port(), "web": free_port(), "link": port,
                                       "gateway": free_port()}, store.port)
    sel = f'site="{SITE}"'

    def value(expr: str) -> float | None:
        result = store.query(expr)["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    def degrade() -> None:
        done = cli(cfg_path, "link", "emulate", "set", "down_mbps=12.6", "up_mbps=0.42")
        assert done.returncode == 0, done.stderr

    def low_test() -> None:
        # The bloated line's probes time out under load, but a test makes no outage of
        # its own: the line is up before each test, with no waiting.
        assert ipc.call(cfg.link_socket, "status")["outage"] is None
        test = cli(cfg_path, "link", "test", "--yes")
        assert test.returncode == 0, (test.stdout, test.stderr)
        shares = [int(x) for x in re.findall(r"\((\d+)% of contract\)", test.stdout)]
        assert len(shares) == 2 and max(shares) < 50, test.stdout

    try:
        store.start()
        agent.start()
        link.start()
        degrade()
        started = time.time()
        low_test()
        low_test()
        ok = f'telecentre_link_tests_total{{{sel},result="ok"}}'
        wait_for(lambda: value(ok) == 2, 30, "two tests at the central store")
        first_test_seen = time.time()

        link.stop()
        time.sleep(3)  # a few missed scrapes, as during a real restart
        link.start()
        wait_for(lambda: value(f'up{{{sel},job="link"}}') == 1 and value(ok) == 0, 30,
                 "the restarted service's first scrapes")
        restarted = time.time()
        degrade()  # the emulated line starts healthy in every run
        low_test()
        run = f'telecentre_link_tests_below_half_contract_in_a_row{{{sel},direction="download"}}'
        wait_for(lambda: value(run) == 3 and value(ok) == 1, 30, "the third test")
        time.sleep(2)
        end = time.time()

        # The gauges never dropped back to 0 after the first test, restart included.
        for name in ("telecentre_link_download_contract_ratio",
                     "telecentre_link_download_bytes_per_second",
                     "telecentre_link_last_test_timestamp_seconds",
                     "telecentre_link_tests_below_half_contract_in_a_row"):
            ranged = store.query_range(f"min({name}{{{sel}}})", first_test_seen, end)
            values = [float(v) for _t, v in ranged["data"]["result"][0]["values"]]
            assert values and min(values) > 0, (name, values)
        ratio = value(f"telecentre_link_download_contract_ratio{{{sel}}}")
        assert 0.3 < ratio < 0.5, ratio
        ranged = store.query_range(run, restarted, end)
        assert [float(v) for _t, v in ranged["data"]["result"][0]["values"]][0] == 2
        # The counter went 2 → 0 (restart) → 1: one reset, and increase() over the whole
        # window counts the three tests (extrapolation adds a little at the window's end).
        window = f"{int(end - started) + 10}s"
        assert value(f"resets({ok}[{window}])") == 1
        total = value(f"increase({ok}[{window}])")
        assert 3 <= total < 3.3, total
        # The alert the restart must not break.
        alerts = wait_for(lambda: [a for a in _alerts(store)
                                   if a["labels"]["alertname"] == "LineUnderHalfContract"],
                          15, "LineUnderHalfContract")
        assert {a["labels"]["direction"] for a in alerts} == {"download", "upload"}
    finally:
        link.stop()
        agent.stop()
        store.stop()


def _alerts(store: promstack.Prometheus) -> list[dict]:
    import json

    body = http_get(f"{store.url}/api/v1/alerts")
    return json.loads(body)["data"]["alerts"] if body else []
