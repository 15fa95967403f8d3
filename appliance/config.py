"""Site configuration: one TOML file, validated at start.

Every error names the file, the key, the bad value and what was expected, so an
admin who mistyped a line can fix it without reading code.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import tomllib
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from appliance.door.policy import Closure, Plan, Window

DEFAULT_PATH = Path("/etc/telecentre/telecentre.toml")


class ConfigError(ValueError):
    """A configuration file that cannot be used, with a message for the admin."""


@dataclass(frozen=True)
class Pins:
    lock: int = 17
    door_contact: int = 27
    exit_button: int = 22
    led_green: int = 5
    led_red: int = 6
    buzzer: int = 13
    reader_reset: int = 25
    reader_irq: int | None = 24


@dataclass(frozen=True)
class ReaderConfig:
    spi_bus: int = 0
    spi_device: int = 0
    poll_interval: float = 0.05


@dataclass(frozen=True)
class DoorConfig:
    relay_active_high: bool = True
    lock_mode: str = "fail-secure"
    unlock_seconds: float = 5.0
    held_open_seconds: float = 60.0
    card_mode: str = "token"
    enrollment_seconds: float = 60.0
    unknown_card_limit: int = 5
    unknown_card_lockout_seconds: float = 60.0

    @property
    def fail_safe(self) -> bool:
        return self.lock_mode == "fail-safe"


@dataclass(frozen=True)
class LinkConfig:
    """The line monitor: what to probe, the contract, how and when to test throughput.

    Empty `gateway`, `isp_hop` and `resolver` mean "find it": the default route, a
    traceroute, /etc/resolv.conf.
    """

    wan_interface: str = "eth0"
    probe_interval: float = 10.0
    probe_timeout: float = 1.0
    gateway: str = ""
    isp_hop: str = ""
    anchors: tuple[str, ...] = ("1.1.1.1", "9.9.9.9")
    resolver: str = ""
    dns_names: tuple[str, ...] = ("wikipedia.org",)
    down_after: int = 3
    up_after: int = 3
    contracted_download_mbps: float = 30.0
    contracted_upload_mbps: float = 1.0
    scheduled_tests: bool = True
    test_interval_hours: int = 4
    test_backend: str = "iperf3"
    iperf3_server: str = ""
    iperf3_port: int = 5201
    speedtest_server: int = 0
    test_seconds: float = 8.0
    monthly_budget_gb: float = 2.0
    # "real", or "emulated": a modelled 30/1 Mbit/s line (appliance/link/emulated.py).
    line: str = "real"


@dataclass(frozen=True)
class WifiClass:
    """One class of Wi-Fi user (guest or member): daily quota, rates, policy when spent."""

    daily_quota_mb: int
    down_mbit: float
    up_mbit: float
    when_spent: str


@dataclass(frozen=True)
class GatewayConfig:
    """The Wi-Fi gateway: interfaces, the LAN's address, the portal, the classes."""

    lan_interface: str = "wlan0"
    wan_interface: str = "eth0"
    lan_address: str = "10.42.0.1/24"
    lan_is_bridge: bool = False
    portal_port: int = 8088
    blocked_networks: tuple[str, ...] = (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "169.254.0.0/16",
    )
    nft_path: str = "/usr/sbin/nft"
    # "kernel" (nftables, tc, the neighbour table); "dry-run": everything in memory with
    # emulated devices (appliance/gateway/dryrun.py), for the demo and tests only.
    backend: str = "kernel"
    persist_seconds: float = 60.0
    # DHCP on the LAN (dnsmasq): first and last leased address ("" = derived from
    # lan_address), lease time, and the resolvers dnsmasq forwards to (empty = the box's).
    dhcp_first: str = ""
    dhcp_last: str = ""
    lease_minutes: int = 60
    upstream_dns: tuple[str, ...] = ()
    # Sharing the line (appliance/gateway/shaping.py): the line's speeds, the guests'
    # share while members are busy. `upload_ifb` is no longer used (upload is shaped on
    # the WAN interface since session 4 of issue 5); still read so older configs load.
    shaping: bool = True
    line_down_mbit: float = 30.0
    line_up_mbit: float = 1.0
    guest_share_percent: float = 40.0
    upload_ifb: str = "ifb-telecentre"
    # Devices on the LAN (appliance/gateway/presence.py): dnsmasq's lease file, an ARP
    # probe of each authorized device every presence_interval_seconds, and the silence
    # after which it has left (its session ends, its rules go).
    lease_file: str = "/var/lib/misc/dnsmasq.leases"
    # The portal's address as devices see it ("" = http://<lan_address>/): a name the
    # box's dnsmasq answers with the box's LAN address, used for DHCP option 114 and links.
    portal_url: str = ""
    # HTTPS (portal_url "https://name/"): the certificate for that name (full chain, PEM)
    # and its key, read by the web service at start; it serves them on portal_tls_port,
    # where the gateway redirects the LAN's connections to the box's port 443.
    tls_certificate: str = ""
    tls_key: str = ""
    portal_tls_port: int = 8443
    presence_interval_seconds: float = 30.0
    absent_after_seconds: float = 600.0
    guest: WifiClass = WifiClass(1000, 5.0, 0.5, "block")
    member: WifiClass = WifiClass(20000, 25.0, 1.0, "throttle")


@dataclass(frozen=True)
class WifiNetwork:
    """One network (SSID) of the box's access point; every one leads to the captive portal.

    `passphrase` "" is an open network; otherwise 8 to 63 printable ASCII characters or
    64 hex digits (a raw WPA2 key). `security`: "wpa2", "wpa2-wpa3" (WPA3-SAE too, for
    the devices that have it) or "wpa3" (SAE only). `role` says who the network is for
    ("members" or "guests"), for the admin; the portal decides the class, not the SSID.
    """

    ssid: str
    passphrase: str = ""
    security: str = "wpa2"
    role: str = "members"


@dataclass(frozen=True)
class WifiConfig:
    """[wifi]: the access point hostapd runs on the Pi's radio (none without networks)."""

    interface: str = "wlan0"
    country: str = "FR"
    channel: int = 6
    networks: tuple[WifiNetwork, ...] = ()


@dataclass(frozen=True)
class Config:
    path: Path | None
    site_name: str = "Télécentre"
    timezone: str = "Europe/Paris"
    language: str = "fr"
    state_dir: Path = Path("/var/lib/telecentre")
    runtime_dir: Path = Path("/run/telecentre")
    backend: str = "pi"
    pins: Pins = field(default_factory=Pins)
    reader: ReaderConfig = field(default_factory=ReaderConfig)
    door: DoorConfig = field(default_factory=DoorConfig)
    plans: dict[str, Plan] = field(default_factory=dict)
    closures: tuple[Closure, ...] = ()
    access_log_days: int = 90
    # The Wi-Fi legal log (CPCE L34-1): one year, then deleted.
    wifi_sessions_days: int = 365
    web_listen: str = "0.0.0.0"
    web_port: int = 8080
    metrics_listen: str = "127.0.0.1"
    door_metrics_port: int = 9101
    web_metrics_port: int = 9102
    link: LinkConfig = field(default_factory=LinkConfig)
    link_metrics_port: int = 9103
    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    gateway_metrics_port: int = 9104
    wifi: WifiConfig = field(default_factory=WifiConfig)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def db_path(self) -> Path:
        return self.state_dir / "telecentre.db"

    @property
    def secret_path(self) -> Path:
        return self.state_dir / "site.key"

    @property
    def door_socket(self) -> Path:
        return self.runtime_dir / "door.sock"

    @property
    def link_socket(self) -> Path:
        return self.runtime_dir / "link.sock"

    @property
    def gateway_socket(self) -> Path:
        return self.runtime_dir / "gateway.sock"

    @property
    def board_path(self) -> Path:
        """Shared state of the emulated board (pin levels), for the emulate command."""
        return self.runtime_dir / "board.json"

    def with_paths(self, state_dir: Path, runtime_dir: Path) -> Config:
        return replace(self, state_dir=state_dir, runtime_dir=runtime_dir)


def default_config_text() -> str:
    """The commented default configuration that `telecentre init` writes."""
    return resources.files("appliance").joinpath("default_config.toml").read_text("utf-8")


class _Reader:
    """Typed access to one TOML table, recording which keys were used."""

    def __init__(self, source: str, data: dict[str, Any], prefix: str) -> None:
        self.source = source
        self.data = data
        self.prefix = prefix
        self.used: set[str] = set()

    def _key(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def fail(self, key: str, value: Any, expected: str) -> ConfigError:
        return ConfigError(
            f"{self.source}: key '{self._key(key)}' has the value {value!r}; expected {expected}."
        )

    def get(self, key: str, default: Any) -> Any:
        self.used.add(key)
        return self.data.get(key, default)

    def integer(self, key: str, default: int, lo: int, hi: int) -> int:
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise self.fail(key, value, f"a whole number from {lo} to {hi}")
        return value

    def number(self, key: str, default: float, lo: float, hi: float, unit: str = "") -> float:
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
            raise self.fail(key, value, f"a number from {lo:g} to {hi:g}{unit}")
        return float(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, value, "true or false")
        return value

    def string(self, key: str, default: str, *, choices: tuple[str, ...] = (), maxlen=200) -> str:
        value = self.get(key, default)
        if not isinstance(value, str) or not value.strip() or len(value) > maxlen:
            raise self.fail(key, value, f"a non-empty text of at most {maxlen} characters")
        if choices and value not in choices:
            raise self.fail(key, value, "one of " + ", ".join(f'"{c}"' for c in choices))
        return value

    def table(self, key: str) -> _Reader:
        value = self.get(key, {})
        if not isinstance(value, dict):
            raise self.fail(key, value, "a table ([section])")
        return _Reader(self.source, value, self._key(key) + ".")

    def check_unknown(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            known = ", ".join(sorted(self.used))
            raise ConfigError(
                f"{self.source}: unknown key '{self._key(unknown[0])}' "
                f"(a typo?); known keys here: {known}."
            )


def _pin(r: _Reader, key: str, default: int | None, *, optional: bool = False) -> int | None:
    value = r.get(key, default)
    if optional and value is False:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 2 <= value <= 27:
        expected = "a BCM GPIO number from 2 to 27" + (" or false" if optional else "")
        raise r.fail(key, value, expected)
    return value


def _ipv4(r: _Reader, key: str, value: Any, *, empty_ok: bool = False) -> str:
    if empty_ok and value == "":
        return ""
    try:
        return str(ipaddress.IPv4Address(value))
    except (ipaddress.AddressValueError, ValueError, TypeError):
        raise r.fail(key, value, 'an IPv4 address such as "192.0.2.10"'
                     + (' or "" to find it' if empty_ok else "")) from None


def _texts(r: _Reader, key: str, default: tuple[str, ...], expected: str) -> tuple[str, ...]:
    value = r.get(key, list(default))
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise r.fail(key, value, expected)
    return tuple(value)


def _link(r: _Reader) -> LinkConfig:
    """The [link] section: the line monitor."""
    interval = r.number("probe_interval", 10, 1, 600, " seconds")
    timeout = r.number("probe_timeout", 1.0, 0.05, 5, " seconds")
    if timeout * 3 > interval:
        raise r.fail("probe_timeout", timeout, f"at most a third of probe_interval ({interval:g})")
    anchors = _texts(r, "anchors", LinkConfig.anchors, 'a list of IPv4 addresses like ["9.9.9.9"]')
    anchors = tuple(_ipv4(r, f"anchors[{i}]", a) for i, a in enumerate(anchors))
    if len(anchors) < 2:
        raise r.fail("anchors", list(anchors), "two or more internet anchors")
    hours = r.integer("test_interval_hours", 4, 1, 24)
    if 24 % hours:
        raise r.fail("test_interval_hours", hours, "1, 2, 3, 4, 6, 8, 12 or 24")
    backend = r.string("test_backend", "iperf3", choices=("iperf3", "speedtest"))
    iperf3_server = r.get("iperf3_server", "")
    if not isinstance(iperf3_server, str) or len(iperf3_server) > 253 or (
        iperf3_server and not all(c.isalnum() or c in ".-:" for c in iperf3_server)
    ):
        raise r.fail("iperf3_server", iperf3_server, "a host name or address")
    names = _texts(r, "dns_names", LinkConfig.dns_names, 'a list of names like ["wikipedia.org"]')
    link = LinkConfig(
        wan_interface=r.string("wan_interface", "eth0", maxlen=15),
        probe_interval=interval,
        probe_timeout=timeout,
        gateway=_ipv4(r, "gateway", r.get("gateway", ""), empty_ok=True),
        isp_hop=_ipv4(r, "isp_hop", r.get("isp_hop", ""), empty_ok=True),
        anchors=anchors,
        resolver=_ipv4(r, "resolver", r.get("resolver", ""), empty_ok=True),
        dns_names=names,
        down_after=r.integer("down_after", 3, 1, 100),
        up_after=r.integer("up_after", 3, 1, 100),
        contracted_download_mbps=r.number("contracted_download_mbps", 30, 0.01, 100000, " Mbit/s"),
        contracted_upload_mbps=r.number("contracted_upload_mbps", 1, 0.01, 100000, " Mbit/s"),
        scheduled_tests=r.boolean("scheduled_tests", True),
        test_interval_hours=hours,
        test_backend=backend,
        iperf3_server=iperf3_server,
        iperf3_port=r.integer("iperf3_port", 5201, 1, 65535),
        speedtest_server=r.integer("speedtest_server", 0, 0, 10**9),
        test_seconds=r.number("test_seconds", 8, 2, 60, " seconds"),
        monthly_budget_gb=r.number("monthly_budget_gb", 2, 0, 10000, " GB"),
        line=r.string("line", "real", choices=("real", "emulated")),
    )
    r.check_unknown()
    return link


def _wifi_class(r: _Reader, default: WifiClass) -> WifiClass:
    """[gateway.guest] or [gateway.member]."""
    wc = WifiClass(
        daily_quota_mb=r.integer("daily_quota_mb", default.daily_quota_mb, 1, 10_000_000),
        down_mbit=r.number("down_mbit", default.down_mbit, 0.1, 100000, " Mbit/s"),
        up_mbit=r.number("up_mbit", default.up_mbit, 0.1, 100000, " Mbit/s"),
        when_spent=r.string("when_spent", default.when_spent, choices=("block", "throttle")),
    )
    r.check_unknown()
    return wc


def _portal_url(r: _Reader) -> str:
    """"" or http(s)://name/ (a DNS name, no port or path): the portal as devices see it.

    https is served by the portal itself (the web service, with tls_certificate and
    tls_key): the portal identifies a device by the address its request comes from, so
    TLS cannot end in a proxy in front of it.
    """
    value = r.get("portal_url", "")
    if value == "":
        return ""
    expected = ('"" or "http://name/" or "https://name/" with a DNS name such as '
                '"https://wifi.telecentre.fr/"')
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise r.fail("portal_url", value, expected)
    scheme, _, rest = value.partition("://")
    host = rest.removesuffix("/")
    labels = host.split(".")
    if (not 1 <= len(host) <= 253 or len(labels) < 2 or any(
            not 1 <= len(x) <= 63 or x.startswith("-") or x.endswith("-")
            or not all(c.isascii() and (c.isalnum() or c == "-") for c in x) for x in labels)
            or host.replace(".", "").isdigit()):
        raise r.fail("portal_url", value, expected)
    return f"{scheme}://{host.lower()}/"


def _tls_paths(r: _Reader, portal_url: str) -> tuple[str, str]:
    """tls_certificate and tls_key: absolute paths, both given exactly when portal_url is
    https. Only their form is checked here (every service loads this file, and the door
    must not stop for a certificate); the web service checks the files at start."""
    https = portal_url.startswith("https://")
    paths = []
    for key in ("tls_certificate", "tls_key"):
        value = r.get(key, "")
        if not isinstance(value, str) or len(value) > 4096 or (
                value and not value.startswith("/")):
            raise r.fail(key, value, 'an absolute path such as "/etc/telecentre/tls/'
                         + ('fullchain.pem"' if key == "tls_certificate" else 'privkey.pem"'))
        if https and not value:
            what = "key" if key == "tls_key" else "full chain"
            raise r.fail(key, value, f"the path of the certificate's {what} (PEM), since "
                         "portal_url is https")
        if value and not https:
            raise r.fail(key, value, '"" unless portal_url is "https://<the certificate\'s name>/"')
        paths.append(value)
    return paths[0], paths[1]


def _gateway(r: _Reader) -> GatewayConfig:
    """The [gateway] section: the Wi-Fi gateway."""
    d = GatewayConfig()
    lan = r.string("lan_interface", d.lan_interface, maxlen=15)
    wan = r.string("wan_interface", d.wan_interface, maxlen=15)
    for key, value in (("lan_interface", lan), ("wan_interface", wan)):
        if not all(c.isalnum() or c in "_.-@" for c in value):
            raise r.fail(key, value, 'an interface name such as "wlan0"')
    if lan == wan:
        raise r.fail("lan_interface", lan, f"an interface other than wan_interface ({wan})")
    address = r.string("lan_address", d.lan_address, maxlen=18)
    try:
        iface = ipaddress.IPv4Interface(address)
        # At most a /20: a client's shaping class id is its address's low 12 bits.
        if not 20 <= iface.network.prefixlen <= 30 or iface.ip in (
                iface.network.network_address,
                iface.network.broadcast_address):
            raise ValueError
    except ValueError:
        raise r.fail("lan_address", address, 'the box\'s LAN address and prefix (/20 to /30), '
                     '"10.42.0.1/24"') from None
    blocked = _texts(r, "blocked_networks", d.blocked_networks,
                     'a list of IPv4 networks like ["192.168.0.0/16"]')
    for i, net in enumerate(blocked):
        try:
            ipaddress.IPv4Network(net)
        except ValueError:
            raise r.fail(f"blocked_networks[{i}]", net, 'an IPv4 network like "192.168.0.0/16"'
                         ) from None
    dhcp = []
    for key in ("dhcp_first", "dhcp_last"):
        value = _ipv4(r, key, r.get(key, ""), empty_ok=True)
        if value and (
            ipaddress.IPv4Address(value) not in iface.network
            or ipaddress.IPv4Address(value) in (iface.ip, iface.network.network_address,
                                                iface.network.broadcast_address)
        ):
            raise r.fail(key, value, f"a client address inside {iface.network}, not the box's")
        dhcp.append(value)
    if all(dhcp) and ipaddress.IPv4Address(dhcp[0]) > ipaddress.IPv4Address(dhcp[1]):
        raise r.fail("dhcp_last", dhcp[1], f"an address after dhcp_first ({dhcp[0]})")
    ifb = r.string("upload_ifb", d.upload_ifb, maxlen=15)
    if not ifb or not all(c.isalnum() or c in "_.-" for c in ifb) or ifb in (lan, wan):
        raise r.fail("upload_ifb", ifb, 'a new interface name such as "ifb-telecentre"')
    upstream = _texts(r, "upstream_dns", (), 'a list of IPv4 addresses like ["9.9.9.9"]')
    upstream = tuple(_ipv4(r, f"upstream_dns[{i}]", a) for i, a in enumerate(upstream))
    portal_url = _portal_url(r)
    tls_certificate, tls_key = _tls_paths(r, portal_url)
    gw = GatewayConfig(
        lan_interface=lan,
        wan_interface=wan,
        lan_address=str(iface),
        lan_is_bridge=r.boolean("lan_is_bridge", d.lan_is_bridge),
        portal_port=r.integer("portal_port", d.portal_port, 1, 65535),
        blocked_networks=blocked,
        nft_path=r.string("nft_path", d.nft_path, maxlen=4096),
        backend=r.string("backend", d.backend, choices=("kernel", "dry-run")),
        persist_seconds=r.number("persist_seconds", d.persist_seconds, 5, 60, " seconds"),
        dhcp_first=dhcp[0],
        dhcp_last=dhcp[1],
        lease_minutes=r.integer("lease_minutes", d.lease_minutes, 2, 7 * 24 * 60),
        upstream_dns=upstream,
        shaping=r.boolean("shaping", d.shaping),
        line_down_mbit=r.number("line_down_mbit", d.line_down_mbit, 0.1, 100000, " Mbit/s"),
        line_up_mbit=r.number("line_up_mbit", d.line_up_mbit, 0.1, 100000, " Mbit/s"),
        guest_share_percent=r.number("guest_share_percent", d.guest_share_percent, 5, 95, " %"),
        upload_ifb=ifb,
        lease_file=r.string("lease_file", d.lease_file, maxlen=4096),
        portal_url=portal_url,
        tls_certificate=tls_certificate,
        tls_key=tls_key,
        portal_tls_port=r.integer("portal_tls_port", d.portal_tls_port, 1, 65535),
        presence_interval_seconds=r.number("presence_interval_seconds",
                                           d.presence_interval_seconds, 5, 600, " seconds"),
        absent_after_seconds=r.number("absent_after_seconds", d.absent_after_seconds,
                                      60, 86400, " seconds"),
        guest=_wifi_class(r.table("guest"), d.guest),
        member=_wifi_class(r.table("member"), d.member),
    )
    if gw.portal_tls_port == gw.portal_port:
        raise r.fail("portal_tls_port", gw.portal_tls_port,
                     f"a port other than portal_port ({gw.portal_port})")
    r.check_unknown()
    return gw


WIFI_CHANNELS = (*range(1, 14), 36, 40, 44, 48)  # 2.4 GHz 1-13 and 5 GHz without DFS (FR)
WIFI_NETWORKS_MAX = 4


def wifi_key_ok(key: str) -> bool:
    """8 to 63 printable ASCII characters (a WPA passphrase) or 64 hex digits (a raw key)."""
    if len(key) == 64:
        return all(c in "0123456789abcdefABCDEF" for c in key)
    return 8 <= len(key) <= 63 and all(" " <= c <= "~" for c in key)


def _wifi(r: _Reader, gw: GatewayConfig) -> WifiConfig:
    """The [wifi] section: hostapd's access point, checked against [gateway]'s LAN."""
    d = WifiConfig()
    interface = r.string("interface", d.interface, maxlen=15)
    if not all(c.isalnum() or c in "_.-" for c in interface):
        raise r.fail("interface", interface, 'a Wi-Fi interface name such as "wlan0"')
    country = r.string("country", d.country, maxlen=2)
    if len(country) != 2 or not ("A" <= country[0] <= "Z" and "A" <= country[1] <= "Z"):
        raise r.fail("country", country, 'a two-letter country code in capitals, "FR"')
    channel = r.get("channel", d.channel)
    if isinstance(channel, bool) or channel not in WIFI_CHANNELS:
        raise r.fail("channel", channel, "1 to 13 (2.4 GHz) or 36, 40, 44, 48 (5 GHz)")
    raw = r.get("networks", [])
    if not isinstance(raw, list) or len(raw) > WIFI_NETWORKS_MAX:
        raise r.fail("networks", raw, f"at most {WIFI_NETWORKS_MAX} [[wifi.networks]] tables")
    networks: list[WifiNetwork] = []
    for i, item in enumerate(raw):
        n = _Reader(r.source, item if isinstance(item, dict) else {}, f"wifi.networks[{i}].")
        if not isinstance(item, dict):
            raise r.fail(f"networks[{i}]", item, "a [[wifi.networks]] table")
        ssid = n.get("ssid", None)
        if (not isinstance(ssid, str) or not 1 <= len(ssid.encode("utf-8")) <= 32
                or not ssid.isprintable()):
            raise n.fail("ssid", ssid, "a network name of 1 to 32 bytes, no control character")
        if any(x.ssid == ssid for x in networks):
            raise n.fail("ssid", ssid, "a name no other network of the box has")
        key = n.get("passphrase", "")
        if not isinstance(key, str) or (key and not wifi_key_ok(key)):
            raise n.fail("passphrase", "<hidden>", '8 to 63 printable ASCII characters, '
                         '64 hex digits, or "" for an open network (behind the portal)')
        security = n.string("security", "wpa2", choices=("wpa2", "wpa2-wpa3", "wpa3"))
        if security != "wpa2" and len(key) == 64:
            raise n.fail("security", security, '"wpa2" with a 64-hex-digit key (WPA3-SAE '
                         "needs a passphrase)")
        role = n.string("role", "members", choices=("members", "guests"))
        n.check_unknown()
        networks.append(WifiNetwork(ssid=ssid, passphrase=key, security=security, role=role))
    if networks:
        if not gw.lan_is_bridge and interface != gw.lan_interface:
            raise r.fail("interface", interface, f"gateway.lan_interface ({gw.lan_interface}): "
                         "clients must land on the LAN the gateway guards (or set "
                         "gateway.lan_is_bridge and make this interface a port of it)")
        if gw.lan_is_bridge and interface == gw.lan_interface:
            raise r.fail("interface", interface, "the radio, a port of the bridge "
                         f"gateway.lan_interface ({gw.lan_interface}), not the bridge")
        if len(networks) > 1 and not gw.lan_is_bridge:
            raise r.fail("networks", len(networks), "one network, unless gateway.lan_is_bridge "
                         "= true (each extra network joins the bridge)")
        if len(interface) + 2 > 15 and len(networks) > 1:
            raise r.fail("interface", interface, "a name of at most 13 characters with "
                         "several networks")
    r.check_unknown()
    return WifiConfig(interface=interface, country=country, channel=channel,
                      networks=tuple(networks))


def parse(data: dict[str, Any], source: str = "<config>", path: Path | None = None) -> Config:
    """Validate a parsed TOML document and build the Config."""
    root = _Reader(source, data, "")

    site = root.table("site")
    name = site.string("name", "Télécentre", maxlen=80)
    timezone = site.string("timezone", "Europe/Paris")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise site.fail("timezone", timezone, 'an IANA time zone such as "Europe/Paris"') from None
    language = site.string("language", "fr", choices=("fr", "en"))
    site.check_unknown()

    paths = root.table("paths")
    state_dir = Path(paths.string("state_dir", "/var/lib/telecentre", maxlen=4096))
    runtime_dir = Path(paths.string("runtime_dir", "/run/telecentre", maxlen=4096))
    paths.check_unknown()

    hw = root.table("hardware")
    backend = hw.string("backend", "pi", choices=("pi", "emulated"))
    p = hw.table("pins")
    pins = Pins(
        lock=_pin(p, "lock", 17),
        door_contact=_pin(p, "door_contact", 27),
        exit_button=_pin(p, "exit_button", 22),
        led_green=_pin(p, "led_green", 5),
        led_red=_pin(p, "led_red", 6),
        buzzer=_pin(p, "buzzer", 13),
        reader_reset=_pin(p, "reader_reset", 25),
        reader_irq=_pin(p, "reader_irq", 24, optional=True),
    )
    p.check_unknown()
    used: dict[int, str] = {}
    for key, value in vars(pins).items():
        if value is None:
            continue
        if value in used:
            raise ConfigError(
                f"{source}: key 'hardware.pins.{key}' uses GPIO {value}, already used by "
                f"'hardware.pins.{used[value]}'; expected a different pin for each part."
            )
        used[value] = key
    rd = hw.table("reader")
    reader = ReaderConfig(
        spi_bus=rd.integer("spi_bus", 0, 0, 6),
        spi_device=rd.integer("spi_device", 0, 0, 2),
        poll_interval=rd.number("poll_interval", 0.05, 0.01, 1.0, " seconds"),
    )
    rd.check_unknown()
    hw.check_unknown()

    d = root.table("door")
    door = DoorConfig(
        relay_active_high=d.boolean("relay_active_high", True),
        lock_mode=d.string("lock_mode", "fail-secure", choices=("fail-secure", "fail-safe")),
        unlock_seconds=d.number("unlock_seconds", 5, 1, 600, " seconds"),
        held_open_seconds=d.number("held_open_seconds", 60, 5, 3600, " seconds"),
        card_mode=d.string("card_mode", "token", choices=("token", "uid-only")),
        enrollment_seconds=d.number("enrollment_seconds", 60, 10, 600, " seconds"),
        unknown_card_limit=d.integer("unknown_card_limit", 5, 1, 1000),
        unknown_card_lockout_seconds=d.number(
            "unknown_card_lockout_seconds", 60, 1, 3600, " seconds"
        ),
    )
    d.check_unknown()

    plans: dict[str, Plan] = {}
    pt = root.table("plans")
    for plan_name in list(pt.data):
        if not plan_name.replace("-", "").replace("_", "").isalnum() or len(plan_name) > 40:
            raise pt.fail(plan_name, plan_name, "a plan name of letters, digits, - and _")
        t = pt.table(plan_name)
        label = t.string("label", plan_name, maxlen=80)
        always = t.boolean("always", False)
        raw_windows = t.get("windows", [])
        if not isinstance(raw_windows, list) or not all(isinstance(w, str) for w in raw_windows):
            raise t.fail("windows", raw_windows, 'a list of texts like ["mon-fri 08:00-20:00"]')
        windows = []
        for i, text in enumerate(raw_windows):
            try:
                windows.append(Window.parse(text))
            except ValueError as exc:
                raise t.fail(f"windows[{i}]", text, str(exc)) from None
        if not windows and not always:
            raise t.fail("windows", raw_windows, "at least one window, or always = true")
        t.check_unknown()
        plans[plan_name] = Plan(name=plan_name, label=label, windows=tuple(windows), always=always)
    pt.check_unknown()

    closures = []
    raw_closures = root.get("closures", [])
    if not isinstance(raw_closures, list):
        raise root.fail("closures", raw_closures, "a list of [[closures]] tables")
    for i, item in enumerate(raw_closures):
        c = _Reader(source, item if isinstance(item, dict) else {}, f"closures[{i}].")
        start, end = c.get("start", None), c.get("end", None)
        if end is None:
            end = start
        for key, value in (("start", start), ("end", end)):
            if not isinstance(value, dt.date) or isinstance(value, dt.datetime):
                raise c.fail(key, value, "a date written 2026-12-25 (no quotes)")
        if end < start:
            raise c.fail("end", end, f"a date on or after start ({start})")
        label = c.string("label", "Fermeture", maxlen=80)
        c.check_unknown()
        closures.append(Closure(start=start, end=end, label=label))

    link = _link(root.table("link"))
    gateway = _gateway(root.table("gateway"))
    wifi = _wifi(root.table("wifi"), gateway)

    ret = root.table("retention")
    access_log_days = ret.integer("access_log_days", 90, 1, 3650)
    # A year, then deleted: CPCE L34-1 makes a year of Wi-Fi connection data compulsory,
    # and DESIGN and the portal's terms promise deletion after it (366: a leap year).
    wifi_sessions_days = ret.get("wifi_sessions_days", 365)
    if (isinstance(wifi_sessions_days, bool) or not isinstance(wifi_sessions_days, int)
            or not 365 <= wifi_sessions_days <= 366):
        raise ret.fail("wifi_sessions_days", wifi_sessions_days,
                       "365 or 366 (the law requires a year of Wi-Fi sessions and the "
                       "portal's terms promise they are deleted after it)")
    ret.check_unknown()

    web = root.table("web")
    web_listen = web.string("listen", "0.0.0.0")
    web_port = web.integer("port", 8080, 0, 65535)
    web.check_unknown()

    met = root.table("metrics")
    metrics_listen = met.string("listen", "127.0.0.1")
    door_metrics_port = met.integer("door_port", 9101, 0, 65535)
    web_metrics_port = met.integer("web_port", 9102, 0, 65535)
    link_metrics_port = met.integer("link_port", 9103, 0, 65535)
    gateway_metrics_port = met.integer("gateway_port", 9104, 0, 65535)
    met.check_unknown()
    root.check_unknown()

    return Config(
        path=path,
        site_name=name,
        timezone=timezone,
        language=language,
        state_dir=state_dir,
        runtime_dir=runtime_dir,
        backend=backend,
        pins=pins,
        reader=reader,
        door=door,
        plans=plans,
        closures=tuple(closures),
        access_log_days=access_log_days,
        wifi_sessions_days=wifi_sessions_days,
        web_listen=web_listen,
        web_port=web_port,
        metrics_listen=metrics_listen,
        door_metrics_port=door_metrics_port,
        web_metrics_port=web_metrics_port,
        link=link,
        link_metrics_port=link_metrics_port,
        gateway=gateway,
        gateway_metrics_port=gateway_metrics_port,
        wifi=wifi,
    )


def load(path: Path | str) -> Config:
    """Read and validate a configuration file."""
    path = Path(path)
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such file; create one with `telecentre init --config {path}`."
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read ({exc}).") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}.") from None
    return parse(data, str(path), path)
