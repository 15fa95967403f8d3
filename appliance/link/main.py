"""`telecentre link run`: the link service as a process.

It needs CAP_NET_RAW for its ICMP socket and nothing else: no write access outside
the state directory, no other capability (see systemd/).
"""

from __future__ import annotations

import logging

from appliance.config import Config
from appliance.link.probes import NoRawSocket
from appliance.link.service import LinkService
from appliance.runtime import serve_metrics, serve_until_stopped
from appliance.sdnotify import notify

log = logging.getLogger(__name__)


# Like a configuration error: a restart cannot fix it (RestartPreventExitStatus=2).
EXIT_NO_PRIVILEGE = 2


def run(config: Config) -> int:
    try:
        service = LinkService(config)
    except NoRawSocket as exc:
        log.error("link service not started: %s", exc)
        notify(f"STATUS=not started: {exc}")
        return EXIT_NO_PRIVILEGE
    service.start()
    metrics = serve_metrics(service.registry, config.metrics_listen, config.link_metrics_port)
    log.info(
        "link service running; metrics on %s:%d", config.metrics_listen, metrics.server_port
    )
    return serve_until_stopped("line monitor ready", service.stop, metrics.shutdown)
