"""The link service: light probes in a loop, outages, throughput tests, commands, metrics.

One thread probes every `probe_interval` and turns rounds into outages; a throughput
test runs in its own thread, so probing never stops during a test. A round that overlaps
the test's load is not judged when it arrives, nor stored or counted as ordinary RTT and
loss (the test's own latency sampler measures the line under load): the first round
after the test decides whether its failures were the test's queue or an outage that
began during the test (`outage.OutageTracker.hold`). Everything is stored locally
first. "Test now" arrives over the UNIX socket and is never stored as a pending command:
after a restart nothing replays.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from appliance import db
from appliance.config import Config
from appliance.ipc import CommandServer
from appliance.link import emulated, schedule, store
from appliance.link import gate as gate_mod
from appliance.link.iperf import BackendError, Iperf3Backend
from appliance.link.outage import LAYERS, Layer, OutageTracker, ProbeRound, localize
from appliance.link.probes import EchoStream, Pinger, Prober, Sample, box_works, echo_stream
from appliance.link.throughput import (
    Measurement,
    added_delay,
    budget_allows,
    contract_ratio,
    grade,
    month_bounds,
)
from appliance.sdnotify import notify

log = logging.getLogger(__name__)

ROLES = ("gateway", "isp_hop", "anchor")
RESULTS = ("ok", "failed", "skipped_busy", "skipped_budget")
DIRECTIONS = ("download", "upload")
# Loss and jitter are over the last rounds (30 rounds: 5 minutes at the default 10 s).
WINDOW_ROUNDS = 30
TRACEROUTE_EVERY = 3600.0
HOUSEKEEPING_EVERY = 600.0
LOAD_SAMPLE_EVERY = 0.2
# An RTT sample under load is waited for this long, with others in flight; one still
# unanswered then counts as this delay (grade F), see throughput.added_delay.
LOAD_TIMEOUT = 3.0
IDLE_SAMPLES = 5


class Backend(Protocol):
    name: str

    @property
    def label(self) -> str: ...

    def measure(self, progress: Callable[[str, float], None] | None = None) -> Measurement: ...


class LinkMetrics:
    """The line's Prometheus metrics: base units (seconds, bytes), ratios 0-1, no person."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.up = Gauge(
            "telecentre_link_up",
            "1 while this layer of the line and every layer below it work.",
            ["layer"],
            registry=registry,
        )
        self.rtt = Histogram(
            "telecentre_link_rtt_seconds",
            "Round-trip time of light probes, by target role.",
            ["role"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0),
            registry=registry,
        )
        self.loss = Gauge(
            "telecentre_link_loss_ratio",
            f"Share of probes lost over the last {WINDOW_ROUNDS} rounds, by target role.",
            ["role"],
            registry=registry,
        )
        self.jitter = Gauge(
            "telecentre_link_jitter_seconds",
            "Mean difference between consecutive RTTs over the last rounds, by role.",
            ["role"],
            registry=registry,
        )
        self.dns = Histogram(
            "telecentre_link_dns_resolution_seconds",
            "Time for the configured resolver to answer.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=registry,
        )
        self.rounds = Counter(
            "telecentre_link_probe_rounds", "Rounds of light probes.", registry=registry
        )
        self.probe_bytes = Counter(
            "telecentre_link_probe_bytes",
            "IP bytes of light-probe traffic, both directions.",
            registry=registry,
        )
        self.download = Gauge(
            "telecentre_link_download_bytes_per_second",
            "Download rate of the last completed throughput test.",
            registry=registry,
        )
        self.upload = Gauge(
            "telecentre_link_upload_bytes_per_second",
            "Upload rate of the last completed throughput test.",
            registry=registry,
        )
        self.contracted_download = Gauge(
            "telecentre_link_contracted_download_bytes_per_second",
            "Download rate in the ISP contract.",
            registry=registry,
        )
        self.contracted_upload = Gauge(
            "telecentre_link_contracted_upload_bytes_per_second",
            "Upload rate in the ISP contract.",
            registry=registry,
        )
        self.download_ratio = Gauge(
            "telecentre_link_download_contract_ratio",
            "Last measured download over the contracted rate (1 = as sold).",
            registry=registry,
        )
        self.upload_ratio = Gauge(
            "telecentre_link_upload_contract_ratio",
            "Last measured upload over the contracted rate (1 = as sold).",
            registry=registry,
        )
        self.tests = Counter(
            "telecentre_link_tests",
            "Throughput tests by result (ok, failed, skipped_busy, skipped_budget).",
            ["result"],
            registry=registry,
        )
        self.test_bytes = Counter(
            "telecentre_link_test_bytes",
            "Bytes used by throughput tests.",
            registry=registry,
        )
        self.added_delay = Gauge(
            "telecentre_link_added_delay_seconds",
            "RTT added under load in the last test (bufferbloat).",
            registry=registry,
        )
        self.last_test = Gauge(
            "telecentre_link_last_test_timestamp_seconds",
            "When the last completed throughput test ran.",
            registry=registry,
        )
        self.below_half = Gauge(
            "telecentre_link_tests_below_half_contract_in_a_row",
            "Completed throughput tests in a row, up to the last one, under half the "
            "contracted rate, by direction (skipped and failed tests do not count or reset).",
            ["direction"],
            registry=registry,
        )
        self.budget = Gauge(
            "telecentre_link_test_budget_bytes",
            "Monthly data budget for scheduled throughput tests.",
            registry=registry,
        )
        self.budget_used = Gauge(
            "telecentre_link_test_budget_used_bytes",
            "Bytes used by throughput tests this calendar month.",
            registry=registry,
        )
        self.outage_seconds = Counter(
            "telecentre_link_outage_seconds",
            "Seconds of outage by cause (lan, access, upstream, dns).",
            ["cause"],
            registry=registry,
        )
        self.outages = Counter(
            "telecentre_link_outages",
            "Outages begun, by cause.",
            ["cause"],
            registry=registry,
        )
        # `up{layer}` is published by the service: last known state, then the probes'.
        for layer in LAYERS:
            self.outage_seconds.labels(layer.value)
            self.outages.labels(layer.value)
        for role in ROLES:
            self.rtt.labels(role)
            self.loss.labels(role)
            self.jitter.labels(role)
        for result in RESULTS:
            self.tests.labels(result)
        for direction in DIRECTIONS:
            self.below_half.labels(direction)


def build_backend(config: Config) -> Backend | None:
    """The configured throughput backend, or None while it is not set up."""
    link = config.link
    if link.test_backend == "iperf3":
        if not link.iperf3_server:
            return None
        return Iperf3Backend(link.iperf3_server, link.iperf3_port, link.test_seconds)
    from appliance.link.speedtest import SpeedtestBackend, upload_streams

    return SpeedtestBackend(
        seconds=link.test_seconds,
        server_id=link.speedtest_server or None,
        upload_threads=upload_streams(link.contracted_upload_mbps * 1e6, link.test_seconds),
    )


def to_round(at: float, samples: list[Sample]) -> ProbeRound:
    """The outage detector's view of one round of samples."""

    def answered(role: str) -> list[bool]:
        return [s.received > 0 for s in samples if s.role == role]

    hop = answered("isp_hop")
    dns = answered("dns")
    return ProbeRound(
        at=at,
        gateway=box_works(samples),
        isp_hop=hop[0] if hop else None,
        anchors=tuple(answered("anchor")),
        dns=dns[0] if dns else None,
    )


class LinkService:
    """Runs the line monitor; every collaborator with side effects is a parameter."""

    def __init__(
        self,
        config: Config,
        *,
        prober: Prober | None = None,
        backend: Backend | None = None,
        registry: CollectorRegistry | None = None,
        wall: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        net_dev: Path | str = "/proc/net/dev",
        load_pinger: Callable[[], Pinger] | None = None,
        line: emulated.EmulatedLine | None = None,
    ) -> None:
        self.config = config
        link = config.link
        self.rng = rng or random.Random()
        # `[link] line = "emulated"`: the same service on a modelled line (demo, tests).
        if line is None and link.line == "emulated":
            line = emulated.EmulatedLine(
                anchors=link.anchors, gateway=link.gateway, isp_hop=link.isp_hop,
                resolver=link.resolver, rng=self.rng,
            )
        self.line = line
        if line is not None:
            self.prober = prober or Prober(
                anchors=link.anchors, dns_names=link.dns_names, timeout=link.probe_timeout,
                gateway=line.gateway, isp_hop=link.isp_hop, resolver=line.resolver,
                traceroute=line.traceroute, pinger=line.pinger(), dns=line.dns_probe(),
            )
            self.backend = backend if backend is not None else line.backend(link.test_seconds)
            load_pinger = load_pinger or line.pinger
            self.wan_bytes: Callable[[], int] = line.wan_bytes
        else:
            self.prober = prober or Prober(
                anchors=link.anchors,
                dns_names=link.dns_names,
                timeout=link.probe_timeout,
                gateway=link.gateway,
                isp_hop=link.isp_hop,
                resolver=link.resolver,
                rng=self.rng,
            )
            self.backend = backend if backend is not None else build_backend(config)
            self.wan_bytes = gate_mod.wan_bytes_reader(link.wan_interface, net_dev)
        self.wall = wall
        self.clock = clock
        self.sleep = sleep
        self.net_dev = net_dev
        self.load_pinger = load_pinger or Pinger
        self.registry = registry or CollectorRegistry()
        self.metrics = LinkMetrics(self.registry)
        self.conn = db.open_db(config.db_path)
        self._db_lock = threading.Lock()
        self._state_lock = threading.RLock()
        self.tracker = OutageTracker(link.down_after, link.up_after)
        self.outage_id: int | None = None
        self.last_samples: list[Sample] = []
        self.last_round_at: float | None = None
        self._windows: dict[str, deque[tuple[int, int]]] = {
            r: deque(maxlen=WINDOW_ROUNDS) for r in ROLES
        }
        self._jitter: dict[str, deque[float]] = {r: deque(maxlen=WINDOW_ROUNDS) for r in ROLES}
        self._last_rtt: dict[tuple[str, str], float] = {}
        self._probe_bytes_seen = 0
        self._last_traceroute: float | None = None
        self._last_housekeeping: float | None = None
        self.interval = link.test_interval_hours * 3600.0
        self.next_test_at = schedule.next_test_time(wall(), self.interval, self.rng, config.tz)
        self.test_thread: threading.Thread | None = None
        self.test_state: dict[str, Any] | None = None
        self.last_test: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.server: CommandServer | None = None
        self.last_loop = clock()
        with self._db_lock:
            closed = store.close_dangling_outages(self.conn)
        if closed:
            log.info("closed %d outage(s) left open by the previous run", closed)
        # Until this run has judged enough rounds for a verdict of its own, the line state
        # (gauges, status, panel: `line_state()`) is the one the previous run ended with.
        self._rounds_to_verdict = max(link.down_after, link.up_after)
        self._below_half = dict.fromkeys(DIRECTIONS, 0)
        # The previous run's last state (cause, since, at) while it stands for this run's.
        self._previous: dict[str, Any] | None = None
        # Our own test's load on the line: a generation bumped when it starts and ends,
        # and when it last ended (rounds just after it still meet a draining queue).
        self._loading = False
        self._load_generation = 0
        self._load_ended_at: float | None = None
        self.loaded_rounds = 0
        self._restore()
        self.metrics.contracted_download.set(link.contracted_download_mbps * 1e6 / 8)
        self.metrics.contracted_upload.set(link.contracted_upload_mbps * 1e6 / 8)
        self.metrics.budget.set(self.budget_bytes)
        self._update_budget_gauge()

    # --- restart ---------------------------------------------------------------------

    def _restore(self) -> None:
        """After a restart: the last test's gauges and the line's last known state.

        Gauges are restored from the database so dashboards do not show the line at 0
        until the next test (up to 4 h away). Counters (`*_total`) start again at 0, as
        Prometheus expects of a restarted process: rate() and increase() see the reset.
        """
        try:
            with self._db_lock:
                last_ok = store.last_test(self.conn, ok=True)
                self.last_test = store.last_test(self.conn)
                for direction in DIRECTIONS:
                    self._below_half[direction] = store.below_half_in_a_row(self.conn, direction)
                held = store.outage_at_last_stop(self.conn)
                last_probe_at = store.last_probe_at(self.conn)
        except sqlite3.Error as exc:
            log.warning("link history not restored: %s", exc)
            return
        if last_ok is not None:
            self._set_test_gauges(last_ok)
        for direction, count in self._below_half.items():
            self.metrics.below_half.labels(direction).set(count)
        if last_probe_at is None:  # nothing known before the first ever round: no gauge yet
            return
        self._previous = {"cause": None, "since": None, "at": last_probe_at}
        if held is not None:
            self._previous.update(cause=Layer(held["cause"]), since=held["start"])
            log.info("line was down (%s) when the previous run stopped", held["cause"])
        self._publish_layers()

    def _set_test_gauges(self, result: dict[str, Any]) -> None:
        """The last completed test's gauges (on a result or a stored row)."""
        m = self.metrics
        if result.get("download_bps") is not None:
            m.download.set(result["download_bps"] / 8)
        if result.get("upload_bps") is not None:
            m.upload.set(result["upload_bps"] / 8)
        if result.get("download_ratio") is not None:
            m.download_ratio.set(result["download_ratio"])
        if result.get("upload_ratio") is not None:
            m.upload_ratio.set(result["upload_ratio"])
        if result.get("added_delay_s") is not None:
            m.added_delay.set(result["added_delay_s"])
        m.last_test.set(result["at"])

    def _count_below_half(self, result: dict[str, Any]) -> None:
        """A completed test extends or resets each direction's run under half the contract."""
        for direction in DIRECTIONS:
            ratio = result.get(f"{direction}_ratio")
            if ratio is None:
                continue
            self._below_half[direction] = (
                self._below_half[direction] + 1 if ratio < store.BELOW_HALF else 0)
            self.metrics.below_half.labels(direction).set(self._below_half[direction])

    def line_state(self) -> dict[str, Any]:
        """The line's state, the one source for `up{layer}`, `link status` and the panel.

        After a restart it is the state the previous run ended with (`as_of` is
        "previous_run", with `previous_run_at` its last round) until this run has probed
        `max(down_after, up_after)` rounds or found an outage of its own; then the probes'
        (`as_of` "probes"). Layers: True while that layer and every one below it work.
        """
        with self._state_lock:
            prev = self._previous
            if prev is not None and (self.tracker.cause is not None
                                     or self._rounds_to_verdict <= 0):
                prev = self._previous = None
            if prev is None:
                current = self.tracker.current
                return {
                    "layers": {layer.value: self.tracker.is_up(layer) for layer in LAYERS},
                    "outage": None if current is None else {"cause": current.cause.value,
                                                            "since": current.start},
                    "as_of": "probes",
                    "previous_run_at": None,
                }
            cause = prev["cause"]
            return {
                "layers": {layer.value: cause is None or LAYERS.index(layer) < LAYERS.index(cause)
                           for layer in LAYERS},
                "outage": None if cause is None else {"cause": cause.value,
                                                      "since": prev["since"]},
                "as_of": "previous_run",
                "previous_run_at": prev["at"],
            }

    def _publish_layers(self) -> None:
        """`up{layer}` from `line_state()`."""
        for layer, up in self.line_state()["layers"].items():
            self.metrics.up.labels(layer).set(1 if up else 0)

    # --- lifecycle ------------------------------------------------------------------

    @property
    def budget_bytes(self) -> int:
        return int(self.config.link.monthly_budget_gb * 1e9)

    def start(self, *, socket: bool = True) -> LinkService:
        if socket:
            self.server = CommandServer(self.config.link_socket, self.handlers()).start()
        self._thread = threading.Thread(target=self.run, name="link-loop", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.test_thread is not None:
            self.test_thread.join(timeout=120)
        if self.server is not None:
            self.server.stop()
        self._close_outage_on_stop()
        self.prober.close()
        self.conn.close()

    def run(self) -> None:
        interval = self.config.link.probe_interval
        while not self._stop.is_set():
            started = self.clock()
            try:
                self.step()
            except Exception:  # the loop must outlive any single bad round
                log.exception("link loop step failed")
            self.last_loop = self.clock()
            notify("WATCHDOG=1")
            self._stop.wait(max(0.0, interval - (self.last_loop - started)))

    def step(self) -> None:
        """One turn: traceroute when due, a probe round, outages, the schedule, upkeep."""
        now = self.wall()
        if self._last_traceroute is None or now - self._last_traceroute >= TRACEROUTE_EVERY:
            self._last_traceroute = now
            hop = self.prober.find_isp_hop()
            log.info("first ISP hop: %s", hop or "not found (anchors alone judge the line)")
        at = self.wall()  # rounds are dated when their probes leave
        with self._state_lock:
            generation = self._load_generation
        samples = self.prober.round()
        self.on_round(at, samples, loaded=self._under_load(at, generation))
        if self.config.link.scheduled_tests and at >= self.next_test_at:
            _start, end = schedule.window_bounds(self.next_test_at, self.interval, self.config.tz)
            self.next_test_at = schedule.next_test_time(end, self.interval, self.rng,
                                                        self.config.tz)
            self.start_test("schedule")
        if self._last_housekeeping is None or at - self._last_housekeeping >= HOUSEKEEPING_EVERY:
            self._last_housekeeping = at
            self.housekeeping(at)

    def housekeeping(self, now: float) -> None:
        """Hourly aggregates and retention; failures are logged, probing goes on."""
        try:
            with self._db_lock:
                store.aggregate_hours(self.conn, now)
                raw, old = store.purge(self.conn, now)
            if raw or old:
                log.info("retention: %d raw probes and %d older records deleted", raw, old)
        except sqlite3.Error as exc:
            log.warning("link housekeeping failed: %s", exc)
        self._update_budget_gauge()

    # --- probes and outages ---------------------------------------------------------

    def _under_load(self, at: float, generation: int) -> bool:
        """Did the round that left at `at` overlap our own test's load on the line?

        True if a test was loading the line when it ended, one started or ended while it
        ran, or it left less than `probe_timeout` after one ended (the queue drains).
        """
        with self._state_lock:
            ended = self._load_ended_at
            return (self._loading or self._load_generation != generation
                    or (ended is not None and at < ended + self.config.link.probe_timeout))

    def _load(self, loading: bool, *, completed: bool = False) -> None:
        """Our test starts or stops loading the line (the test thread calls this)."""
        with self._state_lock:
            self._loading = loading
            self._load_generation += 1
            if not loading:
                self._load_ended_at = self.wall()
                self.tracker.test_over(self._load_ended_at, completed=completed)

    def on_round(self, at: float, samples: list[Sample], *, loaded: bool = False) -> None:
        """Record one round, update metrics, and turn it into outage changes.

        A round `loaded` by our own test is only counted as probe traffic and held for
        the outage tracker: it is not stored, not in the RTT/loss metrics, not judged.
        """
        if loaded:
            self._count_probe_traffic()
            with self._state_lock:
                self.tracker.hold(to_round(at, samples))
                self.loaded_rounds += 1
            log.debug("probe round at %.0f taken under our test's load: held", at)
            return
        with self._state_lock:
            # A round that did not echo the box keeps the box's last sample in the status.
            kept = [] if any(s.role == "gateway" for s in samples) else [
                s for s in self.last_samples
                if s.role == "gateway" and s.target == self.prober.gateway]
            self.last_samples = kept + samples
            self.last_round_at = at
        try:
            with self._db_lock:
                store.record_round(self.conn, at, samples)
        except sqlite3.Error as exc:
            log.warning("probe round not stored: %s", exc)
        self._probe_metrics(samples)
        with self._state_lock:
            held = self.tracker.held
            changes, counted = self.tracker.update(to_round(at, samples))
            self._rounds_to_verdict -= 1
        if held:
            failed = sum(1 for r in held if localize(r) is not None)
            log.info("%d of %d probe rounds under our test's load failed; judged with the "
                     "round after the test", failed, len(held))
        for cause, seconds in counted.items():
            self.metrics.outage_seconds.labels(cause.value).inc(seconds)
        for change in changes:
            try:
                with self._db_lock:
                    if change.end is not None and self.outage_id is not None:
                        store.close_outage(self.conn, self.outage_id, change.end)
                        self.outage_id = None
                    elif change.end is None:
                        self.outage_id = store.open_outage(
                            self.conn, change.cause.value, change.start
                        )
            except sqlite3.Error as exc:
                log.warning("outage change not stored: %s", exc)
            if change.end is None:
                self.metrics.outages.labels(change.cause.value).inc()
                log.warning("line outage: %s (since %.0f)", change.cause.value, change.start)
            else:
                log.info(
                    "line outage over: %s, %.0f s", change.cause.value, change.end - change.start
                )
        self._publish_layers()

    def _count_probe_traffic(self) -> None:
        self.metrics.rounds.inc()
        total = self.prober.bytes
        self.metrics.probe_bytes.inc(max(0, total - self._probe_bytes_seen))
        self._probe_bytes_seen = total

    def _probe_metrics(self, samples: list[Sample]) -> None:
        self._count_probe_traffic()
        per_role: dict[str, list[int]] = {}
        for s in samples:
            if s.role == "dns":
                if s.rtt is not None:
                    self.metrics.dns.observe(s.rtt)
                continue
            counts = per_role.setdefault(s.role, [0, 0])
            counts[0] += s.sent
            counts[1] += s.received
            if s.rtt is not None:
                self.metrics.rtt.labels(s.role).observe(s.rtt)
                last = self._last_rtt.get((s.role, s.target))
                if last is not None:
                    self._jitter[s.role].append(abs(s.rtt - last))
                self._last_rtt[(s.role, s.target)] = s.rtt
        for role, (sent, received) in per_role.items():
            window = self._windows[role]
            window.append((sent, received))
            total_sent = sum(x for x, _ in window)
            lost = total_sent - sum(y for _, y in window)
            self.metrics.loss.labels(role).set(lost / total_sent if total_sent else 0)
            if self._jitter[role]:
                self.metrics.jitter.labels(role).set(statistics.fmean(self._jitter[role]))

    def _close_outage_on_stop(self) -> None:
        if self.outage_id is not None and self.last_round_at is not None:
            try:
                with self._db_lock:
                    store.close_outage(self.conn, self.outage_id, self.last_round_at)
            except sqlite3.Error as exc:
                log.warning("open outage not closed on stop: %s", exc)

    # --- throughput tests -----------------------------------------------------------

    def month_bytes(self, now: float | None = None) -> int:
        start, end = month_bounds(self.wall() if now is None else now, self.config.tz)
        with self._db_lock:
            return store.bytes_between(self.conn, start, end)

    def _update_budget_gauge(self) -> None:
        try:
            self.metrics.budget_used.set(self.month_bytes())
        except sqlite3.Error:
            pass

    def start_test(self, trigger: str) -> bool:
        """Start a test in its own thread; False if one is already running."""
        with self._state_lock:
            if self.test_thread is not None and self.test_thread.is_alive():
                return False
            self.test_state = {"trigger": trigger, "phase": "starting", "started_at": self.wall()}
            self.test_thread = threading.Thread(
                target=self.run_test, args=(trigger,), name="link-test", daemon=True
            )
            self.test_thread.start()
        return True

    def _phase(self, phase: str, seconds: float | None = None) -> None:
        with self._state_lock:
            if self.test_state is not None:
                self.test_state = {**self.test_state, "phase": phase, "phase_at": self.wall(),
                                   "phase_seconds": seconds}

    def run_test(self, trigger: str) -> dict[str, Any]:
        """Gate, budget, then measure with RTT sampled under load; stores the result.

        A test an admin starts skips the gate and the budget: the panel and the CLI
        warn before sending the command.
        """
        with self._state_lock:
            if self.test_state is None:
                self.test_state = {"trigger": trigger, "phase": "starting",
                                   "started_at": self.wall()}
        try:
            result = self._run_test(trigger)
        except Exception as exc:  # a broken backend must not kill the service
            log.exception("throughput test failed")
            result = {"result": "failed", "detail": f"{type(exc).__name__}: {exc}"}
        result.setdefault("at", self.wall())
        result.setdefault("backend", self.backend.name if self.backend else "none")
        result["trigger"] = trigger
        try:
            with self._db_lock:
                store.record_test(self.conn, **{k: v for k, v in result.items()
                                                if k in store.TEST_COLUMNS})
        except sqlite3.Error as exc:
            log.warning("test result not stored: %s", exc)
        self.metrics.tests.labels(result["result"]).inc()
        if result["result"] == "ok":
            self._set_test_gauges(result)
            self._count_below_half(result)
        if result.get("bytes"):
            self.metrics.test_bytes.inc(result["bytes"])
        self._update_budget_gauge()
        with self._state_lock:
            self.last_test = result
            self.test_state = None
        log.info("throughput test (%s): %s %s", trigger, result["result"],
                 result.get("detail", ""))
        return result

    def _run_test(self, trigger: str) -> dict[str, Any]:
        link = self.config.link
        if self.backend is None:
            return {"result": "failed", "detail": "no test server configured (link.iperf3_server)"}
        outage = self.line_state()["outage"]
        if outage is not None:
            return {"result": "failed", "detail": f"line down ({outage['cause']})"}
        if trigger == "schedule":
            used = self.month_bytes()
            with self._db_lock:
                estimate = store.last_test_bytes(self.conn)
            if not budget_allows(used, estimate, self.budget_bytes):
                return {"result": "skipped_budget",
                        "detail": f"{used} of {self.budget_bytes} bytes used this month"}
            self._phase("waiting for a quiet line")
            gate = gate_mod.wait_for_quiet(
                self.wan_bytes,
                clock=self.clock,
                sleep=self.sleep,
            )
            if not gate.passed:
                return {"result": "skipped_busy" if gate.reason == "line busy" else "failed",
                        "detail": f"{gate.reason} (peak {gate.peak_rate:.0f} B/s)"}
        # The association's server (the first anchor; the iperf3 server as a rule): a host
        # we run answers echoes from its kernel, unpoliced, along the test's own path.
        # Not the box: its LAN address is before the queues. Not the ISP hop: routers
        # answer echoes on their slow path and rate-limit them, more so under load, and
        # here an unanswered echo counts as a delay of LOAD_TIMEOUT.
        target = link.anchors[0]
        pinger = self.load_pinger()
        try:
            self._phase("idle latency")
            idle = echo_stream(pinger, target, every=LOAD_SAMPLE_EVERY, timeout=LOAD_TIMEOUT,
                               clock=self.clock, count=IDLE_SAMPLES)
            done = threading.Event()
            loaded = EchoStream()

            def sample_under_load() -> None:
                nonlocal loaded
                loaded = echo_stream(pinger, target, every=LOAD_SAMPLE_EVERY,
                                     timeout=LOAD_TIMEOUT, clock=self.clock, stop=done.is_set)

            sampler = threading.Thread(target=sample_under_load, name="link-load-rtt",
                                       daemon=True)
            sampler.start()
            completed = False
            self._load(True)
            try:
                measured = self.backend.measure(progress=self._phase)
                completed = True
            except BackendError as exc:
                return {"result": "failed", "detail": str(exc), "server": self.backend.label}
            finally:
                self._load(False, completed=completed)
                done.set()
                sampler.join(timeout=LOAD_TIMEOUT + 2)
        finally:
            pinger.close()
        delay = added_delay(idle.rtts, loaded.rtts, lost=loaded.lost, timeout=LOAD_TIMEOUT)
        loaded_rtts = loaded.rtts + [LOAD_TIMEOUT] * loaded.lost if idle.rtts else loaded.rtts
        detail = measured.detail
        if loaded.lost:
            detail = "; ".join(filter(None, [detail, (
                f"{loaded.lost} of {loaded.sent} RTT samples under load unanswered within "
                f"{LOAD_TIMEOUT:g} s" + ("" if idle.rtts else f" (and all idle ones: {target}"
                                         " does not answer, not graded)"))]))
        down_ratio = contract_ratio(measured.download_bps, link.contracted_download_mbps * 1e6)
        up_ratio = contract_ratio(measured.upload_bps, link.contracted_upload_mbps * 1e6)
        at = self.wall()
        return {
            "at": at,
            "result": "ok",
            "backend": measured.backend,
            "server": measured.server,
            "download_bps": measured.download_bps,
            "upload_bps": measured.upload_bps,
            "download_ratio": down_ratio,
            "upload_ratio": up_ratio,
            "idle_rtt_s": statistics.median(idle.rtts) if idle.rtts else None,
            # With the unanswered samples at LOAD_TIMEOUT, as graded.
            "loaded_rtt_s": statistics.median(loaded_rtts) if loaded_rtts else None,
            "added_delay_s": delay,
            "grade": grade(delay) if delay is not None else None,
            "loaded_samples": loaded.sent,
            "loaded_lost": loaded.lost,
            # The sampler's echoes cross the line too: the data budget pays for them.
            "bytes": measured.bytes_used + int(getattr(pinger, "bytes", 0)),
            "detail": detail or None,
        }

    # --- commands over the UNIX socket ---------------------------------------------

    def handlers(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        handlers = {"status": self.cmd_status, "test": self.cmd_test}
        if self.line is not None:
            handlers["emulate"] = self.cmd_emulate
        return handlers

    def cmd_emulate(self, req: dict[str, Any]) -> dict[str, Any]:
        """Drive the emulated line: faults, rates, members' traffic (demo and tests only)."""
        assert self.line is not None
        return emulated.command(self.line, req)

    def status(self) -> dict[str, Any]:
        """The current state, for the CLI and the panel (no personal data in it)."""
        with self._state_lock:
            samples = [
                {"role": s.role, "target": s.target, "sent": s.sent, "received": s.received,
                 "rtt": s.rtt}
                for s in self.last_samples
            ]
            state = self.line_state()
            return {
                **state,
                "last_round_at": self.last_round_at,
                "rounds_under_test": self.loaded_rounds,
                "samples": samples,
                "gateway": self.prober.gateway,
                "isp_hop": self.prober.isp_hop,
                "next_test_at": self.next_test_at if self.config.link.scheduled_tests else None,
                "test": self.test_state,
                "last_test": self.last_test,
                "budget_bytes": self.budget_bytes,
                "month_bytes": self.month_bytes(),
                "backend": self.backend.label if self.backend else None,
                "emulated": self.line is not None,
                "contract_bps": [self.config.link.contracted_download_mbps * 1e6,
                                 self.config.link.contracted_upload_mbps * 1e6],
            }

    def cmd_status(self, _req: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, **self.status()}

    def cmd_test(self, req: dict[str, Any]) -> dict[str, Any]:
        """Start a test now. Without `force`, reply with warnings instead of starting."""
        if self.backend is None:
            return {"ok": False, "error": "no test server configured (link.iperf3_server)"}
        if not req.get("force"):
            warnings = []
            if self.month_bytes() >= self.budget_bytes:
                warnings.append("budget")
            if self._busy_now():
                warnings.append("busy")
            if warnings:
                return {"ok": True, "started": False, "warnings": warnings}
        started = self.start_test("admin")
        return {"ok": True, "started": started, "running": not started}

    def _busy_now(self) -> bool:
        """One second of WAN counters: is someone using the line right now?"""
        try:
            before = self.wan_bytes()
            time.sleep(1.0)
            return self.wan_bytes() - before > gate_mod.BUSY_BYTES_PER_SECOND
        except (OSError, LookupError):
            return False
