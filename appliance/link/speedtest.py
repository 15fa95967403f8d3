"""Ookla's servers as a throughput backend, through speedtest-cli's Python API.

Always in secure mode (HTTPS to speedtest.net for the configuration and server list).
Certificates are checked against the system's trust store; nothing here turns that
off. The bytes used come from speedtest-cli's own results (bytes received and sent),
which is what the data budget pays. Nothing here is specific to a test setup: the
tests run this code unmodified against a fake speedtest.net resolved through a hosts
file, trusted through SSL_CERT_FILE in the service's environment.
"""

from __future__ import annotations

from collections.abc import Callable

from appliance.link.iperf import BackendError
from appliance.link.throughput import Measurement

Progress = Callable[[str, float], None]

# What one upload connection can hold in its socket buffer at the end of the test,
# bytes that speedtest-cli counts as sent although they never left (measured ~40 kB
# per connection through a 1 Mbit/s tbf).
UNSENT_PER_STREAM = 64 * 1024
MAX_UPLOAD_STREAMS = 8
UPLOAD_ERROR_SHARE = 0.05


def upload_streams(contracted_upload_bps: float, seconds: float) -> int:
    """How many parallel uploads keep speedtest-cli's upload figure honest on this line.

    speedtest-cli counts upload bytes when it hands them to the socket, so each stream
    overstates by what sits in its buffer when time is up. With its default 8 streams
    a 1 Mbit/s uplink reads 33 % high; one stream fills such a line on its own. The
    overstatement is kept under 5 % of what the test moves at the contracted rate.
    """
    moved = max(0.0, contracted_upload_bps) / 8 * seconds
    return max(1, min(MAX_UPLOAD_STREAMS, int(UPLOAD_ERROR_SHARE * moved / UNSENT_PER_STREAM)))


class SpeedtestBackend:
    """Picks the nearest (or the configured) Ookla server, then downloads and uploads."""

    name = "speedtest"

    def __init__(self, *, seconds: float = 8.0, server_id: int | None = None,
                 upload_threads: int | None = None, timeout: float = 10.0) -> None:
        self.seconds = seconds
        self.server_id = server_id
        self.upload_threads = upload_threads
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
            st.upload(pre_allocate=False, threads=self.upload_threads)
        except speedtest.SpeedtestException as exc:
            raise BackendError(f"speedtest: {type(exc).__name__}: {exc}") from None
        except OSError as exc:
            raise BackendError(f"speedtest: {exc}") from None
        results = st.results
        if not results.bytes_received or not results.bytes_sent:
            # speedtest-cli swallows connection errors inside its threads: no bytes in
            # one direction is a failed test, not a 0 Mbit/s line.
            raise BackendError(
                f"speedtest: nothing {'received' if not results.bytes_received else 'sent'}"
                f" from {self._label}"
            )
        return Measurement(
            backend=self.name,
            server=self._label,
            download_bps=float(results.download),
            upload_bps=float(results.upload),
            bytes_used=int(results.bytes_received) + int(results.bytes_sent),
        )
