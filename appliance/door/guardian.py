"""The relock guardian: a tiny child process that locks the door if the door service dies.

On a Pi a released GPIO line keeps its last level. If the door service is killed while the
lock is unlocked (SIGKILL, the OOM killer, a crash in C code), nothing would ever relock it:
the door would stay open until someone restarts the service. So, at start-up, the service forks
a guardian that does nothing but wait on a pipe whose write end only the service holds. When
the service dies, for any reason, the kernel closes that end, the guardian's read returns EOF,
and the guardian calls `relock()` in its own process: in the product it claims the lock pin
with the real pin factory and drives the locked level; in emulation it writes the locked level
into the emulated board's shared state. On a clean shutdown the service relocks the door
itself, then calls `Guardian.stop()`, and the guardian exits without touching the pin.

Start it with `start_guardian` *before* any thread is started (before the pin factory, the
devices, the web socket or the metrics server): `os.fork` only copies the calling thread, and
a lock held by another thread at that moment would stay held forever in the child.

The guardian ignores SIGTERM, SIGINT and SIGHUP, so a Ctrl-C in a terminal or systemd's stop
signal reaches the service but leaves the guardian to do its job. Keep systemd's default
KillMode=control-group for the unit: the remaining processes get SIGTERM (ignored) and only
get SIGKILL after TimeoutStopSec, by which time the guardian has relocked and exited.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterable

STOP = b"s"
_IGNORED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Guardian:
    """The parent's handle on a running guardian."""

    def __init__(self, pid: int, write_fd: int) -> None:
        self.pid = pid
        self._write_fd: int | None = write_fd

    @property
    def running(self) -> bool:
        return self._write_fd is not None

    def stop(self, timeout: float = 2.0) -> None:
        """Tell the guardian to exit without relocking and reap it. Call this only once the
        door is locked. Idempotent; a guardian that has not exited after `timeout` seconds is
        killed."""
        fd, self._write_fd = self._write_fd, None
        if fd is None:
            return
        try:
            os.write(fd, STOP)
        except OSError:
            pass  # the guardian is already gone; reap it below
        finally:
            os.close(fd)
        deadline = time.monotonic() + timeout
        while True:
            try:
                pid, _ = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                return
            if pid:
                return
            if time.monotonic() >= deadline:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
                return
            time.sleep(0.01)


def start_guardian(relock: Callable[[], None], *, keep_fds: Iterable[int] = ()) -> Guardian:
    """Fork the guardian and return its handle, once the guardian is watching. Call before
    starting any thread.

    `relock` runs in the child, once, only if this process dies without calling
    `Guardian.stop()`. The child closes every inherited file descriptor except 0, 1, 2 and
    `keep_fds` (so it holds no other guardian's pipe nor any socket of the service): `relock`
    opens what it needs itself.
    """
    read_fd, write_fd = os.pipe()
    ready_read, ready_write = os.pipe()
    # Buffered output would otherwise be written twice, once by each process.
    sys.stdout.flush()
    sys.stderr.flush()
    # Blocked across the fork, so that a Ctrl-C or SIGTERM cannot kill the guardian before it
    # has set them to be ignored.
    previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _IGNORED)
    try:
        pid = os.fork()
    except BaseException:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
        raise
    if pid == 0:  # the guardian
        status = 1
        try:
            for signum in _IGNORED:
                signal.signal(signum, signal.SIG_IGN)
            signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
            _close_fds(keep={0, 1, 2, read_fd, ready_write, *keep_fds})
            os.write(ready_write, b"r")
            os.close(ready_write)
            status = _watch(read_fd, relock)
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(status)  # never return into the parent's code, nor run its atexit hooks
    signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
    os.close(read_fd)
    os.close(ready_write)
    try:
        # Return only once the guardian is watching.
        ready = os.read(ready_read, 1)
    finally:
        os.close(ready_read)
    guardian = Guardian(pid, write_fd)
    if ready != b"r":
        guardian.stop()
        raise RuntimeError("the relock guardian failed to start")
    return guardian


def _watch(read_fd: int, relock: Callable[[], None]) -> int:
    """Wait for the parent's STOP or death; relock on death. Returns the exit status."""
    while True:
        data = os.read(read_fd, 1)
        if data == STOP:
            return 0
        if not data:
            relock()
            return 0


def _close_fds(keep: set[int]) -> None:
    """Close every file descriptor not in `keep`."""
    previous = -1
    for fd in sorted(keep):
        if fd > previous + 1:
            os.closerange(previous + 1, fd)
        previous = max(previous, fd)
    os.closerange(previous + 1, os.sysconf("SC_OPEN_MAX"))
