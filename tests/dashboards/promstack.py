"""Real Prometheus processes for the fleet tests: the site agent and the central store,
started from what ships with only ports, paths and intervals changed: the agent with the
configuration first boot writes (`appliance.firstboot.agent_document`) and the flags of
its unit (systemd/telecentre-metrics-agent.service), the central store from the
checked-in reference (dashboards/central/).

Everything listens on 127.0.0.1, lives in a temporary folder, and is stopped by PID.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from appliance import firstboot

DASHBOARDS = Path(__file__).resolve().parents[2] / "dashboards"
AGENT_UNIT = DASHBOARDS.parent / "systemd" / "telecentre-metrics-agent.service"
SITE = "test-site"
# The alerts dashboards/alerts.yml must define: issue 4's (section 6), a service down, and
# the Wi-Fi gateway's refused changes (issue 5).
ALERTS = {
    "SiteNotReporting", "LineDown", "LineUnderHalfContract", "LineLoss", "LineGradeF",
    "DoorHeldOpen", "DoorReaderDown", "ServiceDown", "WifiChangesRefused", "WifiUnshaped",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def http_get(url: str, timeout: float = 2.0) -> bytes | None:
    """The body, or None when nothing answers (yet)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def replace_once(text: str, old: str, new: str) -> str:
    """Replace a token that must be in the checked-in file exactly once (else it changed)."""
    count = text.count(old)
    assert count == 1, f"expected {old!r} once in the checked-in config, found {count}"
    return text.replace(old, new)


def default_args(path: Path) -> tuple[dict[str, str], list[str]]:
    """The variables and ARGS of a Debian /etc/default/prometheus file."""
    text = path.read_text("utf-8").replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        m = re.match(r"^([A-Z_]+)=(.*)$", line.strip())
        if m:
            env[m[1]] = " ".join(shlex.split(m[2]))
    return env, shlex.split(env.pop("ARGS"))


def unit_args(path: Path) -> list[str]:
    """The arguments of a systemd unit's ExecStart= after the program (one line, or lines
    joined by a trailing backslash; comment lines between them are not allowed)."""
    text = path.read_text("utf-8").replace("\\\n", " ")
    (line,) = [ln for ln in text.splitlines() if ln.startswith("ExecStart=")]
    return shlex.split(line.removeprefix("ExecStart="))[1:]


def with_flags(args: list[str], **overrides: str) -> list[str]:
    """ARGS with some `--flag=value` replaced (keys use _ for . and -); each must be there."""
    out = list(args)
    for key, value in overrides.items():
        flag = "--" + key.replace("__", "-").replace("_", ".")
        idx = [i for i, a in enumerate(out) if a.split("=", 1)[0] == flag]
        assert len(idx) == 1, f"{flag} not in the checked-in ARGS"
        out[idx[0]] = f"{flag}={value}"
    return out



def stop_process(proc: subprocess.Popen | None, timeout: float) -> None:
    """SIGTERM, and the whole process group (started with start_new_session) killed if it
    has not stopped within `timeout` seconds. Nothing to do for one already gone."""
    if proc is None or proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)

class Prometheus:
    """One Prometheus process; `stop()` by PID, `start()` again with the same arguments."""

    def __init__(self, args: list[str], port: int, log: Path, env: dict[str, str]) -> None:
        self.args = args
        self.port = port
        self.log = log
        self.env = env
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [self.binary(), *self.args], stdout=log, stderr=subprocess.STDOUT,
                env=self.env, start_new_session=True,
            )
        wait_for(lambda: self.proc.poll() is not None or http_get(self.url + "/-/ready"),
                 timeout, f"Prometheus on port {self.port}")
        assert self.proc.poll() is None, self.log.read_text()[-3000:]

    def stop(self) -> None:
        stop_process(self.proc, 15)

    @staticmethod
    def binary() -> str:
        import shutil
        path = shutil.which("prometheus")
        assert path is not None
        return path

    def query(self, expr: str, at: float | None = None) -> dict:
        """The API's answer to an instant query (errors included, not raised)."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return json.load(r)
        except urllib.error.HTTPError as exc:
            return json.load(exc)

    def query_range(self, expr: str, start: float, end: float, step: float = 1.0) -> dict:
        """The API's answer to a range query (errors included, not raised)."""
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        url = f"{self.url}/api/v1/query_range?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return json.load(r)
        except urllib.error.HTTPError as exc:
            return json.load(exc)

    def metric(self, name: str) -> float:
        """The sum of one metric on this Prometheus's own /metrics page."""
        body = (http_get(self.url + "/metrics") or b"").decode()
        values = [float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
                  if re.match(rf"^{re.escape(name)}(\{{| )", line)]
        return sum(values)


def central(tmp: Path, *, eval_seconds: int = 1) -> Prometheus:
    """The checked-in central reference configuration, on a free port, rules from
    dashboards/alerts.yml, evaluated every `eval_seconds`."""
    port = free_port()
    text = (DASHBOARDS / "central" / "prometheus.yml").read_text("utf-8")
    text = replace_once(text, "evaluation_interval: 1m", f"evaluation_interval: {eval_seconds}s")
    text = replace_once(text, "/etc/prometheus/telecentre-alerts.yml",
                        str(DASHBOARDS / "alerts.yml"))
    # No Alertmanager in the test: a loopback port where nothing listens.
    text = replace_once(text, "127.0.0.1:9093", f"127.0.0.1:{free_port()}")
    text = replace_once(text, "127.0.0.1:9090", f"127.0.0.1:{port}")
    cfg = tmp / "central.yml"
    cfg.write_text(text, "utf-8")
    _env, args = default_args(DASHBOARDS / "central" / "default-prometheus")
    args = with_flags(args, config_file=str(cfg), web_listen__address=f"127.0.0.1:{port}",
                      storage_tsdb_path=str(tmp / "central-data"))
    return Prometheus(args, port, tmp / "central.log", {"PATH": os.environ["PATH"]})


def agent(tmp: Path, targets: dict[str, int], central_port: int) -> Prometheus:
    """The site agent as first boot configures it and its unit runs it, but scraping
    every second the given loopback ports (door, web, link, gateway) and remote-writing
    to `central_port` with a bearer token from a file."""
    port = free_port()
    token = tmp / "remote-write.token"
    token.write_text("test-token\n")
    doc = firstboot.agent_document(
        SITE, {job: f"127.0.0.1:{targets[job]}" for job in ("door", "web", "link", "gateway")},
        {"url": f"http://127.0.0.1:{central_port}/api/v1/write",
         "authorization": {"credentials_file": str(token)}},
        agent_listen=f"127.0.0.1:{port}",
    )
    doc["global"].update(scrape_interval="1s", scrape_timeout="1s")
    doc["remote_write"][0]["queue_config"].update(min_backoff="100ms", max_backoff="500ms")
    cfg = tmp / "agent.yml"
    cfg.write_text(json.dumps(doc), "utf-8")
    args = with_flags(unit_args(AGENT_UNIT), config_file=str(cfg),
                      web_listen__address=f"127.0.0.1:{port}",
                      storage_agent_path=str(tmp / "agent-wal"))
    return Prometheus(args, port, tmp / "agent.log", {"PATH": os.environ["PATH"]})
