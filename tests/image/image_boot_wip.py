"""The SD-card image: build it (reduced, see image-build/README.md), check its partitions
and content, boot its kernel and root file system under qemu-system-aarch64 -M virt with a
first-boot file, and check the panel, the emulated door and the first boot's work.

Slow (tens of minutes on 2 cores): needs root (mmdebstrap --mode=root, binfmt_misc).
TELECENTRE_IMAGE=path reuses an image built by `make image` instead of building one.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import IN_CI, require_tool

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "image-build" / "build-image.sh"
PASSWORD = "image-test-password-42"
FIRSTBOOT = f"""
[site]
name = "Télécentre de test"
[admin]
username = "mairie"
password = "{PASSWORD}"
[wan]
interface = "eth0"
mode = "dhcp"
[metrics]
remote_write_url = "https://metrics.invalid/api/v1/write"
username = "site-test"
password = "metrics-secret-77"
"""
BOOT_TIMEOUT = 20 * 60

pytestmark = [pytest.mark.slow, pytest.mark.image]


def _sh(*argv: str, **kw) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kw).stdout


def _partitions(image: Path) -> list[dict]:
    return json.loads(_sh("sfdisk", "--json", str(image)))["partitiontable"]["partitions"]


def _extract(image: Path, part: dict, dest: Path) -> Path:
    _sh("dd", f"if={image}", f"of={dest}", "bs=512", f"skip={part['start']}",
        f"count={part['size']}", "conv=sparse", "status=none")
    return dest


def _debugfs(fs: Path, request: str) -> str:
    return _sh("debugfs", "-R", request, str(fs))


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("the image test needs root (mmdebstrap --mode=root, binfmt_misc)")
        pytest.skip("the image test needs root")
    subprocess.run([str(REPO / "scripts" / "system-deps.sh"), "image"], check=IN_CI)
    for tool in ("mmdebstrap", "arch-test", "mkfs.vfat", "mcopy", "mkfs.ext4", "sfdisk",
                 "debugfs", "qemu-system-aarch64", "dtc", "/usr/bin/qemu-aarch64-static"):
        require_tool(tool)
    given = os.environ.get("TELECENTRE_IMAGE")
    if given:
        return Path(given)
    out = tmp_path_factory.mktemp("image") / "telecentre.img"
    start = time.monotonic()
    subprocess.run([str(BUILD), str(out), "--reduced"], check=True)
    print(f"\nimage build time: {time.monotonic() - start:.0f} s")
    return out


def test_partitions_and_content(image: Path, tmp_path: Path) -> None:
    size = image.stat().st_size
    used = image.stat().st_blocks * 512
    print(f"\nimage size: {size / 2**20:.0f} MiB ({used / 2**20:.0f} MiB of data)")
    parts = _partitions(image)
    assert [p["type"] for p in parts] == ["c", "83", "83"]
    assert parts[0].get("bootable") is True

    boot = _extract(image, parts[0], tmp_path / "boot.img")
    files = _sh("mdir", "-b", "-i", str(boot), "::/")
    for name in ("config.txt", "cmdline.txt", "bcm2711-rpi-4-b.dtb"):
        assert f"::/{name}" in files
    assert re.search(r"::/vmlinuz-\S+-arm64", files) and re.search(r"::/initrd.img-", files)
    assert "telecentre-pins.dtbo" in _sh("mdir", "-b", "-i", str(boot), "::/overlays")
    config = _sh("mtype", "-i", str(boot), "::/config.txt")
    for line in ("dtparam=spi=on", "dtparam=watchdog=on", "gpio=17=op,dl",
                 "dtoverlay=telecentre-pins"):
        assert line in config
    cmdline = _sh("mtype", "-i", str(boot), "::/cmdline.txt").split()
    assert "root=LABEL=TCROOT" in cmdline and cmdline[-1] == "ro"

    root = _extract(image, parts[1], tmp_path / "root.img")
    assert "TCROOT" in _sh("dumpe2fs", "-h", str(root))
    fstab = _debugfs(root, "cat /etc/fstab")
    assert re.search(r"LABEL=TCROOT\s+/\s+ext4\s+ro,", fstab)
    assert "/data/lib/telecentre  /var/lib/telecentre" in fstab
    for path in ("/opt/telecentre/bin/telecentre", "/usr/sbin/nft", "/usr/sbin/dnsmasq",
                 "/usr/sbin/hostapd", "/usr/bin/prometheus", "/usr/lib/systemd/system/"
                 "telecentre-firstboot.service"):
        assert "Inode:" in _debugfs(root, f"stat {path}"), path
    wants = _debugfs(root, "ls -l /etc/systemd/system/telecentre.target.wants")
    for unit in ("door", "web", "gateway", "link", "metrics-agent"):
        assert f"telecentre-{unit}.service" in wants
    assert "ssh_host_" not in _debugfs(root, "ls /etc/ssh")  # first boot makes them
    shadow = _debugfs(root, "cat /etc/shadow")
    for line in shadow.splitlines():
        if ":" in line:
            assert line.split(":")[1] in ("*", "!", "!*"), f"a password in the image: {line}"

    data = _extract(image, parts[2], tmp_path / "data.img")
    assert "TCDATA" in _sh("dumpe2fs", "-h", str(data))
    assert "telecentre" in _debugfs(data, "ls /lib")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _login(base: str) -> urllib.request.OpenerDirector:
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )
    page = opener.open(f"{base}/login", timeout=30).read().decode()
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    form = {"username": "mairie", "password": PASSWORD}
    if token:
        form["csrf_token"] = token.group(1)
    opener.open(f"{base}/login", urllib.parse.urlencode(form).encode(), timeout=60)
    return opener


def test_boots_applies_first_boot_and_serves_the_panel(image: Path, tmp_path: Path) -> None:
    disk = tmp_path / "disk.img"
    subprocess.run(["cp", "--sparse=always", str(image), str(disk)], check=True)
    parts = _partitions(disk)
    boot_at = f"{disk}@@{parts[0]['start'] * 512}"
    (tmp_path / "firstboot.toml").write_text(FIRSTBOOT, "utf-8")
    _sh("mcopy", "-i", boot_at, str(tmp_path / "firstboot.toml"),
        "::/telecentre-firstboot.toml")
    names = _sh("mdir", "-b", "-i", boot_at, "::/").split()
    kernel = next(n for n in names if re.match(r"::/vmlinuz-", n))
    initrd = next(n for n in names if re.match(r"::/initrd.img-", n))
    _sh("mcopy", "-i", boot_at, kernel, str(tmp_path / "vmlinuz"))
    _sh("mcopy", "-i", boot_at, initrd, str(tmp_path / "initrd"))
    # A card larger than the image: first boot grows the data partition into the rest.
    with open(disk, "r+b") as f:
        f.truncate(disk.stat().st_size + 256 * 2**20)

    port = _free_port()
    console = tmp_path / "console.log"
    monitor = tmp_path / "monitor.sock"
    qemu = subprocess.Popen(
        ["qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a72", "-smp", "2", "-m", "1536",
         "-kernel", str(tmp_path / "vmlinuz"), "-initrd", str(tmp_path / "initrd"),
         "-append", "root=LABEL=TCROOT ro rootwait console=ttyAMA0 net.ifnames=0",
         "-drive", f"file={disk},if=virtio,format=raw,cache=unsafe",
         "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:8080",
         "-device", "virtio-net-pci,netdev=n0,romfile=",
         "-display", "none", "-serial", f"file:{console}",
         "-monitor", f"unix:{monitor},server,nowait"],
        stdin=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    start = time.monotonic()
    try:
        while True:
            assert qemu.poll() is None, "qemu exited:\n" + console.read_text(errors="replace")
            if time.monotonic() - start > BOOT_TIMEOUT:
                pytest.fail("no panel after 20 minutes:\n"
                            + console.read_text(errors="replace")[-6000:])
            try:
                with urllib.request.urlopen(f"{base}/login", timeout=10) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            time.sleep(5)
        print(f"\nboot-to-panel time: {time.monotonic() - start:.0f} s (TCG, 2 vCPU)")

        opener = _login(base)
        deadline = time.monotonic() + 300
        while True:
            status = json.loads(opener.open(f"{base}/api/status", timeout=60).read())
            if status.get("reachable") or time.monotonic() > deadline:
                break
            time.sleep(5)
        assert status["reachable"] is True, status
        assert status["emulated"] is True, status  # no SPI, not a Pi: emulated door
    finally:
        if qemu.poll() is None:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(str(monitor))
                s.sendall(b"system_powerdown\n")
            try:
                qemu.wait(timeout=180)
            except subprocess.TimeoutExpired:
                qemu.kill()
                qemu.wait()
    log = console.read_text(errors="replace")
    assert "telecentre-firstboot.toml: applied and removed" in log

    parts = _partitions(disk)
    boot = _extract(disk, parts[0], tmp_path / "boot-after.img")
    after = _sh("mdir", "-b", "-i", str(boot), "::/")
    assert "::/telecentre-firstboot.toml" not in after
    report = _sh("mtype", "-i", str(boot), "::/telecentre-firstboot-report.txt")
    assert "applied and removed" in report
    raw = boot.read_bytes()
    for secret in (PASSWORD, "metrics-secret-77"):
        assert secret.encode() not in raw, "a secret stayed on the boot partition"

    data = _extract(disk, parts[2], tmp_path / "data-after.img")
    site = _debugfs(data, "cat /etc/telecentre/telecentre.toml")
    assert 'name = "Télécentre de test"' in site and 'backend = "emulated"' in site
    assert "Inode:" in _debugfs(data, "stat /ssh/ssh_host_ed25519_key")
    agent = json.loads(_debugfs(data, "cat /etc/telecentre/metrics-agent.yml"))
    assert agent["global"]["external_labels"]["site"] == "Télécentre de test"
    assert "Inode:" in _debugfs(data, "stat /lib/telecentre/telecentre.db")
    assert parts[2]["start"] + parts[2]["size"] > (image.stat().st_size // 512), (
        "the data partition was not grown")
    shutil.rmtree(tmp_path, ignore_errors=True)
