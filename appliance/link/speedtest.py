"""Ookla's servers as a throughput backend, through speedtest-cli's Python API.

Always in secure mode (HTTPS to speedtest.net for the configuration and server list).
The bytes used come from speedtest-cli's own results (bytes received and sent), which
is what the data budget pays. Nothing here is specific to a test setup: the tests run
this code unmodified against a fake speedtest.net resolved through a hosts file.
"""

from __future__ import annotations

from collections.abc import Callable

from appliance.link.iperf import BackendError
from appliance.link.throughput import Measurement

Progress = Callable[[str, float], None]


class SpeedtestBackend:
    """Picks the nearest (or the configured) Ookla server, then downloads and uploads."""

    name = "speedtest"

    def __init__(self, *, seconds: float = 8.0, server_id: int | None = None,
                 timeout: float = 10.0) -> None:
        self.seconds = seconds
        self.server_id = server_id
        self.timeout = timeout
        self._label = "speedtest.net"

    @property
    def label(self) -> str:
        return self._label

    def measure(self, progress: Progress | None = None) -> Measurement:
        import speedtest

        try:
            st = speedtest.Speedtest(secure=True, timeout=self.timeout)
            st.config["length"] = {"download": self.seconds, "upload": self.seconds}
            st.get_servers([self.server_id] if self.server_id else [])
            server = st.get_best_server()
            self._label = f"speedtest:{server.get('id')} {server.get('sponsor', '')}".strip()
            if progress:
                progress("download", self.seconds)
            st.download()
            if progress:
                progress("upload", self.seconds)
            st.upload(pre_allocate=False)
        except speedtest.SpeedtestException as exc:
            raise BackendError(f"speedtest: {type(exc).__name__}: {exc}") from None
        except OSError as exc:
            raise BackendError(f"speedtest: {exc}") from None
        results = st.results
        return Measurement(
            backend=self.name,
            server=self._label,
            download_bps=float(results.download),
            upload_bps=float(results.upload),
            bytes_used=int(results.bytes_received) + int(results.bytes_sent),
        )
