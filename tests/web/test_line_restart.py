"""The Line page just after the link service restarted: the real link service (on the
emulated line) behind the real socket, its real database, the page in French and English.

Until this run's probes decide, the page shows the state the previous run ended with
and says so, as `telecentre link status` and the `telecentre_link_up` gauges do.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient

from appliance.config import Config
from appliance.ipc import CommandServer
from appliance.link.emulated import EmulatedLine, LineSettings
from appliance.link.service import LinkService


class Clock:
    """Wall time from now on, moved on by the service's sleeps: nothing waits."""

    def __init__(self) -> None:
        self.offset = 0.0

    def wall(self) -> float:
        return time.time() + self.offset

    def mono(self) -> float:
        return 1000.0 + self.offset

    def sleep(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture
def make_link(config: Config, conn) -> Iterator:
    made: list[LinkService] = []
    clock = Clock()  # one clock for every run: a restart comes later

    def make(*faults: str) -> LinkService:
        line = EmulatedLine(anchors=config.link.anchors, settings=LineSettings(loss=0),
                            rng=random.Random(2), clock=clock.mono, sleep=clock.sleep)
        for fault in faults:
            line.break_(fault)
        service = LinkService(config, line=line, wall=clock.wall, clock=clock.mono,
                              sleep=clock.sleep, rng=random.Random(2))
        service.server = CommandServer(config.link_socket, service.handlers()).start()
        made.append(service)
        return service

    yield make
    for service in made:
        if service.server is not None:
            service.server.stop()
            service.server = None


def steps(service: LinkService, n: int) -> None:
    for _ in range(n):
        service.step()
        service.sleep(10)


def test_after_a_restart_the_page_says_the_state_is_the_previous_runs(
        admin_client: FlaskClient, make_link) -> None:
    first = make_link("access")
    steps(first, 5)
    assert first.status()["outage"]["cause"] == "access"
    first.stop()

    second = make_link()  # the line came back while the monitor was away
    html = admin_client.get("/line").get_data(as_text=True).replace("&#39;", "'")
    assert "La ligne était coupée au dernier relevé (" in html
    assert "avant le redémarrage du moniteur de ligne. Nouvelle vérification en cours." in html
    assert "la ligne de l'opérateur est coupée" in html
    assert 'class="line-state state-down"' in html
    api = admin_client.get("/api/line").get_json()
    assert api["rechecking"] is True and api["up"] is False and api["cause"] == "access"
    admin_client.set_cookie("lang", "en")
    html = admin_client.get("/line").get_data(as_text=True)
    assert "The line was down at the last check (" in html
    assert "before the line monitor restarted. Checking it again now." in html
    # The gauges say the same meanwhile.
    assert second.registry.get_sample_value("telecentre_link_up", {"layer": "access"}) == 0

    steps(second, 3)  # this run's own verdict: up
    html = admin_client.get("/line").get_data(as_text=True)
    assert "The line is up" in html and "last check" not in html
    admin_client.set_cookie("lang", "fr")
    html = admin_client.get("/line").get_data(as_text=True)
    assert "La ligne fonctionne" in html and "dernier relevé" not in html
    assert admin_client.get("/api/line").get_json()["rechecking"] is False
    assert second.registry.get_sample_value("telecentre_link_up", {"layer": "access"}) == 1
    second.stop()

    third = make_link()  # up at the stop: up, as of then, until the probes decide
    html = admin_client.get("/line").get_data(as_text=True)
    assert "La ligne fonctionnait au dernier relevé (" in html
    assert 'class="line-state state-up"' in html
    steps(third, 3)
    assert "La ligne fonctionne" in admin_client.get("/line").get_data(as_text=True)
    third.stop()
