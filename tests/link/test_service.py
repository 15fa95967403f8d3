"""The link service with scripted probes and a scripted backend: the real SQLite file,
the real UNIX socket, the real metrics registry."""

from __future__ import annotations

import random
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from appliance import config as config_mod
from appliance import db, ipc
from appliance.cli import main as cli_main
from appliance.link import store
from appliance.link.iperf import BackendError
from appliance.link.probes import Sample
from appliance.link.service import LinkService
from appliance.link.throughput import Measurement
from appliance.runtime import init_state, serve_metrics
from tests.conftest import require_tool, write_site_config

T0 = 1_780_000_000.0  # 2026-05-28, a Thursday


class FakeProber:
    """Scripted rounds: each round answers per the current `up` map."""

    def __init__(self) -> None:
        self.gateway = "192.168.1.1"
        self.isp_hop = "10.64.0.1"
        self.up = {"gateway": True, "isp_hop": True, "anchor": True, "dns": True}
        self.bytes = 0
        self.closed = False

    def refresh_gateway(self):
        return self.gateway

    def find_isp_hop(self):
        return self.isp_hop

    def round(self) -> list[Sample]:
        self.bytes += 300
        out = []
        for role, target in (("gateway", self.gateway), ("isp_hop", self.isp_hop),
                             ("anchor", "198.51.100.1"), ("anchor", "203.0.113.1"),
                             ("dns", "198.51.100.53")):
            ok = self.up[role] if role != "anchor" or target != "203.0.113.1" \
                else self.up.get("anchor2", self.up["anchor"])
            out.append(Sample(role, target, 1 if ok else 2, int(ok), 0.010 if ok else None))
        return out

    def close(self):
        self.closed = True


class FakeBackend:
    name = "iperf3"
    label = "iperf3://test:5201"

    def __init__(self, down=27e6, up=0.9e6, used=30_000_000, fail=False):
        self.down, self.up, self.used, self.fail = down, up, used, fail
        self.runs = 0

    def measure(self, progress=None):
        self.runs += 1
        if progress:
            progress("download", 1.0)
        time.sleep(0.05)  # real time for the RTT sampler thread to sample under "load"
        if self.fail:
            raise BackendError("iperf3: unable to connect to server")
        return Measurement("iperf3", self.label, self.down, self.up, self.used)


class FakePinger:
    """Idle RTT 10 ms, then 10 ms + `added` once the backend has started."""

    bytes = 0

    def __init__(self, service_ref):
        self.service_ref = service_ref
        self.due = {}

    def send(self, target):
        service = self.service_ref[0]
        state = service.test_state or {}
        rtt = 0.010 + (0.085 if state.get("phase") in ("download", "upload") else 0.0)
        self.due[len(self.due) + 1] = (service.clock() + rtt, rtt)
        return len(self.due)

    def replies(self, wait):
        service = self.service_ref[0]
        service.sleep(wait)
        got = [(k, rtt) for k, (at, rtt) in self.due.items() if at <= service.clock() + 1e-9]
        for k, _rtt in got:
            self.due[k] = (float("inf"), 0.0)
        return got

    def close(self):
        pass


class World:
    def __init__(self, start: float = T0) -> None:
        self.now = start
        self.mono = 1000.0
        self.wan_rate = 0.0
        self.wan_total = 0

    def wall(self) -> float:
        return self.now

    def clock(self) -> float:
        return self.mono

    def sleep(self, seconds: float) -> None:
        self.mono += seconds
        self.now += seconds
        self.wan_total += int(self.wan_rate * seconds)
        self.net_dev.write_text(
            "Inter-| head\n face | head\n"
            f"  eth0: {self.wan_total} 0 0 0 0 0 0 0 {self.wan_total // 10} 0 0 0 0 0 0 0\n"
        )


@pytest.fixture
def make_service(tmp_path: Path):
    made: list[LinkService] = []

    def make(backend=None, **link) -> LinkService:
        path = write_site_config(tmp_path)
        text = path.read_text().replace("link_port = 9103", "link_port = 0")
        for key, value in link.items():
            rendered = f'"{value}"' if isinstance(value, str) else str(value).lower()
            lines = text.splitlines()
            idx = next(i for i, line in enumerate(lines) if line.startswith(f"{key} = "))
            lines[idx] = f"{key} = {rendered}"
            text = "\n".join(lines) + "\n"
        path.write_text(text)
        cfg = config_mod.load(path)
        init_state(cfg)
        world = World(T0 + 86400 * len(made))  # a restart comes later than the last run
        world.net_dev = tmp_path / "net_dev"
        world.sleep(0)
        ref: list[LinkService] = []
        service = LinkService(
            cfg, prober=FakeProber(), backend=backend or FakeBackend(), wall=world.wall,
            clock=world.clock, sleep=world.sleep, rng=random.Random(1),
            net_dev=world.net_dev, load_pinger=lambda: FakePinger(ref),
        )
        ref.append(service)
        service.world = world  # type: ignore[attr-defined]
        made.append(service)
        return service

    yield make
    for service in made:
        service.stop()


def rounds(service: LinkService, n: int, step: float = 10.0, **up) -> None:
    service.prober.up.update(up)
    for _ in range(n):
        service.on_round(service.world.now, service.prober.round())
        service.world.now += step


def sample_value(service, name, **labels):
    return service.registry.get_sample_value(name, labels or None) or 0.0


def test_access_outage_recorded_with_start_end_and_seconds(make_service):
    service = make_service()
    rounds(service, 3)
    start = service.world.now
    rounds(service, 6, isp_hop=False, anchor=False, dns=False)
    assert service.tracker.cause.value == "access"
    row = service.conn.execute("SELECT cause, start, end FROM link_outages").fetchone()
    assert (row["cause"], row["start"], row["end"]) == ("access", start, None)
    assert sample_value(service, "telecentre_link_up", layer="lan") == 1
    assert sample_value(service, "telecentre_link_up", layer="access") == 0
    assert sample_value(service, "telecentre_link_up", layer="dns") == 0
    end = service.world.now
    rounds(service, 3, isp_hop=True, anchor=True, dns=True)
    row = service.conn.execute("SELECT cause, start, end FROM link_outages").fetchone()
    assert (row["cause"], row["start"], row["end"]) == ("access", start, end)
    assert sample_value(service, "telecentre_link_outage_seconds_total", cause="access") == 60
    assert sample_value(service, "telecentre_link_outages_total", cause="access") == 1
    assert sample_value(service, "telecentre_link_up", layer="dns") == 1
    probes = service.conn.execute("SELECT COUNT(*) FROM link_probes").fetchone()[0]
    assert probes == 12 * 5


def test_upstream_outage_when_one_anchor_fails(make_service):
    service = make_service()
    rounds(service, 4, anchor2=False)
    assert service.tracker.cause.value == "upstream"
    # Loss: the dead anchor got 2 echoes per round, the live one 1 (2/3 lost).
    assert sample_value(service, "telecentre_link_loss_ratio", role="anchor") == \
        pytest.approx(8 / 12)


def test_outage_open_at_stop_is_closed_at_the_last_round(make_service):
    service = make_service()
    rounds(service, 5, gateway=False)
    last = service.last_round_at
    service.stop()
    conn = db.connect(service.config.db_path)
    assert tuple(conn.execute("SELECT cause, end FROM link_outages").fetchone()) == ("lan", last)
    conn.close()


def test_scheduled_test_ok_stored_with_ratio_grade_and_bytes(make_service):
    service = make_service()
    rounds(service, 1)
    result = service.run_test("schedule")
    assert result["result"] == "ok"
    row = service.conn.execute("SELECT * FROM link_tests").fetchone()
    assert row["trigger"] == "schedule" and row["backend"] == "iperf3"
    assert row["download_ratio"] == pytest.approx(0.9)
    assert row["upload_ratio"] == pytest.approx(0.9)
    assert row["added_delay_s"] == pytest.approx(0.085)
    assert row["grade"] == "C"
    assert row["bytes"] == 30_000_000
    assert sample_value(service, "telecentre_link_tests_total", result="ok") == 1
    assert sample_value(service, "telecentre_link_test_bytes_total") == 30_000_000
    assert sample_value(service, "telecentre_link_download_bytes_per_second") == 27e6 / 8
    assert sample_value(service, "telecentre_link_download_contract_ratio") == pytest.approx(0.9)
    assert sample_value(service, "telecentre_link_added_delay_seconds") == pytest.approx(0.085)
    assert sample_value(service, "telecentre_link_test_budget_used_bytes") == 30_000_000


def test_busy_line_skips_a_scheduled_test(make_service):
    backend = FakeBackend()
    service = make_service(backend)
    service.world.wan_rate = 60_000
    result = service.run_test("schedule")
    assert result["result"] == "skipped_busy" and backend.runs == 0
    assert service.conn.execute("SELECT result FROM link_tests").fetchone()[0] == "skipped_busy"
    assert sample_value(service, "telecentre_link_tests_total", result="skipped_busy") == 1


def test_admin_test_runs_on_a_busy_line(make_service):
    backend = FakeBackend()
    service = make_service(backend)
    service.world.wan_rate = 60_000
    assert service.run_test("admin")["result"] == "ok" and backend.runs == 1


def test_budget_stops_scheduled_tests(make_service):
    backend = FakeBackend(used=900_000_000)
    service = make_service(backend, monthly_budget_gb=2)
    assert service.run_test("schedule")["result"] == "ok"
    assert service.run_test("schedule")["result"] == "ok"
    # 1.8 GB used; the next test would need 0.9 GB more.
    assert service.run_test("schedule")["result"] == "skipped_budget"
    assert backend.runs == 2
    assert service.run_test("admin")["result"] == "ok"
    assert sample_value(service, "telecentre_link_tests_total", result="skipped_budget") == 1


def test_failed_backend_and_line_down(make_service):
    service = make_service(FakeBackend(fail=True))
    result = service.run_test("admin")
    assert result["result"] == "failed" and "unable to connect" in result["detail"]
    rounds(service, 3, gateway=False)
    result = service.run_test("admin")
    assert result == {**result, "result": "failed", "detail": "line down (lan)"}
    assert sample_value(service, "telecentre_link_tests_total", result="failed") == 2


def test_schedule_starts_one_test_per_window(make_service):
    service = make_service()
    first = service.next_test_at
    assert first > service.world.now
    service.world.now = first + 1
    service.step()
    service.test_thread.join(10)
    assert service.next_test_at > first + 3600
    assert service.conn.execute("SELECT COUNT(*) FROM link_tests").fetchone()[0] == 1


def test_socket_status_and_test_and_cli(make_service, capsys):
    service = make_service()
    rounds(service, 4, dns=False)
    service.server = ipc.CommandServer(service.config.link_socket, service.handlers()).start()
    status = ipc.call(service.config.link_socket, "status")
    assert status["outage"]["cause"] == "dns"
    assert status["layers"] == {"lan": True, "access": True, "upstream": True, "dns": False}
    assert cli_main(["--config", str(service.config.path), "link", "status"]) == 0
    out = capsys.readouterr().out
    assert "DOWN" in out and "names do not resolve" in out
    rounds(service, 3, dns=True)
    service.world.wan_rate = 0
    assert cli_main(["--config", str(service.config.path), "link", "test", "--yes"]) == 0
    out = capsys.readouterr().out
    assert "download 27.0 Mbit/s (90% of contract)" in out and "grade C" in out


def test_test_command_warns_on_spent_budget(make_service):
    service = make_service(FakeBackend(used=3_000_000_000))
    service.run_test("admin")
    reply = service.cmd_test({})
    assert reply == {"ok": True, "started": False, "warnings": ["budget"]}
    assert service.cmd_test({"force": True})["started"] is True
    service.test_thread.join(10)


def test_hourly_aggregates_and_retention(make_service):
    service = make_service()
    rounds(service, 720)  # two hours at 10 s
    assert store.aggregate_hours(service.conn, service.world.now) >= 5
    row = service.conn.execute(
        "SELECT sent, received, rtt_avg_s FROM link_hourly WHERE role = 'gateway'"
        " ORDER BY hour LIMIT 1").fetchone()
    assert row["received"] == row["sent"] > 0 and row["rtt_avg_s"] == pytest.approx(0.010)
    assert store.aggregate_hours(service.conn, service.world.now) == 0  # idempotent
    raw, _old = store.purge(service.conn, service.world.now + 31 * 86400)
    assert raw == 720 * 5
    assert service.conn.execute("SELECT COUNT(*) FROM link_hourly").fetchone()[0] > 0
    _raw, old = store.purge(service.conn, service.world.now + 731 * 86400)
    assert old > 0 and service.conn.execute("SELECT COUNT(*) FROM link_hourly").fetchone()[0] \
        == 0


def test_metrics_pass_promtool_and_carry_no_addresses(make_service):
    promtool = require_tool("promtool")
    service = make_service()
    rounds(service, 4, dns=False)
    service.run_test("admin")
    server = serve_metrics(service.registry, "127.0.0.1", 0)
    try:
        body = urllib.request.urlopen(
            f"http://127.0.0.1:{server.server_port}/metrics", timeout=5).read().decode()
    finally:
        server.shutdown()
    for address in ("192.168.1.1", "10.64.0.1", "198.51.100", "203.0.113"):
        assert address not in body
    assert 'telecentre_link_up{layer="dns"} 0.0' in body
    assert 'telecentre_link_tests_total{result="skipped_budget"} 0.0' in body
    result = subprocess.run([promtool, "check", "metrics"], input=body, text=True,
                            capture_output=True, timeout=30)
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), (
        result.stdout + result.stderr)


def scrape(service: LinkService) -> str:
    server = serve_metrics(service.registry, "127.0.0.1", 0)
    try:
        return urllib.request.urlopen(
            f"http://127.0.0.1:{server.server_port}/metrics", timeout=5).read().decode()
    finally:
        server.shutdown()


def metric_lines(body: str, *names: str) -> dict[str, float]:
    """`name{labels}` → value for the lines of /metrics whose name is one of `names`."""
    out = {}
    for line in body.splitlines():
        if line.startswith(names) and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


RUN = "telecentre_link_tests_below_half_contract_in_a_row"


def test_tests_below_half_contract_in_a_row_counts_completed_tests_only(make_service):
    backend = FakeBackend()
    service = make_service(backend)

    def run(down_mbps: float, up_mbps: float, **kw) -> None:
        backend.down, backend.up = down_mbps * 1e6, up_mbps * 1e6
        backend.fail = kw.get("fail", False)
        service.world.wan_rate = kw.get("wan_rate", 0)
        service.run_test(kw.get("trigger", "admin"))
        service.world.now += 4 * 3600

    def runs() -> tuple[float, float]:
        return (sample_value(service, RUN, direction="download"),
                sample_value(service, RUN, direction="upload"))

    run(27, 0.9)
    assert runs() == (0, 0)
    run(12, 0.9)
    run(14.9, 0.3)
    assert runs() == (2, 1)
    # Skipped (busy) and failed tests measured nothing: they neither count nor reset.
    run(5, 0.1, trigger="schedule", wan_rate=60_000)
    run(5, 0.1, fail=True)
    assert runs() == (2, 1)
    run(3, 0.49)
    assert runs() == (3, 2)
    run(15, 0.2)  # exactly half the contract is not under half
    assert runs() == (0, 3)
    results = [r[0] for r in service.conn.execute("SELECT result FROM link_tests ORDER BY at")]
    assert results == ["ok", "ok", "ok", "skipped_busy", "failed", "ok", "ok"]
    # The database gives the same runs (what a restart restores).
    assert (store.below_half_in_a_row(service.conn, "download"),
            store.below_half_in_a_row(service.conn, "upload")) == (0, 3)


def test_a_restart_restores_the_last_test_and_the_runs_and_restarts_the_counters(make_service):
    backend = FakeBackend(down=12e6, up=0.3e6, used=9_000_000)
    first = make_service(backend)
    rounds(first, 3)
    for _ in range(3):
        assert first.run_test("admin")["result"] == "ok"
        first.world.now += 3600
    last_at = first.last_test["at"]
    first.world.wan_rate = 60_000
    assert first.run_test("schedule")["result"] == "skipped_busy"  # the latest row
    before = metric_lines(scrape(first), "telecentre_link_")
    first.stop()

    second = make_service(FakeBackend())
    body = scrape(second)
    after = metric_lines(body, "telecentre_link_")
    restored = {
        "telecentre_link_download_bytes_per_second": 12e6 / 8,
        "telecentre_link_upload_bytes_per_second": 0.3e6 / 8,
        "telecentre_link_download_contract_ratio": pytest.approx(0.4),
        "telecentre_link_upload_contract_ratio": pytest.approx(0.3),
        "telecentre_link_added_delay_seconds": pytest.approx(0.085),
        "telecentre_link_last_test_timestamp_seconds": last_at,
        f'{RUN}{{direction="download"}}': 3,
        f'{RUN}{{direction="upload"}}': 3,
        # The line was up when the first run stopped: up until this run says otherwise.
        'telecentre_link_up{layer="lan"}': 1,
        'telecentre_link_up{layer="dns"}': 1,
    }
    for name, value in restored.items():
        assert before[name] == value, name
        assert after[name] == value, name
    # Counters start again from 0: a reset, which Prometheus' rate() and increase() see.
    assert before['telecentre_link_tests_total{result="ok"}'] == 3
    assert after['telecentre_link_tests_total{result="ok"}'] == 0
    assert after["telecentre_link_test_bytes_total"] == 0
    # The month's budget gauge comes from the database anyway.
    assert after["telecentre_link_test_budget_used_bytes"] == 27_000_000
    # `link status` and the panel show the last test (here the skipped one).
    assert second.status()["last_test"]["result"] == "skipped_busy"
    assert second.status()["last_test"]["at"] > last_at
    promtool = require_tool("promtool")
    check = subprocess.run([promtool, "check", "metrics"], input=body, text=True,
                           capture_output=True, timeout=30)
    assert check.returncode == 0 and not (check.stdout + check.stderr).strip()


def test_a_restart_keeps_the_line_state_until_new_rounds_decide(make_service):
    first = make_service()
    rounds(first, 2)
    rounds(first, 5, isp_hop=False, anchor=False, dns=False)  # access down at the stop
    first.stop()

    def layers(service) -> dict[str, float | None]:
        return {layer: service.registry.get_sample_value("telecentre_link_up",
                                                         {"layer": layer})
                for layer in ("lan", "access", "upstream", "dns")}

    second = make_service()
    down = {"lan": 1, "access": 0, "upstream": 0, "dns": 0}
    assert layers(second) == down  # before any round: as the first run left it
    rounds(second, 2)  # the line is back, but two good rounds are no verdict (up_after 3)
    assert layers(second) == down
    rounds(second, 1)
    assert layers(second) == dict.fromkeys(down, 1)
    # The old outage was closed at the first run's last round; nothing new opened.
    rows = second.conn.execute("SELECT cause, end FROM link_outages").fetchall()
    assert [(r["cause"], r["end"] is not None) for r in rows] == [("access", True)]
    second.stop()

    # Still down after the restart: the held state hands over to the new outage.
    third = make_service()
    third.prober.up.update(isp_hop=False, anchor=False, dns=False)
    assert layers(third)["access"] == 1  # the second run ended with the line up
    rounds(third, 3, isp_hop=False, anchor=False, dns=False)
    assert layers(third) == down and third.tracker.cause.value == "access"


def test_no_layer_gauge_before_the_first_round_ever(make_service):
    service = make_service()
    assert "telecentre_link_up{" not in scrape(service)
    rounds(service, 1)
    assert 'telecentre_link_up{layer="lan"} 1.0' in scrape(service)


def test_after_a_restart_status_cli_and_metrics_give_the_same_state(make_service, capsys):
    first = make_service()
    rounds(first, 2)
    rounds(first, 5, isp_hop=False, anchor=False, dns=False)  # access down at the stop
    since, last_at = first.tracker.current.start, first.last_round_at
    first.stop()

    def gauges(service) -> dict[str, bool]:
        return {layer: service.registry.get_sample_value(
            "telecentre_link_up", {"layer": layer}) == 1
            for layer in ("lan", "access", "upstream", "dns")}

    second = make_service()
    second.server = ipc.CommandServer(second.config.link_socket, second.handlers()).start()
    path = str(second.config.path)
    status = ipc.call(second.config.link_socket, "status")
    assert status["as_of"] == "previous_run" and status["previous_run_at"] == last_at
    assert status["outage"] == {"cause": "access", "since": since}
    assert status["layers"] == {"lan": True, "access": False, "upstream": False, "dns": False}
    assert gauges(second) == status["layers"]
    assert cli_main(["--config", path, "link", "status"]) == 0
    out = capsys.readouterr().out
    assert "line: DOWN since" in out and "nothing beyond it" in out
    assert "as of the previous run of the line monitor" in out and "being re-checked" in out
    # A test is refused on that state, as it would be on the probes' own.
    assert second.run_test("admin")["detail"] == "line down (access)"
    rounds(second, 2)  # the line is back: no verdict yet, the same answer everywhere
    status = second.status()
    assert status["as_of"] == "previous_run" and gauges(second) == status["layers"]
    rounds(second, 1)
    status = second.status()
    assert status["as_of"] == "probes" and status["previous_run_at"] is None
    assert status["outage"] is None and all(status["layers"].values())
    assert gauges(second) == status["layers"]
    assert cli_main(["--config", path, "link", "status"]) == 0
    out = capsys.readouterr().out
    assert "line: up" in out and "previous run" not in out
    second.stop()

    # Up at the stop: "up", as of the previous run, until this run's probes decide.
    third = make_service()
    status = third.status()
    assert (status["as_of"], status["outage"]) == ("previous_run", None)
    assert all(status["layers"].values()) and gauges(third) == status["layers"]
    rounds(third, 3, isp_hop=False, anchor=False, dns=False)  # down again: decided
    status = third.status()
    assert status["as_of"] == "probes" and status["outage"]["cause"] == "access"
    assert gauges(third) == status["layers"]
