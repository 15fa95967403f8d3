"""First boot of the SD-card image: apply the first-boot file, then remove it.

The association writes `telecentre-firstboot.toml` on the card's boot partition (FAT, readable
from any PC). At boot, before any telecentre service, this module:

- writes the site configuration (/etc/telecentre/telecentre.toml on the data partition),
- runs `telecentre init` as the service user with the admin password from the file (or sets
  the given password hash): the image ships with no account and no password at all,
- writes the metrics agent's configuration (site label, remote_write URL and credentials),
  the WAN's network settings (the Wi-Fi networks go in the site configuration),
- makes the SSH host keys (never shipped in the image) and installs authorized keys,
- grows the data partition to the end of the card,
- and overwrites then deletes the file, so no secret stays on the FAT partition; a short
  report without secrets replaces it (`telecentre-firstboot-report.txt`).

A file with an error is kept and the report says which key is wrong, in French and English.
Run by `telecentre-firstboot.service` as `python -m appliance.firstboot`.
"""

from __future__ import annotations

import dataclasses
import grp
import ipaddress
import json
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from appliance import config as config_mod

FILE_NAME = "telecentre-firstboot.toml"
REPORT_NAME = "telecentre-firstboot-report.txt"
MIN_PASSWORD = 10
# Werkzeug's hash formats (what `telecentre` stores): method$salt$hash.
HASH_RE = re.compile(r"^(scrypt:\d+:\d+:\d+|pbkdf2:sha256:\d+)\$[^$\s]+\$[0-9a-f]+$")

Runner = Callable[..., Any]


class FirstBootError(Exception):
    """A mistake in the first-boot file, said in French and in English."""

    def __init__(self, key: str, fr: str, en: str) -> None:
        super().__init__(f"{FILE_NAME}: {key}: {en}")
        self.key, self.fr, self.en = key, fr, en

    def report(self) -> str:
        return (
            f"ERREUR dans {FILE_NAME}, clé « {self.key} » : {self.fr}\n"
            f"ERROR in {FILE_NAME}, key '{self.key}': {self.en}\n"
            "Corrigez le fichier et redémarrez. / Fix the file and restart.\n"
        )


@dataclasses.dataclass(frozen=True)
class Paths:
    """Where first boot reads and writes; tests point every one of them into a tmp dir."""

    boot: Path = Path("/boot/firmware")
    etc: Path = Path("/etc/telecentre")
    ssh: Path = Path("/data/ssh")
    data_mount: Path = Path("/data")
    cmdline: Path = Path("/proc/cmdline")
    model: Path = Path("/proc/device-tree/model")
    spidev: Path = Path("/dev/spidev0.0")
    runtime: Path = Path("/run/telecentre")
    telecentre: Path = Path("/opt/telecentre/bin/telecentre")
    service_user: str = "telecentre"

    @property
    def file(self) -> Path:
        return self.boot / FILE_NAME

    @property
    def config(self) -> Path:
        return self.etc / "telecentre.toml"


@dataclasses.dataclass(frozen=True)
class Wan:
    interface: str = "eth0"
    mode: str = "dhcp"
    address: str = ""
    gateway: str = ""
    dns: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class FirstBoot:
    """The first-boot file, validated."""

    site_name: str
    timezone: str | None
    language: str | None
    admin: str
    password: str | None
    password_hash: str | None
    hardware: str | None
    wan: Wan
    wifi_country: str
    wifi: tuple[dict[str, str], ...]
    metrics_site: str
    remote_write: dict[str, Any] | None
    ssh_keys: tuple[str, ...]


def _text(data: dict[str, Any], section: str, key: str, default: str | None = None,
          *, maxlen: int = 200) -> str | None:
    value = data.get(section, {}).get(key, default)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > maxlen or any(c in value for c in "\r\n\0"):
        raise FirstBootError(
            f"{section}.{key}",
            f"un texte d'une ligne est attendu (au plus {maxlen} caractères)",
            f"expected one line of text (at most {maxlen} characters)",
        )
    return value


def parse(text: str) -> FirstBoot:
    """Validate the first-boot file's text; FirstBootError names the key at fault."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FirstBootError(
            "-", f"fichier illisible ({exc})", f"unreadable file ({exc})"
        ) from None
    known = {"site", "admin", "hardware", "wan", "wifi", "metrics", "ssh"}
    for section, value in data.items():
        if section not in known or not isinstance(value, dict):
            raise FirstBootError(section, "section inconnue", "unknown section")

    site_name = _text(data, "site", "name")
    if not site_name or not site_name.strip():
        raise FirstBootError("site.name", "le nom du site manque", "the site's name is missing")
    timezone = _text(data, "site", "timezone")
    language = _text(data, "site", "language")
    if language not in (None, "fr", "en"):
        raise FirstBootError("site.language", "« fr » ou « en »", "'fr' or 'en'")

    admin = _text(data, "admin", "username", "admin", maxlen=100) or "admin"
    password = _text(data, "admin", "password", maxlen=1024)
    password_hash = _text(data, "admin", "password_hash", maxlen=1024)
    if (password is None) == (password_hash is None):
        raise FirstBootError(
            "admin.password",
            "donnez soit password, soit password_hash (pas de mot de passe par défaut)",
            "give either password or password_hash (there is no default password)",
        )
    if password is not None and len(password) < MIN_PASSWORD:
        raise FirstBootError(
            "admin.password",
            f"au moins {MIN_PASSWORD} caractères",
            f"at least {MIN_PASSWORD} characters",
        )
    if password_hash is not None and not HASH_RE.match(password_hash):
        raise FirstBootError(
            "admin.password_hash",
            "format attendu : celui de `telecentre` (scrypt:…$…$… ou pbkdf2:sha256:…$…$…)",
            "expected the format `telecentre` stores (scrypt:…$…$… or pbkdf2:sha256:…$…$…)",
        )

    hardware = _text(data, "hardware", "backend")
    if hardware not in (None, "pi", "emulated"):
        raise FirstBootError("hardware.backend", "« pi » ou « emulated »", "'pi' or 'emulated'")

    wan = _wan(data.get("wan", {}))
    wifi_country, wifi = _wifi(data.get("wifi", {}))

    metrics_site = _text(data, "metrics", "site", site_name) or site_name
    remote_write = _remote_write(data.get("metrics", {}))

    keys = data.get("ssh", {}).get("authorized_keys", [])
    if not isinstance(keys, list) or not all(
        isinstance(k, str) and re.match(r"^(ssh-|ecdsa-|sk-)\S+ \S+", k) and "\n" not in k
        for k in keys
    ):
        raise FirstBootError(
            "ssh.authorized_keys",
            "une liste de clés publiques « ssh-ed25519 AAAA… »",
            "a list of public keys 'ssh-ed25519 AAAA…'",
        )
    return FirstBoot(
        site_name=site_name.strip(),
        timezone=timezone,
        language=language,
        admin=admin,
        password=password,
        password_hash=password_hash,
        hardware=hardware,
        wan=wan,
        wifi_country=wifi_country,
        wifi=wifi,
        metrics_site=metrics_site,
        remote_write=remote_write,
        ssh_keys=tuple(keys),
    )


def _wan(section: dict[str, Any]) -> Wan:
    data = {"wan": section}
    interface = _text(data, "wan", "interface", "eth0") or "eth0"
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", interface):
        raise FirstBootError("wan.interface", "nom d'interface invalide", "not an interface name")
    mode = _text(data, "wan", "mode", "dhcp")
    if mode == "dhcp":
        return Wan(interface=interface)
    if mode != "static":
        raise FirstBootError("wan.mode", "« dhcp » ou « static »", "'dhcp' or 'static'")
    try:
        address = str(ipaddress.ip_interface(_text(data, "wan", "address", "") or ""))
        if "/" not in (_text(data, "wan", "address") or ""):
            raise ValueError
    except ValueError:
        raise FirstBootError(
            "wan.address", "adresse/préfixe attendu (192.168.1.50/24)",
            "address/prefix expected (192.168.1.50/24)",
        ) from None
    try:
        gateway = str(ipaddress.ip_address(_text(data, "wan", "gateway", "") or ""))
        dns_list = section.get("dns", [gateway])
        if not isinstance(dns_list, list):
            raise ValueError
        dns = tuple(str(ipaddress.ip_address(d)) for d in dns_list)
    except (ValueError, TypeError):
        raise FirstBootError(
            "wan.gateway", "adresse IP attendue (passerelle et dns)",
            "IP address expected (gateway and dns)",
        ) from None
    return Wan(interface=interface, mode="static", address=address, gateway=gateway, dns=dns)


def _wifi(section: dict[str, Any]) -> tuple[str, tuple[dict[str, str], ...]]:
    country = section.get("country", "FR")
    if not isinstance(country, str) or not re.fullmatch(r"[A-Z]{2}", country):
        raise FirstBootError("wifi.country", "code pays en deux lettres (FR)",
                             "two-letter country code (FR)")
    networks = section.get("networks", [])
    if not isinstance(networks, list):
        raise FirstBootError("wifi.networks", "une liste [[wifi.networks]]",
                             "a list [[wifi.networks]]")
    out = []
    for i, net in enumerate(networks):
        key = f"wifi.networks[{i}]"
        if not isinstance(net, dict) or set(net) - {"ssid", "passphrase", "role", "security"}:
            raise FirstBootError(key, "clés permises : ssid, passphrase, role, security",
                                 "allowed keys: ssid, passphrase, role, security")
        ssid, passphrase = net.get("ssid"), net.get("passphrase", "")
        role = net.get("role", "members")
        security = net.get("security", "wpa2")
        if (not isinstance(ssid, str) or not 1 <= len(ssid.encode()) <= 32
                or not ssid.isprintable()):
            raise FirstBootError(f"{key}.ssid", "1 à 32 octets, sans caractère de contrôle",
                                 "1 to 32 bytes, no control character")
        if not isinstance(passphrase, str) or not (
            passphrase == "" or config_mod.wifi_key_ok(passphrase)
        ):
            raise FirstBootError(
                f"{key}.passphrase",
                "8 à 63 caractères ASCII imprimables, ou 64 chiffres hexadécimaux "
                "(vide : réseau ouvert, derrière le portail)",
                "8 to 63 printable ASCII characters, or 64 hex digits "
                "(empty: open network, behind the portal)",
            )
        if role not in ("members", "guests"):
            raise FirstBootError(f"{key}.role", "« members » ou « guests »",
                                 "'members' or 'guests'")
        if security not in ("wpa2", "wpa2-wpa3", "wpa3") or (
            security != "wpa2" and len(passphrase) == 64
        ):
            raise FirstBootError(f"{key}.security",
                                 "« wpa2 », « wpa2-wpa3 » ou « wpa3 » (WPA3 : une phrase)",
                                 "'wpa2', 'wpa2-wpa3' or 'wpa3' (WPA3: a passphrase)")
        out.append({"ssid": ssid, "passphrase": passphrase, "security": security,
                    "role": role})
    if len(out) > 1:
        # The Pi's radio is the gateway's LAN by itself: a second network would need a
        # LAN bridge ([gateway] lan_is_bridge), which telecentre.toml can set by hand.
        raise FirstBootError("wifi.networks",
                             "un seul réseau sur le Wi-Fi du Pi (plusieurs : pont LAN, "
                             "à régler dans telecentre.toml)",
                             "one network on the Pi's Wi-Fi (several: a LAN bridge, set "
                             "in telecentre.toml)")
    return country, tuple(out)


def _remote_write(section: dict[str, Any]) -> dict[str, Any] | None:
    data = {"metrics": section}
    url = _text(data, "metrics", "remote_write_url", maxlen=500)
    if not url:
        return None
    if not re.match(r"^https?://[^\s/]+", url):
        raise FirstBootError("metrics.remote_write_url", "une URL http(s)://…",
                             "an http(s)://… URL")
    rw: dict[str, Any] = {"url": url}
    user = _text(data, "metrics", "username")
    password = _text(data, "metrics", "password", maxlen=1024)
    token = _text(data, "metrics", "bearer_token", maxlen=4096)
    if user is not None or password is not None:
        if not user or not password:
            raise FirstBootError("metrics.username", "username et password vont ensemble",
                                 "username and password go together")
        rw["basic_auth"] = {"username": user, "password": password}
    if token:
        rw["authorization"] = {"type": "Bearer", "credentials": token}
    return rw


# --- what gets written ----------------------------------------------------------------


def _toml_string(value: str) -> str:
    # A JSON string is a valid TOML basic string (same escapes).
    return json.dumps(value, ensure_ascii=False)


def set_key(text: str, section: str, key: str, rendered: str) -> str:
    """Replace `key = …` inside `[section]` of a commented TOML text, keeping the comments."""
    lines = text.splitlines()
    current = None
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("[") and not stripped.startswith("[["):
            current = stripped.strip("[]").strip()
        elif current == section and re.match(rf"^{re.escape(key)}\s*=", stripped):
            lines[i] = f"{key} = {rendered}"
            return "\n".join(lines) + "\n"
    raise KeyError(f"[{section}] {key}")


def hardware_backend(fb: FirstBoot, paths: Paths) -> str:
    """The door's backend: the file's choice, else the kernel command line's
    `telecentre.hardware=`, else "emulated" only on a machine that is not a Raspberry Pi
    and has no SPI reader (a virtual machine). A Pi whose SPI is not up stays on "pi": the
    door then reports its reader down in the panel instead of quietly pretending."""
    if fb.hardware:
        return fb.hardware
    try:
        cmdline = paths.cmdline.read_text().split()
    except OSError:
        cmdline = []
    for word in cmdline:
        if word.startswith("telecentre.hardware=") and word.split("=", 1)[1] in ("pi", "emulated"):
            return word.split("=", 1)[1]
    try:
        model = paths.model.read_bytes().decode(errors="replace")
    except OSError:
        model = ""
    if "Raspberry Pi" in model or paths.spidev.exists():
        return "pi"
    return "emulated"


def site_config_text(fb: FirstBoot, existing: str | None, backend: str) -> str:
    """The site's telecentre.toml: the existing one (a re-configured card) or the default,
    with the first-boot file's values; validated as the services will read it."""
    text = existing if existing is not None else config_mod.default_config_text()
    text = set_key(text, "site", "name", _toml_string(fb.site_name))
    if fb.timezone:
        text = set_key(text, "site", "timezone", _toml_string(fb.timezone))
    if fb.language:
        text = set_key(text, "site", "language", _toml_string(fb.language))
    text = set_key(text, "hardware", "backend", _toml_string(backend))
    text = set_key(text, "link", "wan_interface", _toml_string(fb.wan.interface))
    text = set_key(text, "gateway", "wan_interface", _toml_string(fb.wan.interface))
    text = wifi_text(text, fb)
    try:
        config_mod.parse(tomllib.loads(text), FILE_NAME)
    except config_mod.ConfigError as exc:
        key = "site.timezone" if "timezone" in str(exc) else (
            "wifi" if "'wifi." in str(exc) else "site")
        raise FirstBootError(key, str(exc), str(exc)) from None
    return text


def wifi_text(text: str, fb: FirstBoot) -> str:
    """The [wifi] section of telecentre.toml: the country, and the networks as
    [[wifi.networks]] tables at the end (those of a re-configured card replaced). The
    gateway writes hostapd's file from there: the site config is the one source."""
    if not re.search(r"^\[wifi\]\s*$", text, re.M):
        text = text.rstrip("\n") + "\n\n[wifi]\ncountry = \"FR\"\n"
    text = set_key(text, "wifi", "country", _toml_string(fb.wifi_country))
    kept: list[str] = []
    skipping = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            skipping = stripped.replace(" ", "") == "[[wifi.networks]]"
        if not skipping:
            kept.append(line)
    text = "\n".join(kept).rstrip("\n") + "\n"
    for net in fb.wifi:
        text += "\n[[wifi.networks]]\n" + "".join(
            f"{k} = {_toml_string(net[k])}\n" for k in ("ssid", "passphrase", "security", "role")
        )
    return text


# The site agent (systemd/telecentre-metrics-agent.service) listens here; it scrapes its
# own remote-write backlog from it for the site dashboard's "Agent backlog" panel.
AGENT_LISTEN = "127.0.0.1:9099"
# Its own series that the dashboards use; the rest of its /metrics stays on the box.
AGENT_KEEP = (
    "prometheus_remote_storage_(highest_timestamp_in_seconds|queue_highest_sent_timestamp_"
    "seconds|samples_pending|samples_failed_total|samples_dropped_total)|"
    "prometheus_agent_active_series"
)
# prometheus_client's *_created series are constant: half the counters' series for
# nothing, in the WAL and on a slow upload.
DROP_CREATED = [{"source_labels": ["__name__"], "regex": ".+_created", "action": "drop"}]
# A 1 Mbit/s upload: few connections, big batches, patient retries.
QUEUE_CONFIG = {"max_shards": 2, "max_samples_per_send": 2000, "capacity": 10000,
                "min_backoff": "1s", "max_backoff": "1m"}


def agent_document(site: str, targets: dict[str, str], remote_write: dict[str, Any] | None,
                   agent_listen: str = AGENT_LISTEN) -> dict[str, Any]:
    """The site agent's configuration: every 30 s, the services' metrics (`targets`: job →
    host:port) and its own backlog, labelled `site`, remote-written when the line allows
    (what it cannot send waits in its write-ahead log, see the unit)."""
    doc: dict[str, Any] = {
        "global": {
            "scrape_interval": "30s",
            "scrape_timeout": "10s",
            "external_labels": {"site": site},
        },
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [target]}],
             "metric_relabel_configs": DROP_CREATED}
            for job, target in targets.items()
        ] + [
            {"job_name": "agent", "static_configs": [{"targets": [agent_listen]}],
             "metric_relabel_configs": [{"source_labels": ["__name__"], "regex": AGENT_KEEP,
                                         "action": "keep"}]},
        ],
    }
    if remote_write:
        doc["remote_write"] = [{**remote_write, "queue_config": dict(QUEUE_CONFIG)}]
    return doc


def agent_config(fb: FirstBoot, config_text: str) -> str:
    """Prometheus (agent mode) configuration; JSON, which is YAML, so no value is ever
    spliced into YAML syntax. Scrapes the services' loopback metrics ports."""
    metrics = tomllib.loads(config_text).get("metrics", {})
    listen = metrics.get("listen", "127.0.0.1")
    targets = {
        name: f"{listen}:{metrics.get(f'{name}_port', default)}"
        for name, default in (("door", 9101), ("web", 9102), ("link", 9103), ("gateway", 9104))
    }
    doc = agent_document(fb.metrics_site, targets, fb.remote_write)
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def network_file(wan: Wan) -> str:
    """systemd-networkd settings of the WAN (linked from /etc/systemd/network)."""
    lines = ["# Written by first boot from telecentre-firstboot.toml.", "[Match]",
             f"Name={wan.interface}", "", "[Network]"]
    if wan.mode == "dhcp":
        lines += ["DHCP=yes", "IPv6AcceptRA=yes"]
    else:
        lines += [f"Address={wan.address}", f"Gateway={wan.gateway}"]
        lines += [f"DNS={d}" for d in wan.dns]
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str, mode: int, group: int | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, mode)
    if group is not None:
        os.chown(tmp, 0, group)
    os.replace(tmp, path)


def _group(name: str) -> int | None:
    if os.geteuid() != 0:
        return None
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


def _default_runner(argv: Sequence[str], *, input: str | None = None) -> None:
    subprocess.run(list(argv), input=input, text=True, check=True)


def ssh_host_keys(paths: Paths, run: Runner) -> list[str]:
    """Make the host keys that are missing; the image ships none."""
    made = []
    paths.ssh.mkdir(mode=0o700, parents=True, exist_ok=True)
    for kind in ("ed25519", "rsa"):
        key = paths.ssh / f"ssh_host_{kind}_key"
        if not key.exists():
            run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "telecentre", "-f", str(key)])
            made.append(kind)
    return made


def grow_data_partition(paths: Paths, run: Runner) -> bool:
    """Grow the data partition (the last one) to the end of the card, and its file system
    online. Only on the real system: skipped when /data is not a mount point."""
    if not os.path.ismount(paths.data_mount):
        return False
    source = subprocess.run(
        ["findmnt", "-n", "-o", "SOURCE", str(paths.data_mount)],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    name = Path(os.path.realpath(source)).name
    sys_part = Path("/sys/class/block") / name
    number = (sys_part / "partition").read_text().strip()
    disk = "/dev/" + Path(os.path.realpath(sys_part)).parent.name
    run(["sfdisk", "--no-reread", "--no-tell-kernel", "-N", number, disk], input=", +\n")
    run(["partx", "-u", "--nr", number, disk])
    run(["resize2fs", source])
    return True


def remove_file(paths: Paths, report: str) -> None:
    """Overwrite the first-boot file (FAT keeps deleted data in its clusters), delete it, and
    leave a report without secrets in its place."""
    size = paths.file.stat().st_size
    with open(paths.file, "r+b") as f:
        f.write(b"\0" * size)
        f.flush()
        os.fsync(f.fileno())
    paths.file.unlink()
    _write(paths.boot / REPORT_NAME, report, 0o644, None)
    fd = os.open(paths.boot, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def apply(paths: Paths, run: Runner = _default_runner) -> str:
    """Apply the first-boot file if there is one; returns the report (no secrets in it)."""
    done: list[str] = []
    made = ssh_host_keys(paths, run)
    if made:
        done.append(f"SSH host keys made: {', '.join(made)}")
    if not paths.file.exists():
        done.append(f"no {FILE_NAME} on the boot partition: nothing else to apply")
        return "\n".join(done) + "\n"

    fb = parse(paths.file.read_text("utf-8-sig"))
    group = _group(paths.service_user)
    backend = hardware_backend(fb, paths)
    existing = paths.config.read_text("utf-8") if paths.config.exists() else None
    _write(paths.config, site_config_text(fb, existing, backend), 0o640, group)
    done.append(f"{paths.config}: site '{fb.site_name}', hardware '{backend}'")

    if fb.password is not None:
        password, flag = fb.password, "--admin-password-stdin"
    else:
        password, flag = fb.password_hash or "", "--admin-password-hash-stdin"
    # lgpio (imported with the reader's driver) makes its notification pipes in LG_WD, or
    # else in the working directory: / here, read-only.
    run(
        ["runuser", "-u", paths.service_user, "--", "env", f"LG_WD={paths.runtime}",
         str(paths.telecentre), "--config", str(paths.config), "init", "--admin", fb.admin,
         flag],
        input=password + "\n",
    )
    done.append(f"telecentre init: admin account '{fb.admin}' set")

    agent = agent_config(fb, paths.config.read_text("utf-8"))
    _write(paths.etc / "metrics-agent.yml", agent, 0o600, None)
    done.append("metrics agent: " + ("remote_write set" if fb.remote_write
                                     else "no remote_write (buffering locally)"))
    _write(paths.etc / "network" / "10-wan.network", network_file(fb.wan), 0o644, None)
    done.append(f"WAN {fb.wan.interface}: {fb.wan.mode}")
    done.append(f"Wi-Fi: {len(fb.wifi)} network(s) in {paths.config.name}")
    if fb.ssh_keys:
        keys_dir = paths.ssh / "authorized_keys"
        keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write(keys_dir / "root", "\n".join(fb.ssh_keys) + "\n", 0o600, None)
        done.append(f"SSH: {len(fb.ssh_keys)} authorized key(s) for root")
    done.append(f"{FILE_NAME}: applied and removed")
    report = "\n".join(done) + "\n"
    remove_file(paths, report)
    return report


def main(paths: Paths | None = None, run: Runner = _default_runner) -> int:
    paths = paths or Paths()
    remount = paths == Paths() and os.path.ismount(paths.boot)
    if remount:
        subprocess.run(["mount", "-o", "remount,rw", str(paths.boot)], check=True)
    try:
        try:
            if paths == Paths():
                grow_data_partition(paths, run)
        except (OSError, subprocess.CalledProcessError) as exc:
            print(f"first boot: the data partition was not grown: {exc}", file=sys.stderr)
        try:
            report = apply(paths, run)
        except FirstBootError as exc:
            _write(paths.boot / REPORT_NAME, exc.report(), 0o644, None)
            print(exc.report(), file=sys.stderr)
            return 1
        print(report, end="")
        return 0
    finally:
        if remount:
            os.sync()
            subprocess.run(["mount", "-o", "remount,ro", str(paths.boot)], check=False)


if __name__ == "__main__":
    sys.exit(main())
