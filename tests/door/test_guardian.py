"""The relock guardian, with a relock that writes a file.

Each test runs a small "service" in a separate Python process (so forking never happens inside
pytest's own, possibly threaded, process). The service starts a guardian, prints its PID and
waits for orders on stdin. The guardian is the service's child, not ours: once the service is
gone we can only watch its PID, so every test kills whatever is left in a finally block.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

SERVICE = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    from appliance.door.guardian import start_guardian

    marker = Path(sys.argv[1])

    def relock():
        marker.write_text("locked")

    guardian = start_guardian(relock)
    print(guardian.pid, flush=True)
    for line in sys.stdin:
        if line.strip() == "stop":
            guardian.stop()
            guardian.stop()  # idempotent
            print("stopped", flush=True)
        elif line.strip() == "crash":
            raise SystemExit(3)  # an exit without stop(): the guardian must relock
    """
)


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting for a reaper counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


class Service:
    def __init__(self, marker: Path) -> None:
        self.marker = marker
        root = Path(__file__).resolve().parents[2]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            p for p in (str(root), os.environ.get("PYTHONPATH", "")) if p))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVICE, str(marker)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        )
        assert self.proc.stdout is not None
        self.guardian_pid = int(self.proc.stdout.readline())

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=5)
        # Kill the guardian only if that PID is still ours (it forked from our command line),
        # never a process that reused the number.
        try:
            cmdline = Path(f"/proc/{self.guardian_pid}/cmdline").read_bytes()
        except FileNotFoundError:
            cmdline = b""
        if alive(self.guardian_pid) and os.fsencode(str(self.marker)) in cmdline:
            os.kill(self.guardian_pid, signal.SIGKILL)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "relocked"


@pytest.fixture
def service(marker: Path) -> Iterator[Service]:
    s = Service(marker)
    try:
        yield s
    finally:
        s.cleanup()


def test_guardian_relocks_when_the_service_is_killed(service: Service, marker: Path) -> None:
    assert alive(service.guardian_pid)
    assert not marker.exists()
    os.kill(service.proc.pid, signal.SIGKILL)
    assert wait_until(marker.exists, timeout=2.0)
    assert marker.read_text() == "locked"
    assert wait_until(lambda: not alive(service.guardian_pid), timeout=2.0)


def test_guardian_relocks_when_the_service_exits_without_stopping_it(
    service: Service, marker: Path
) -> None:
    service.send("crash")
    assert service.proc.wait(timeout=5) == 3
    assert wait_until(marker.exists, timeout=2.0)


def test_guardian_outlives_sigterm_and_sigint(service: Service, marker: Path) -> None:
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        os.kill(service.guardian_pid, signum)
    time.sleep(0.2)
    assert alive(service.guardian_pid)
    assert not marker.exists()
    os.kill(service.proc.pid, signal.SIGKILL)
    assert wait_until(marker.exists, timeout=2.0)


def test_stop_makes_the_guardian_exit_without_relocking(service: Service, marker: Path) -> None:
    service.send("stop")
    assert service.proc.stdout is not None
    assert service.proc.stdout.readline().strip() == "stopped"
    # stop() reaped it: gone before the service itself exits.
    assert not alive(service.guardian_pid)
    assert service.proc.poll() is None
    assert service.proc.stdin is not None
    service.proc.stdin.close()
    assert service.proc.wait(timeout=5) == 0
    time.sleep(0.3)
    assert not marker.exists()
