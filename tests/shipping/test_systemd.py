"""systemd units: `systemd-analyze verify` clean (stderr included), exposure ≤ 2.5 for each of
our units, and the privileges DESIGN.md gives each service, read back from the files."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from appliance.cli import build_parser
from tests.conftest import require_tool
from tests.shipping.units import (
    REPO,
    SYSTEMD_DIR,
    drop_ins,
    exec_binaries,
    our_services,
    our_units,
    parse_unit,
    words,
)

MAX_EXPOSURE = 2.5
VENV_BIN = "/opt/telecentre/bin/telecentre"
HOST_UNIT_DIRS = (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system"))

# Stand-ins for the units Debian's packages ship, so that our drop-ins are verified on top
# of something shaped like them (the packages themselves are not installed on the test host).
PACKAGE_UNITS = {
    "dnsmasq.service": """[Unit]
Description=dnsmasq (stand-in)
[Service]
Type=forking
PIDFile=/run/dnsmasq/dnsmasq.pid
ExecStart=/etc/init.d/dnsmasq systemd-exec
[Install]
WantedBy=multi-user.target
""",
    "hostapd.service": """[Unit]
Description=hostapd (stand-in)
ConditionFileNotEmpty=/etc/hostapd/hostapd.conf
[Service]
Type=forking
PIDFile=/run/hostapd.pid
Environment=DAEMON_CONF=/etc/hostapd/hostapd.conf
ExecStart=/usr/sbin/hostapd -B -P /run/hostapd.pid $DAEMON_OPTS ${DAEMON_CONF}
[Install]
WantedBy=multi-user.target
""",
    "nftables.service": """[Unit]
Description=nftables (stand-in)
DefaultDependencies=no
Before=network-pre.target shutdown.target
Wants=network-pre.target
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/sbin/nft -f /etc/nftables.conf
[Install]
WantedBy=sysinit.target
""",
}


def _stub(root: Path, program: str) -> None:
    path = root / program.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)


@pytest.fixture(scope="module")
def unit_root(tmp_path_factory) -> Path:
    """A filesystem root for `systemd-analyze --root`: the host's own units (targets such as
    sysinit.target), ours installed under /etc/systemd/system as the image installs them, and
    executable stand-ins for every program our units run (verify checks they exist)."""
    require_tool("systemd-analyze")
    root = tmp_path_factory.mktemp("root")
    host = next((d for d in HOST_UNIT_DIRS if (d / "sysinit.target").exists()), None)
    assert host is not None, "no systemd unit directory on this host"
    shutil.copytree(host, root / "usr/lib/systemd/system", symlinks=True)
    etc = root / "etc/systemd/system"
    etc.mkdir(parents=True)
    programs: set[str] = set()
    for unit in our_units():
        shutil.copy(unit, etc / unit.name)
        programs |= exec_binaries(parse_unit(unit.read_text()))
    for name, text in PACKAGE_UNITS.items():
        (root / "usr/lib/systemd/system" / name).write_text(text)
        programs |= exec_binaries(parse_unit(text))
    for conf in drop_ins():
        (etc / conf.parent.name).mkdir(exist_ok=True)
        shutil.copy(conf, etc / conf.parent.name / conf.name)
        programs |= exec_binaries(parse_unit(conf.read_text()))
    for program in programs:
        _stub(root, program)
    return root


def verify(root: Path, *units: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", "--man=no", *units],
        capture_output=True, text=True, timeout=120,
    )


def test_the_units_and_drop_ins_exist():
    names = {p.name for p in our_units()}
    assert {
        "telecentre.target", "telecentre-door.service", "telecentre-web.service",
        "telecentre-gateway.service", "telecentre-link.service",
        "telecentre-metrics-agent.service",
        "telecentre-hostapd-reload.path", "telecentre-hostapd-reload.service",
        "telecentre-dnsmasq-reload.path", "telecentre-dnsmasq-reload.service",
    } <= names
    assert {p.parent.name for p in drop_ins()} == {
        "dnsmasq.service.d", "hostapd.service.d", "nftables.service.d",
    }
    for extra in ("sysusers.d/telecentre.conf", "tmpfiles.d/telecentre.conf"):
        assert (SYSTEMD_DIR / extra).is_file()


@pytest.mark.parametrize("unit", [p.name for p in our_units()])
def test_systemd_analyze_verify_is_clean(unit_root, unit):
    result = verify(unit_root, unit)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # verify exits 0 on many mistakes; they show on stderr


@pytest.mark.parametrize("unit", sorted(PACKAGE_UNITS))
def test_our_drop_ins_verify_clean_on_the_package_units(unit_root, unit):
    result = verify(unit_root, unit)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_verify_as_run_here_does_catch_mistakes(unit_root, tmp_path):
    """The harness is not vacuous: a misspelt directive and a missing program show up."""
    etc = unit_root / "etc/systemd/system"
    bad = (SYSTEMD_DIR / "telecentre-web.service").read_text()
    bad = bad.replace("WatchdogSec=", "WatchdogSecs=").replace(VENV_BIN, "/opt/nowhere/telecentre")
    (etc / "telecentre-broken.service").write_text(bad)
    try:
        result = verify(unit_root, "telecentre-broken.service")
    finally:
        (etc / "telecentre-broken.service").unlink()
    assert "WatchdogSecs" in result.stderr
    assert "/opt/nowhere/telecentre" in result.stderr


def exposure(root: Path, unit: str) -> float:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", f"--root={root}", "--no-pager", unit],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    match = re.search(rf"Overall exposure level for {re.escape(unit)}: (\d+\.\d+)", result.stdout)
    assert match, result.stdout
    return float(match.group(1))


@pytest.mark.parametrize("unit", [p.name for p in our_services()])
def test_exposure_is_at_most_2_5(unit_root, unit):
    assert exposure(unit_root, unit) <= MAX_EXPOSURE


def test_the_exposure_check_would_fail_an_unhardened_unit(unit_root):
    etc = unit_root / "etc/systemd/system"
    (etc / "telecentre-bare.service").write_text(
        f"[Service]\nType=notify\nExecStart={VENV_BIN} web\n"
    )
    try:
        assert exposure(unit_root, "telecentre-bare.service") > 9
    finally:
        (etc / "telecentre-bare.service").unlink()


# --- what each unit grants, read back from the files --------------------------------------


def unit(name: str) -> dict[str, dict[str, list[str]]]:
    return parse_unit((SYSTEMD_DIR / name).read_text())


def value(u, key: str, section: str = "Service") -> str | None:
    values = u.get(section, {}).get(key, [])
    return values[-1] if values else None


PYTHON_SERVICES = ["door", "web", "gateway", "link"]


@pytest.mark.parametrize("service", PYTHON_SERVICES)
def test_python_services_notify_are_watched_restarted_within_limits(service):
    u = unit(f"telecentre-{service}.service")
    assert value(u, "Type") == "notify"
    assert value(u, "NotifyAccess") == "main"
    assert value(u, "WatchdogSec")
    assert value(u, "Restart") == "on-failure"
    assert int(value(u, "StartLimitBurst", "Unit")) > 0
    assert value(u, "StartLimitIntervalSec", "Unit") not in (None, "0", "infinity")
    assert value(u, "RestartPreventExitStatus") == "2"  # a configuration error
    assert value(u, "User") == "telecentre" and value(u, "DynamicUser") is None
    assert value(u, "StateDirectory") == "telecentre"
    assert value(u, "RuntimeDirectory") == "telecentre"
    # Shared with the other services: one stopping must not delete the others' sockets.
    assert value(u, "RuntimeDirectoryPreserve") == "yes"
    assert value(u, "ConfigurationDirectory") == "telecentre"
    assert value(u, "NoNewPrivileges") == "yes" and value(u, "ProtectSystem") == "strict"
    assert "telecentre.target" in words(u, "Install", "WantedBy")
    assert "telecentre.target" in words(u, "Unit", "PartOf")
    program, *argv = value(u, "ExecStart").split()
    assert program == VENV_BIN and argv[0] == service
    # The whole command line parses: argparse exits 2 on a missing sub-command, which the
    # unit takes for a configuration error and never restarts (`telecentre link` did).
    build_parser().parse_args(argv)


def test_the_door_relocks_after_any_stop_and_keeps_its_guardian():
    u = unit("telecentre-door.service")
    assert value(u, "ExecStopPost") == f"{VENV_BIN} door --relock"
    # The relock guardian ignores SIGTERM and must outlive the service's own stop.
    assert value(u, "KillMode") in (None, "control-group")
    assert value(u, "WatchdogSignal") == "SIGTERM"
    args = build_parser().parse_args(["door", "--relock"])
    assert args.relock is True


def test_the_door_gets_gpio_and_spi_and_loopback_only():
    u = unit("telecentre-door.service")
    assert set(words(u, "Service", "SupplementaryGroups")) == {"gpio", "spi"}
    assert value(u, "DevicePolicy") == "closed"
    assert u["Service"]["DeviceAllow"] == ["char-gpiochip rw", "char-spi rw"]
    assert set(words(u, "Service", "RestrictAddressFamilies")) == {"AF_UNIX", "AF_INET"}
    assert value(u, "IPAddressDeny") == "any" and value(u, "IPAddressAllow") == "localhost"
    assert words(u, "Service", "CapabilityBoundingSet") == []
    assert words(u, "Service", "AmbientCapabilities") == []
    # The door never waits for the network or another service.
    assert not any("network" in w for w in words(u, "Unit", "After") + words(u, "Unit", "Wants"))


def test_the_web_service_has_no_capabilities_and_no_devices():
    u = unit("telecentre-web.service")
    assert "CapabilityBoundingSet" in u["Service"]
    assert words(u, "Service", "CapabilityBoundingSet") == []
    assert words(u, "Service", "AmbientCapabilities") == []
    assert value(u, "PrivateDevices") == "yes" and "DeviceAllow" not in u["Service"]
    assert value(u, "SupplementaryGroups") is None


@pytest.mark.parametrize(
    ("service", "allowed"),
    [("gateway", {"CAP_NET_ADMIN", "CAP_NET_RAW"}), ("link", {"CAP_NET_RAW"})],
)
def test_network_services_get_only_their_capabilities(service, allowed):
    u = unit(f"telecentre-{service}.service")
    bounding = set(words(u, "Service", "CapabilityBoundingSet"))
    assert bounding and bounding <= allowed
    assert set(words(u, "Service", "AmbientCapabilities")) <= bounding
    assert value(u, "PrivateDevices") == "yes"
    assert value(u, "SupplementaryGroups") is None


def test_the_access_point_and_dhcp_wait_for_the_portal_rules():
    for name in ("hostapd.service.d", "dnsmasq.service.d"):
        conf = parse_unit((SYSTEMD_DIR / name / "telecentre.conf").read_text())
        assert "telecentre-gateway.service" in words(conf, "Unit", "After")


def check_reload_units(service_name: str, written: str) -> dict:
    """A path unit on the file the gateway writes restarts `service_name` (started,
    stopped or reconfigured by PID 1 from its drop-in's condition on that file), from a
    oneshot that is root for PID 1's private socket and nothing else. Returns the
    oneshot's parsed unit."""
    path = unit(f"telecentre-{service_name}-reload.path")
    assert path["Path"]["PathChanged"] == [written]
    assert value(path, "Unit", "Path") == f"telecentre-{service_name}-reload.service"
    assert "telecentre.target" in words(path, "Install", "WantedBy")
    assert "telecentre.target" in words(path, "Unit", "PartOf")
    assert "telecentre-gateway.service" in words(path, "Unit", "After")
    assert value(path, "DefaultDependencies", "Unit") == "no"  # no cycle with paths.target
    drop_in = parse_unit((SYSTEMD_DIR / f"{service_name}.service.d/telecentre.conf").read_text())
    assert drop_in["Unit"]["ConditionFileNotEmpty"] == [written]

    service = unit(f"telecentre-{service_name}-reload.service")
    assert value(service, "Type") == "oneshot"
    assert service["Service"]["ExecStart"] == [
        f"/usr/bin/systemctl --no-ask-password restart {service_name}.service"]
    assert "Install" not in service  # started by the path unit only
    # root for PID 1's private socket, and nothing else: no capability, AF_UNIX only
    assert value(service, "User") is None
    assert words(service, "Service", "CapabilityBoundingSet") == []
    assert "CapabilityBoundingSet" in service["Service"]
    assert words(service, "Service", "AmbientCapabilities") == []
    assert words(service, "Service", "RestrictAddressFamilies") == ["AF_UNIX"]
    assert value(service, "PrivateNetwork") == "yes" and value(service, "IPAddressDeny") == "any"
    assert value(service, "NoNewPrivileges") == "yes"
    assert value(service, "ProtectSystem") == "strict"
    return service


def test_hostapd_follows_the_file_the_gateway_writes():
    """The gateway cannot manage services: a path unit on its hostapd.conf restarts hostapd."""
    from appliance.config import Config
    from appliance.gateway import hostapd

    check_reload_units("hostapd", str(Config(None).runtime_dir / hostapd.FILENAME))


def test_dnsmasq_follows_the_file_the_gateway_writes():
    """The same for dnsmasq's file (a SIGHUP would not make dnsmasq re-read it); without
    the file dnsmasq stays stopped (the drop-in's condition)."""
    from appliance.config import Config
    from appliance.gateway import dnsmasq

    written = str(Config(None).runtime_dir / "dnsmasq.d" / dnsmasq.FILENAME)
    conf_dir = (SYSTEMD_DIR / "dnsmasq.d/telecentre.conf").read_text()
    assert f"conf-dir={Path(written).parent},*.conf" in conf_dir.splitlines()
    service = check_reload_units("dnsmasq", written)
    # dnsmasq comes back once a restarting gateway is ready (its rules in place).
    assert "telecentre-gateway.service" in words(service, "Unit", "After")
    # The same sandbox as hostapd's.
    hostapd_service = unit("telecentre-hostapd-reload.service")
    assert service["Service"] == {
        **hostapd_service["Service"],
        "ExecStart": ["/usr/bin/systemctl --no-ask-password restart dnsmasq.service"],
    }


def test_the_image_installs_and_enables_the_path_units():
    customize = (REPO / "image-build/customize.sh").read_text()
    assert '"$repo"/systemd/telecentre*.path' in customize
    assert re.search(r"systemctl enable [^\n]*telecentre-hostapd-reload\.path", customize)
    assert re.search(r"systemctl enable [^\n]*telecentre-dnsmasq-reload\.path", customize)


def test_sysusers_and_tmpfiles_match_the_units():
    sysusers = (SYSTEMD_DIR / "sysusers.d/telecentre.conf").read_text().split("\n")
    entries = {tuple(line.split()[:2]) for line in sysusers if line and line[0] != "#"}
    assert {("u", "telecentre"), ("g", "gpio"), ("g", "spi")} <= entries
    tmpfiles = (SYSTEMD_DIR / "tmpfiles.d/telecentre.conf").read_text().split("\n")
    dirs = {line.split()[1]: line.split()[3:5] for line in tmpfiles if line.startswith("d ")}
    assert dirs["/var/lib/telecentre"] == ["telecentre", "telecentre"]
    assert dirs["/run/telecentre"] == ["telecentre", "telecentre"]
