"""First boot of the image, on a temporary boot partition and data partition."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from werkzeug.security import generate_password_hash

from appliance import admins, db, firstboot
from appliance import config as config_mod

FILE = """
[site]
name = "Télécentre de Saint-\\"Test\\""
timezone = "Europe/Paris"

[admin]
username = "mairie"
password = "correct horse battery"

[wan]
mode = "static"
interface = "eth0"
address = "192.168.1.50/24"
gateway = "192.168.1.1"
dns = ["192.168.1.1", "9.9.9.9"]

[wifi]
country = "BE"
[[wifi.networks]]
ssid = "Télécentre \\"Wi-Fi\\" bridge=eth0"
passphrase = "membres-2026 #1"
security = "wpa2-wpa3"

[metrics]
remote_write_url = "https://metrics.example.org/api/v1/write"
username = "site-12"
password = "s3cret-metrics"

[ssh]
authorized_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE0 admin@asso"]
"""


class Runner:
    """Runs `telecentre init` for real (without runuser) and fakes ssh-keygen."""

    def __init__(self, runtime: Path = Path("/run/telecentre")) -> None:
        self.runtime = runtime
        self.calls: list[list[str]] = []

    def __call__(self, argv, *, input=None):
        argv = list(argv)
        self.calls.append(argv)
        if argv[0] == "ssh-keygen":
            Path(argv[-1]).write_text("private key")
            Path(argv[-1] + ".pub").write_text("public key")
        elif argv[0] == "runuser":
            assert argv[4:6] == ["env", f"LG_WD={self.runtime}"]
            cli = argv[argv.index("--config") :]
            subprocess.run(
                [sys.executable, "-m", "appliance", *cli], input=input, text=True, check=True,
                capture_output=True,
            )
        else:
            raise AssertionError(argv)


@pytest.fixture
def paths(tmp_path: Path) -> firstboot.Paths:
    boot = tmp_path / "boot"
    boot.mkdir()
    return firstboot.Paths(
        boot=boot,
        etc=tmp_path / "etc",
        ssh=tmp_path / "data" / "ssh",
        data_mount=tmp_path / "data",
        cmdline=tmp_path / "cmdline",
        model=tmp_path / "model",
        spidev=tmp_path / "spidev0.0",
        service_user="nobody",
    )


def _with_state_dir(paths: firstboot.Paths) -> None:
    """The config points the database into the tmp dir (the image keeps the default)."""
    text = config_mod.default_config_text().replace(
        'state_dir = "/var/lib/telecentre"', f'state_dir = "{paths.etc.parent / "state"}"'
    )
    paths.etc.mkdir(parents=True)
    paths.config.write_text(text, "utf-8")


def test_applies_the_file_and_removes_it(paths: firstboot.Paths) -> None:
    _with_state_dir(paths)
    paths.file.write_text(FILE, "utf-8")
    run = Runner()
    report = firstboot.apply(paths, run)

    assert not paths.file.exists()
    left = (paths.boot / firstboot.REPORT_NAME).read_text()
    assert left == report
    for secret in ("correct horse", "membres-2026", "s3cret-metrics"):
        assert secret not in left

    cfg = config_mod.load(paths.config)
    assert cfg.site_name == 'Télécentre de Saint-"Test"'
    assert cfg.backend == "emulated"  # no Pi model, no spidev: a virtual machine
    assert paths.config.stat().st_mode & 0o777 == 0o640

    conn = db.open_db(cfg.db_path)
    assert admins.authenticate(conn, "mairie", "correct horse battery") is not None
    assert admins.authenticate(conn, "mairie", "wrong password!") is None
    conn.close()
    init = next(c for c in run.calls if c[0] == "runuser")
    assert init[:4] == ["runuser", "-u", "nobody", "--"]
    assert "correct horse battery" not in " ".join(init)  # stdin, never argv

    agent = json.loads((paths.etc / "metrics-agent.yml").read_text())  # JSON is YAML
    assert agent["global"]["external_labels"] == {"site": cfg.site_name}
    assert agent["remote_write"][0]["url"] == "https://metrics.example.org/api/v1/write"
    assert agent["remote_write"][0]["basic_auth"]["password"] == "s3cret-metrics"
    targets = [t for job in agent["scrape_configs"] for t in job["static_configs"][0]["targets"]]
    assert targets == ["127.0.0.1:9101", "127.0.0.1:9102", "127.0.0.1:9103", "127.0.0.1:9104",
                       "127.0.0.1:9099"]  # the services, then the agent's own backlog
    assert [job["job_name"] for job in agent["scrape_configs"]] == [
        "door", "web", "link", "gateway", "agent"]  # the names the alerts and panels use
    assert (paths.etc / "metrics-agent.yml").stat().st_mode & 0o777 == 0o600

    network = (paths.etc / "network" / "10-wan.network").read_text()
    assert "Name=eth0" in network and "Address=192.168.1.50/24" in network
    assert "Gateway=192.168.1.1" in network and "DNS=9.9.9.9" in network
    assert not (paths.etc / "wifi.json").exists()  # the site config is the one source
    assert cfg.wifi.country == "BE"
    assert cfg.wifi.networks == (config_mod.WifiNetwork(
        ssid='Télécentre "Wi-Fi" bridge=eth0', passphrase="membres-2026 #1",
        security="wpa2-wpa3", role="members"),)
    assert (paths.ssh / "ssh_host_ed25519_key").exists()
    assert (paths.ssh / "authorized_keys" / "root").read_text().startswith("ssh-ed25519 ")


def test_a_password_hash_instead_of_the_password(paths: firstboot.Paths) -> None:
    _with_state_dir(paths)
    hashed = generate_password_hash("only the association knows")
    text = FILE.replace('password = "correct horse battery"', f'password_hash = "{hashed}"')
    paths.file.write_text(text, "utf-8")
    firstboot.apply(paths, Runner())
    conn = db.open_db(config_mod.load(paths.config).db_path)
    assert admins.authenticate(conn, "mairie", "only the association knows") is not None
    conn.close()


def test_no_default_password(paths: firstboot.Paths) -> None:
    with pytest.raises(firstboot.FirstBootError) as err:
        firstboot.parse('[site]\nname = "X"\n')
    assert err.value.key == "admin.password"
    assert "pas de mot de passe par défaut" in err.value.report()


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (('password = "correct horse battery"', 'password = "short"'), "admin.password"),
        (('mode = "static"', 'mode = "pppoe"'), "wan.mode"),
        (('address = "192.168.1.50/24"', 'address = "192.168.1.500/24"'), "wan.address"),
        (('passphrase = "membres-2026 #1"', 'passphrase = "court"'),
         "wifi.networks[0].passphrase"),
        (('passphrase = "membres-2026 #1"', 'passphrase = "membres-2026\\nbridge=eth0"'),
         "wifi.networks[0].passphrase"),
        (('Wi-Fi\\" bridge', 'Wi-Fi\\"\\nbridge'), "wifi.networks[0].ssid"),
        (('security = "wpa2-wpa3"', 'security = "wpa2-wpa3"\n[[wifi.networks]]\nssid = "b"'),
         "wifi.networks"),
        (('remote_write_url = "https://', 'remote_write_url = "ftp://'),
         "metrics.remote_write_url"),
        (('[ssh]', '[shh]'), "shh"),
    ],
)
def test_mistakes_name_the_key(change: tuple[str, str], key: str) -> None:
    with pytest.raises(firstboot.FirstBootError) as err:
        firstboot.parse(FILE.replace(*change))
    assert err.value.key == key


def test_a_wrong_file_is_kept_with_a_report(paths: firstboot.Paths) -> None:
    paths.file.write_text(FILE.replace('timezone = "Europe/Paris"', 'timezone = "Mars/Olympus"'))
    assert firstboot.main(paths, Runner()) == 1
    assert paths.file.exists()
    report = (paths.boot / firstboot.REPORT_NAME).read_text()
    assert "ERREUR" in report and "ERROR" in report and "timezone" in report
    assert not paths.config.exists()


def test_no_file_still_makes_host_keys(paths: firstboot.Paths) -> None:
    run = Runner()
    assert firstboot.main(paths, run) == 0
    assert sorted(p.name for p in paths.ssh.glob("ssh_host_*_key")) == [
        "ssh_host_ed25519_key", "ssh_host_rsa_key"]
    assert not paths.config.exists()
    run.calls.clear()
    firstboot.main(paths, run)
    assert run.calls == []  # kept: one identity per card


@pytest.mark.parametrize(
    ("model", "spidev", "cmdline", "expected"),
    [
        ("", False, "", "emulated"),
        ("linux,dummy-virt", False, "console=ttyAMA0", "emulated"),
        ("Raspberry Pi 4 Model B Rev 1.4", False, "", "pi"),  # SPI not up: stay on pi
        ("", True, "", "pi"),
        ("Raspberry Pi 5 Model B Rev 1.0", True, "telecentre.hardware=emulated", "emulated"),
    ],
)
def test_hardware_backend(paths: firstboot.Paths, model: str, spidev: bool, cmdline: str,
                          expected: str) -> None:
    paths.model.write_bytes(model.encode() + b"\0")
    paths.cmdline.write_text(cmdline)
    if spidev:
        paths.spidev.write_text("")
    fb = firstboot.parse(FILE)
    assert firstboot.hardware_backend(fb, paths) == expected


def test_reconfiguring_keeps_the_site_edits(paths: firstboot.Paths) -> None:
    _with_state_dir(paths)
    paths.config.write_text(paths.config.read_text().replace("unlock_seconds = 5",
                                                             "unlock_seconds = 8"))
    paths.file.write_text(FILE.replace('"Europe/Paris"', '"Indian/Reunion"'))
    firstboot.apply(paths, Runner())
    data = tomllib.loads(paths.config.read_text())
    assert data["door"]["unlock_seconds"] == 8
    assert data["site"]["timezone"] == "Indian/Reunion"
    assert "# Telecentre appliance: site configuration." in paths.config.read_text()


def test_reconfiguring_replaces_the_wifi_networks(paths: firstboot.Paths) -> None:
    """A card configured twice has the second file's network, once; a site config from
    before [wifi] existed gets the section."""
    _with_state_dir(paths)
    old = paths.config.read_text()
    start = old.index("[wifi]")
    paths.config.write_text(old[:start] + old[old.index("[retention]"):])  # no [wifi] yet
    paths.file.write_text(FILE)
    firstboot.apply(paths, Runner())
    paths.file.write_text(FILE.replace('"membres-2026 #1"', '"' + "ab" * 32 + '"')
                          .replace('security = "wpa2-wpa3"', "")
                          .replace("Wi-Fi", "WiFi2"))
    firstboot.apply(paths, Runner())
    cfg = config_mod.load(paths.config)
    assert [(n.ssid, n.passphrase, n.security) for n in cfg.wifi.networks] == [
        ('Télécentre "WiFi2" bridge=eth0', "ab" * 32, "wpa2")]
    assert cfg.wifi.country == "BE"
    assert paths.config.read_text().count("[[wifi.networks]]") == 1


def test_the_shipped_example_is_a_valid_first_boot_file():
    """The template copied to the boot partition (image-build/) must apply as it stands:
    an admin who only changes the values must not meet an error."""
    example = Path(__file__).parents[1] / "image-build" / "telecentre-firstboot.toml.example"
    fb = firstboot.parse(example.read_text("utf-8"))
    assert fb.wifi and fb.remote_write is not None
    text = firstboot.site_config_text(fb, None, "pi")
    config_mod.parse(tomllib.loads(text), "telecentre.toml")
