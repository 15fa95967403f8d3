"""A fake speedtest.net for the namespace tests and the benchmark, over HTTPS.

    python fake_speedtest.py ADDRESS CERT KEY SERVER_HOST

Run inside the `wan` namespace. Port 443 plays www.speedtest.net and c.speedtest.net
(the configuration and the server list); port 8080 plays one Ookla test server named
SERVER_HOST (latency.txt, random<N>x<N>.jpg, upload.php), like the real ones. The
XML carries the attributes speedtest-cli 2.1 reads, with Ookla's usual values, so
speedtest-cli runs unmodified against it; the client only has to resolve the names
here (a per-namespace hosts file) and trust the test CA (SSL_CERT_FILE).
"""

from __future__ import annotations

import os
import re
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SERVER_ID = 4242
CHUNK = 64 * 1024
# Incompressible, so nothing on the way could shrink it.
PAYLOAD = os.urandom(CHUNK)

CONFIG_XML = """<?xml version="1.0" encoding="UTF-8"?>
<settings>
<client ip="100.64.0.2" lat="45.83" lon="1.26" isp="FAI rural" isprating="3.7" rating="0"
 ispdlavg="0" ispulavg="0" loggedin="0" country="FR"/>
<server-config threadcount="4" ignoreids="" notonmap="" forcepingid="" preferredserverid=""/>
<download testlength="10" initialtest="250K" mintestsize="250K" threadsperurl="4"/>
<upload testlength="10" ratio="5" initialtest="0" mintestsize="32K" threads="2"
 maxchunksize="512K" maxchunkcount="50" threadsperurl="4"/>
</settings>
"""


def servers_xml(host: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<settings>\n<servers>\n'
        f'<server url="https://{host}:8080/speedtest/upload.php" lat="45.83" lon="1.26"'
        f' name="Limoges" country="France" cc="FR" sponsor="FAI rural" id="{SERVER_ID}"'
        f' host="{host}:8080"/>\n</servers>\n</settings>\n'
    )


class Handler(BaseHTTPRequestHandler):
    server_host = ""
    timeout = 30  # an upload cut short by the client must not hold a thread forever

    def setup(self) -> None:
        # The TLS handshake happens here, in the request's thread, so one slow client
        # never holds up the accept loop (and every other connection) behind it.
        self.request = self.server.context.wrap_socket(self.request, server_side=True)
        super().setup()

    def log_message(self, format: str, *args: object) -> None:  # quiet, like a server
        pass

    def _send(self, body: bytes, ctype: str = "text/plain") -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/speedtest-config.php":
            return self._send(CONFIG_XML.encode(), "text/xml")
        if path in ("/speedtest-servers-static.php", "/speedtest-servers.php"):
            return self._send(servers_xml(self.server_host).encode(), "text/xml")
        if path == "/speedtest/latency.txt":
            return self._send(b"test=test\n")
        match = re.fullmatch(r"/speedtest/random(\d+)x\1\.jpg", path)
        if match:
            side = int(match.group(1))
            # About the size of Ookla's JPEGs (random4000x4000.jpg is ~31 MB).
            return self._stream(int(side * side * 1.98))
        self.send_error(404)

    def _stream(self, size: int) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        try:
            while size > 0:
                n = min(size, CHUNK)
                self.wfile.write(PAYLOAD[:n])
                size -= n
        except (TimeoutError, BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass  # the client stops reading when its test time is up

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0] != "/speedtest/upload.php":
            self.send_error(404)
            return
        length = int(self.headers.get("Content-Length") or 0)
        got = 0
        try:
            while got < length:
                data = self.rfile.read(min(CHUNK, length - got))
                if not data:
                    return
                got += len(data)
        except (TimeoutError, ConnectionResetError, ssl.SSLError):
            return
        self._send(f"size={got}".encode())


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64
    context: ssl.SSLContext

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients hanging up mid-test are normal here


def serve(address: str, port: int, context: ssl.SSLContext, host: str) -> Server:
    handler = type("BoundHandler", (Handler,), {"server_host": host})
    server = Server((address, port), handler)
    server.context = context
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    address, cert, key, host = sys.argv[1:5]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    serve(address, 443, context, host)
    serve(address, 8080, context, host)
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
