"""Serving the panel with waitress: pure Python, threaded, light enough for a Pi.

`make_server` returns the server object (run it in a thread, close it) for the demo
and the tests; `serve` is what the systemd unit runs.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import waitress
from flask import Flask
from prometheus_client import CollectorRegistry, start_http_server

from appliance.config import Config
from appliance.sdnotify import notify
from appliance.watchdog import Watchdog, http_probe, watchdog_interval
from appliance.web import create_app

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
    portal = make_portal_server(
        config,
        config.web_listen,
        config.gateway.portal_port,
        registry=app.extensions["metrics_registry"],
    )
    threading.Thread(target=portal.run, name="portal", daemon=True).start()
    log.info("captive portal listening on %s:%d", config.web_listen, portal.bound_port)
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
        portal.close()
        server.close()
