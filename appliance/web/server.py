"""Serving the panel with waitress: pure Python, threaded, light enough for a Pi.

`make_server` returns the server object (run it in a thread, close it) for the demo
and the tests; `serve` is what the systemd unit runs.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import waitress
from flask import Flask
from prometheus_client import CollectorRegistry, start_http_server

from appliance.config import Config
from appliance.sdnotify import notify
from appliance.watchdog import Watchdog, http_probe, watchdog_interval
from appliance.web import create_app, tls

log = logging.getLogger(__name__)

THREADS = 8


def make_server(config: Config, host: str, port: int, *, app: Flask | None = None) -> Any:
    """A bound, not yet running, waitress server; port 0 picks a free port.

    The bound port is `server.bound_port` (an int; waitress's own `effective_port` is a
    string). `server.url` is the panel's address. Call `.run()` (blocks) and `.close()`.
    """
    app = app if app is not None else create_app(config)
    server = _waitress(app, host, port, body=1024 * 1024, header=64 * 1024, timeout=60)
    url_host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    if ":" in url_host:
        url_host = f"[{url_host}]"
    server.url = f"http://{url_host}:{server.bound_port}/"
    return server


def make_portal_server(
    config: Config,
    host: str,
    port: int,
    *,
    registry: CollectorRegistry | None = None,
    portal_url: str | None = None,
) -> Any:
    """The captive portal's waitress server, on its own port (the ruleset redirects there).

    Same bounds as the panel's, with a shorter channel timeout: many phones open probe
    connections they never finish.
    """
    from appliance.web.portal import create_portal_app

    app = create_portal_app(config, registry=registry, portal_url=portal_url)
    return _waitress(app, host, port, body=64 * 1024, header=32 * 1024, timeout=30)


def _waitress(app: Flask, host: str, port: int, *, body: int, header: int, timeout: int) -> Any:
    """A bound waitress server for `app`, with bounds on what one client can make it hold
    in memory (request body and headers, in bytes) and an idle-connection timeout (s).
    `.flask_app` reaches the app (its metrics registry); `.bound_port` is the port."""
    server = waitress.create_server(
        app,
        host=host,
        port=port,
        threads=THREADS,
        ident="telecentre",
        max_request_body_size=body,
        max_request_header_size=header,
        channel_timeout=timeout,
    )
    server.flask_app = app
    server.bound_port = int(server.socket.getsockname()[1])
    return server


TLS_THREADS = 4


def make_portal_tls_server(config: Config, host: str, port: int, *, app: Flask,
                           context: ssl.SSLContext) -> Any:
    """The same portal app over HTTPS, on its own port (the ruleset redirects the box's
    443 there), with cheroot: waitress has no TLS.

    The handshake runs in a worker thread (cheroot's own adapter runs it in the accept
    loop, where one silent client stalls every other: cherrypy/cheroot#748), bounded by
    the channel timeout. REMOTE_ADDR is the socket's peer, as with waitress.
    Same interface as the portal's waitress server: `.run()`, `.close()`, `.bound_port`.
    """
    from cheroot import wsgi

    server = wsgi.Server((host, port), app, numthreads=TLS_THREADS, timeout=30,
                         server_name="telecentre")
    server.max_request_header_size = 32 * 1024
    server.max_request_body_size = 64 * 1024
    server.ssl_adapter = _tls_adapter(context)
    server.ConnectionClass = _tls_connection_class()
    server.prepare()  # binds: an error here (port taken) is the caller's to report
    server.flask_app = app
    server.bound_port = int(server.bind_addr[1])
    server.renewals = None  # a _Renewals, run alongside the server (portal_servers)

    def run() -> None:
        if server.renewals is not None:
            server.renewals.start()
        server.serve()

    def close() -> None:
        if server.renewals is not None:
            server.renewals.stop()
        server.stop()

    server.run = run
    server.close = close
    return server


def _tls_adapter(context: ssl.SSLContext) -> Any:
    from cheroot.makefile import StreamReader, StreamWriter
    from cheroot.ssl import Adapter

    class LazyHandshake(Adapter):
        """Wraps an accepted socket without the handshake (done by the connection).

        `context` is replaced whole by _Renewals, never changed: a socket already wrapped
        keeps the context (and the certificate) it was wrapped with."""

        env = {"wsgi.url_scheme": "https", "HTTPS": "on"}

        def __init__(self) -> None:
            super().__init__("", "")
            self.context = context

        def bind(self, sock: Any) -> Any:
            return sock

        def wrap(self, sock: Any) -> tuple[Any, dict[str, str]]:
            context = self.context  # read once: a renewal may swap it meanwhile
            tls = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            return tls, dict(self.env)

        def get_environ(self) -> dict[str, str]:
            return dict(self.env)

        def makefile(self, sock: Any, mode: str = "r", bufsize: int = -1) -> Any:
            return (StreamReader if "r" in mode else StreamWriter)(sock, mode, bufsize)

    return LazyHandshake()


def _tls_connection_class() -> type:
    from cheroot.server import HTTPConnection

    class TlsConnection(HTTPConnection):
        """Finishes the TLS handshake in the worker, before the first request."""

        handshaken = False

        def communicate(self) -> bool:
            if not self.handshaken:
                try:
                    self.socket.do_handshake()
                except OSError:  # a timeout, a client refusing us, plain HTTP on 443
                    return False
                self.handshaken = True
            return super().communicate()

    return TlsConnection


RELOAD_SECONDS = 2.0
WARN_EVERY_SECONDS = 24 * 3600
# A refused certificate is checked again this often even when its files do not change:
# a Pi has no clock battery, and one that starts with its clock behind (no network yet)
# refuses a certificate as "not valid yet" until the time is synchronised.
RECHECK_REFUSED_SECONDS = 300.0


class _CertificateFiles:
    """Watches gateway.tls_certificate and gateway.tls_key for the portal: `_reload` runs
    once they have changed and then stayed the same for one more interval.

    A daemon thread stats the two files every `interval` seconds (no read, no parsing); a
    change waits for one quiet interval (a copy in progress; certbot's hook writing the
    certificate, then the key). The same files are never checked twice.
    """

    thread_name = "portal-tls-files"

    def __init__(self, config: Config, *, cafile: str | Path | None, interval: float) -> None:
        self.config = config
        self.cafile = cafile
        self.interval = interval
        self.seen = tls.files_state(config)  # what the last check read
        self.pending: tuple | None = None  # a change waiting for one quiet interval
        self._stop = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._loop, name=self.thread_name, daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
            except Exception:  # the thread must outlive any surprise
                log.exception("%s: checking the portal's certificate again failed",
                              tls.CERT_KEY)

    def poll(self) -> None:
        state = tls.files_state(self.config)  # before the check: a change during it is seen
        if state == self.seen:
            self.pending = None
        elif state != self.pending:
            self.pending = state
        else:
            self.pending = None
            self.seen = state
            self._reload()

    def _reload(self) -> None:
        raise NotImplementedError


class _Renewals(_CertificateFiles):
    """Follows the renewals of the portal's certificate while the https portal runs.

    Once the files have changed and settled (_CertificateFiles), it re-runs the check
    done at start (tls.load). Passed: the adapter gets the new context, one
    assignment (connections already wrapped keep theirs), and an info line says so.
    Refused: the certificate in use stays, one error says why, and the files are checked
    again only once they change again. A thread rather than a check in the adapter's
    wrap: the check never runs in cheroot's accept loop, the log answers within seconds
    even with no phone about, and the expiry warning is repeated once a day.
    """

    thread_name = "portal-tls-renewals"

    def __init__(self, config: Config, adapter: Any, checked: tls.PortalTls, *,
                 cafile: str | Path | None, interval: float) -> None:
        super().__init__(config, cafile=cafile, interval=interval)
        self.adapter = adapter
        self.current = checked
        self.failed = False
        # portal_servers has just warned if it expires soon
        self.warned_at = time.monotonic() if tls.expires_soon(checked) else None

    def poll(self) -> None:
        super().poll()
        if tls.expires_soon(self.current) and (
                self.warned_at is None
                or time.monotonic() - self.warned_at >= WARN_EVERY_SECONDS):
            _warn_expiry(self.current)
            self.warned_at = time.monotonic()

    def _reload(self) -> None:
        try:
            new = tls.load(self.config, cafile=self.cafile)
        except tls.TlsError as exc:
            self.failed = True
            log.error("the portal keeps its current certificate (it expires on %s): %s",
                      self.current.not_after.date().isoformat(), exc)
            return
        renewed = (new.serial, new.not_after) != (self.current.serial, self.current.not_after)
        self.adapter.context = new.context
        self.current = new
        if renewed:
            log.info("%s: the portal now serves the renewed certificate; it expires on %s",
                     tls.CERT_KEY, new.not_after.date().isoformat())
            self.warned_at = None  # warn at once if this one expires soon too
        elif self.failed:
            log.info("%s: the certificate files pass again; the portal's certificate is "
                     "unchanged (it expires on %s)", tls.CERT_KEY,
                     new.not_after.date().isoformat())
        self.failed = False


class _Refused(_CertificateFiles):
    """Watches the certificate refused at start while the portal is on http only.

    Once the files have changed and settled (_CertificateFiles), it re-runs the check
    done at start (tls.load). Passed: the https portal starts, as it would have at start
    (with its own _Renewals from then on), then the portal's links turn to https, in that
    order (never a link to an https portal not yet there); an info line says so and this
    watch ends. Refused: the start's error line again, with the new reason. The files are
    also checked again every `recheck` seconds while they do not change (the box's clock
    set right after the start, a trust store updated), logged only if the reason is not
    the one last logged. In the process, not by a restart: the panel and the portal go
    on, and the portal's links are one value (portal_url) its requests read each time.
    The gateway needs nothing: DHCP option 114 and the box's port 443 already lead to
    the https portal (from portal_url), refused until now.
    `close()` also closes the https portal it started (`.secure`).
    """

    def __init__(self, config: Config, portal: Any, *, cafile: str | Path | None,
                 interval: float, seen: tuple, reason: str,
                 recheck: float = RECHECK_REFUSED_SECONDS) -> None:
        super().__init__(config, cafile=cafile, interval=interval)
        self.portal = portal
        self.seen = seen  # the files as the start's check read them
        self.reason, self.logged_files = reason, seen  # the refusal last logged
        self.recheck = recheck
        self.checked_at = time.monotonic()
        self.secure: Any | None = None
        self._lock = threading.Lock()  # close() never misses an https portal starting

    def close(self) -> None:
        with self._lock:
            self.stop()
            if self.secure is not None:
                self.secure.close()

    def poll(self) -> None:
        super().poll()
        if not self._stop.is_set() and time.monotonic() - self.checked_at >= self.recheck:
            self._reload()

    def _reload(self) -> None:
        self.checked_at = time.monotonic()
        try:
            checked = tls.load(self.config, cafile=self.cafile)
        except tls.TlsError as exc:
            if str(exc) != self.reason or self.seen != self.logged_files:
                log.error("the portal is served over http only: %s", exc)
            self.reason, self.logged_files = str(exc), self.seen
            return
        g = self.config.gateway
        with self._lock:
            if self._stop.is_set():
                return
            secure = _secure_portal(self.config, self.portal, checked, cafile=self.cafile,
                                    interval=self.interval)
            if secure is None:  # its port is taken (logged): tried again at the next check
                return
            threading.Thread(target=secure.run, name="portal-tls", daemon=True).start()
            self.secure = secure
            self.portal.flask_app.extensions["portal_url"] = g.portal_url
            self.stop()  # the https portal's _Renewals follows the files from now on
        log.info("%s: the certificate files pass now: the captive portal is served over "
                 "HTTPS on %s:%d, its certificate expires on %s", tls.CERT_KEY,
                 self.config.web_listen, secure.bound_port,
                 checked.not_after.date().isoformat())
        if tls.expires_soon(checked):
            _warn_expiry(checked)


def _secure_portal(config: Config, portal: Any, checked: tls.PortalTls, *,
                   cafile: str | Path | None, interval: float) -> Any | None:
    """The https portal for `portal`'s app with the certificate `checked`, bound, with its
    _Renewals; None (logged) when its port cannot be bound."""
    g = config.gateway
    try:
        secure = make_portal_tls_server(config, config.web_listen, g.portal_tls_port,
                                        app=portal.flask_app, context=checked.context)
    except OSError as exc:
        log.error("the portal is served over http only: gateway.portal_tls_port %d: %s",
                  g.portal_tls_port, exc)
        return None
    secure.renewals = _Renewals(config, secure.ssl_adapter, checked, cafile=cafile,
                                interval=interval)
    return secure


def _warn_expiry(checked: tls.PortalTls) -> None:
    log.warning("%s: the portal's certificate expires on %s: renew it",
                tls.CERT_KEY, checked.not_after.date().isoformat())


def portal_servers(
    config: Config,
    *,
    registry: CollectorRegistry | None = None,
    cafile: str | Path | None = None,
    reload_seconds: float = RELOAD_SECONDS,
    recheck_seconds: float = RECHECK_REFUSED_SECONDS,
) -> tuple[Any, Any | None]:
    """The portal's http server, and its https one when portal_url is https and the
    certificate passes (web.tls; `cafile` replaces the system's authorities, for tests).

    A certificate refused (missing, unreadable, expired, for another name, a key that
    is not its own) is logged with the config key and the portal is served over http
    only, its links then http://<name>/: neither the portal nor the panel stop for it.
    While the https portal runs, a renewed certificate is taken without a restart
    (_Renewals, files stat'ed every `reload_seconds`); once a refused certificate's files
    are fixed, or they pass one of its checks every `recheck_seconds` (the clock set
    right), the https portal starts without a restart (`portal.tls_watch`, a _Refused
    to start with the portal and close with it; None when there is nothing to watch).
    """
    g = config.gateway
    http_url = "http://" + g.portal_url.removeprefix("https://")  # the links without TLS
    portal_url: str | None = None
    checked: tls.PortalTls | None = None
    refused: tuple[tuple, str] | None = None  # the files the start refused, and why
    if tls.portal_name(config):
        state = tls.files_state(config)  # before the check: a change during it is seen
        try:
            checked = tls.load(config, cafile=cafile)
        except tls.TlsError as exc:
            log.error("the portal is served over http only: %s", exc)
            portal_url = http_url
            refused = (state, str(exc))
    if checked and tls.expires_soon(checked):
        _warn_expiry(checked)
    portal = make_portal_server(config, config.web_listen, g.portal_port,
                                registry=registry, portal_url=portal_url)
    portal.tls_watch = None
    secure = None
    if checked:
        secure = _secure_portal(config, portal, checked, cafile=cafile,
                                interval=reload_seconds)
        if secure is None:  # no https portal: no https link either
            portal.flask_app.extensions["portal_url"] = http_url
    elif refused is not None:
        portal.tls_watch = _Refused(config, portal, cafile=cafile, interval=reload_seconds,
                                    seen=refused[0], reason=refused[1],
                                    recheck=recheck_seconds)
    return portal, secure


def make_metrics_server(config: Config, source: Any) -> Any:
    """Serve the panel's metrics on config.metrics_listen:config.web_metrics_port (loopback).

    `source` is what make_server returned, a Flask app from create_app, or a registry.
    Returns the HTTP server (running in a daemon thread): `.server_port` is the bound
    port (0 in the config picks a free one) and `.shutdown()` stops it.
    """
    if isinstance(source, CollectorRegistry):
        registry = source
    else:
        app = getattr(source, "flask_app", source)
        registry = app.extensions["metrics_registry"]
    server, _thread = start_http_server(
        config.web_metrics_port, addr=config.metrics_listen, registry=registry
    )
    return server


def serve(config: Config) -> None:
    """Run the panel until interrupted, with its metrics on the loopback port."""
    app = create_app(config)
    make_metrics_server(config, app)
    server = make_server(config, config.web_listen, config.web_port, app=app)
    portal, secure = portal_servers(config, registry=app.extensions["metrics_registry"])
    threading.Thread(target=portal.run, name="portal", daemon=True).start()
    log.info("captive portal listening on %s:%d", config.web_listen, portal.bound_port)
    if portal.tls_watch is not None:
        portal.tls_watch.start()  # starts the https portal once its files are fixed
    if secure is not None:
        threading.Thread(target=secure.run, name="portal-tls", daemon=True).start()
        log.info("captive portal over HTTPS listening on %s:%d", config.web_listen,
                 secure.bound_port)
    log.info(
        "panel listening on %s:%d, metrics on %s:%d",
        config.web_listen, server.bound_port, config.metrics_listen, config.web_metrics_port,
    )
    # systemd (Type=notify): ready once bound; the watchdog is pinged only while the panel
    # answers its own login page, so a wedged server gets restarted.
    notify("READY=1")
    interval = watchdog_interval()
    if interval:
        Watchdog(http_probe(server.url + "login"), interval).start()
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        if secure is not None:
            secure.close()
        if portal.tls_watch is not None:
            portal.tls_watch.close()
        portal.close()
        server.close()
