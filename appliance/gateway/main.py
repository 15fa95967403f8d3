"""`telecentre gateway`: the gateway service as a process."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def run(config) -> int:
    import ipaddress

    from appliance.gateway import dnsmasq, hostapd
    from appliance.gateway.lan import Lan
    from appliance.gateway.presence import ArpProber
    from appliance.gateway.ruleset import NftRunner
    from appliance.gateway.service import GatewayService
    from appliance.gateway.shaping import Shaper, TcRunner, line_from_config
    from appliance.runtime import serve_metrics, serve_until_stopped

    # dnsmasq starts after us (its unit says so) and reads what we write here; when this
    # changes it (only then is the file rewritten), telecentre-dnsmasq-reload.path
    # restarts dnsmasq on it.
    path = dnsmasq.write(config)
    log.info("dnsmasq configuration written to %s", path)
    # hostapd too (its unit starts after us); no networks in [wifi]: no access point.
    ap = hostapd.write(config)
    if ap is None:
        log.info("no [[wifi.networks]]: no hostapd configuration, no access point")
    else:
        log.info("hostapd configuration written to %s", ap)
    dry = None
    if config.gateway.backend == "dry-run":
        # Demo and tests only (chosen in the config): tables in memory, emulated devices.
        from appliance.gateway.dryrun import DryRun

        dry = DryRun(config).start()
        service = dry.service
    else:
        shaper = None
        if config.gateway.shaping:
            shaper = Shaper(
                line_from_config(config.gateway), TcRunner(),
                lan_is_bridge=config.gateway.lan_is_bridge,
            )
        box = ipaddress.IPv4Interface(config.gateway.lan_address)
        # Presence: ARP probes on the LAN (CAP_NET_RAW), answered as the box's LAN address.
        prober = ArpProber(config.gateway.lan_interface, box.ip)
        lan = Lan(config.gateway.lan_interface, box, bridge=config.gateway.lan_is_bridge)
        service = GatewayService(
            config, NftRunner((config.gateway.nft_path,)), shaper=shaper, prober=prober, lan=lan
        ).start()
    metrics = serve_metrics(service.registry, config.metrics_listen, config.gateway_metrics_port)
    log.info(
        "gateway running (LAN %s, WAN %s); metrics on %s:%d",
        config.gateway.lan_interface,
        config.gateway.wan_interface,
        config.metrics_listen,
        metrics.server_port,
    )
    # Stopping saves the counts; the table stays for the next start.
    return serve_until_stopped("gateway ready", (dry or service).stop, metrics.shutdown)
