"""The association's own server as a throughput backend, through Debian's iperf3 (JSON).

Download is measured with `-R` (the server sends), upload without; the first second
of each direction is left out of the rate (`-O 1`, TCP slow start) but counted in the
bytes used, which is what the data budget pays.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from typing import Any

from appliance.link.throughput import Measurement

Progress = Callable[[str, float], None]


class BackendError(RuntimeError):
    """A throughput test that could not be run; the message says why, for the log."""


class Iperf3Backend:
    """Runs `iperf3 -c SERVER -J` twice (download, then upload) and reads the JSON."""

    name = "iperf3"

    def __init__(
        self,
        server: str,
        port: int = 5201,
        seconds: float = 8.0,
        *,
        binary: str = "iperf3",
        run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run,
    ) -> None:
        self.server = server
        self.port = port
        self.seconds = seconds
        self.binary = binary
        self._run = run

    @property
    def label(self) -> str:
        return f"iperf3://{self.server}:{self.port}"

    def measure(self, progress: Progress | None = None) -> Measurement:
        result = Measurement(backend=self.name, server=self.label)
        for direction in ("download", "upload"):
            if progress:
                progress(direction, self.seconds + 1)
            bps, used = self._direction(reverse=direction == "download")
            setattr(result, f"{direction}_bps", bps)
            result.bytes_used += used
        return result

    def _direction(self, *, reverse: bool) -> tuple[float, int]:
        args = [
            self.binary, "-c", self.server, "-p", str(self.port), "-J",
            "-t", f"{self.seconds:g}", "-O", "1", "--connect-timeout", "3000",
        ]
        if reverse:
            args.append("-R")
        try:
            done = self._run(
                args, capture_output=True, text=True, timeout=self.seconds + 30, check=False
            )
        except FileNotFoundError:
            raise BackendError("iperf3 is not installed (apt-get install iperf3)") from None
        except subprocess.TimeoutExpired:
            raise BackendError(f"iperf3 did not finish within {self.seconds + 30:g} s") from None
        return parse_result(done.stdout, done.returncode, done.stderr)


def parse_result(stdout: str, returncode: int = 0, stderr: str = "") -> tuple[float, int]:
    """(goodput in bits/s at the receiver, bytes moved including omitted seconds)."""
    try:
        data: dict[str, Any] = json.loads(stdout)
    except ValueError:
        raise BackendError(
            f"iperf3 gave no JSON (exit {returncode}): {(stderr or stdout).strip()[:200]}"
        ) from None
    if data.get("error"):
        raise BackendError(f"iperf3: {data['error']}")
    try:
        bps = float(data["end"]["sum_received"]["bits_per_second"])
        moved = sum(int(iv["sum"]["bytes"]) for iv in data.get("intervals", []))
        moved = max(moved, int(data["end"]["sum_sent"]["bytes"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise BackendError(f"iperf3 JSON without a result ({exc})") from None
    return bps, moved
