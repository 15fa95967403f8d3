"""The SD-card image: build it (reduced, see image-build/README.md), check its partitions
and content, boot it under qemu-system-aarch64 -M virt (TCG: no KVM for arm64 on x86) with
a first-boot file, then check, under the first real systemd the units meet: every service
active, the panel answering on the WAN side with the first-boot password, the emulated
door up, exposure from the running systemd, the relock on stop, and the first boot's work
(secrets gone from the boot partition, SSH host keys, data partition grown, agent config).

Slow (about 20 minutes on 2 cores): needs root (mmdebstrap --mode=root, binfmt_misc).
Under CI=true the image is always built from the sources. Elsewhere,
TELECENTRE_IMAGE=path reuses an image (`make image` or `image-build/build-image.sh X
--reduced`). The figures (build time, boot-to-panel time, image size) are printed (-s) and
written to image-figures.json in the test's temporary directory.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import shlex
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.door.devices import Lock
from tests.conftest import IN_CI, require_tool

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "image-build" / "build-image.sh"
PASSWORD = "image-test-password-42"
METRICS_SECRET = "metrics-secret-77"
FIRSTBOOT = """
[site]
name = "Télécentre de test"
[admin]
username = "mairie"
password = "{password}"
[wan]
interface = "eth0"
mode = "dhcp"
[metrics]
remote_write_url = "https://metrics.invalid/api/v1/write"
username = "site-test"
password = "{metrics_secret}"
[ssh]
authorized_keys = ["{key}"]
"""
SERVICES = ["door", "web", "gateway", "link", "metrics-agent"]
UNITS = [f"telecentre-{s}.service" for s in SERVICES]
OTHER_UNITS = ["nftables.service", "dnsmasq.service", "ssh.service",
               "systemd-networkd.service", "telecentre-firstboot.service",
               "telecentre-hostapd-reload.path", "telecentre-dnsmasq-reload.path",
               "paths.target"]
BOOT_TIMEOUT = 12 * 60
MAX_EXPOSURE = 2.5
FIGURES: dict[str, float | str] = {}

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


def _record(figures_file: Path, **figures: float | str) -> None:
    FIGURES.update(figures)
    figures_file.write_text(json.dumps(FIGURES, indent=2) + "\n")
    print("\nimage figures:", json.dumps(figures))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("image")


@pytest.fixture(scope="module")
def image(workdir: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("the image test needs root (mmdebstrap --mode=root, binfmt_misc)")
        pytest.skip("the image test needs root")
    subprocess.run([str(REPO / "scripts" / "system-deps.sh"), "image"], check=IN_CI)
    for tool in ("mmdebstrap", "arch-test", "mkfs.vfat", "mcopy", "mkfs.ext4", "sfdisk",
                 "debugfs", "qemu-system-aarch64", "dtc", "/usr/bin/qemu-aarch64-static",
                 "ssh", "ssh-keygen"):
        require_tool(tool)
    given = os.environ.get("TELECENTRE_IMAGE")
    if given and not IN_CI:
        yield Path(given)
        return
    out = workdir / "telecentre.img"
    start = time.monotonic()
    subprocess.run([str(BUILD), str(out), "--reduced"], check=True)
    _record(workdir / "image-figures.json", build_seconds=round(time.monotonic() - start),
            load_after_build=os.getloadavg()[0])
    yield out
    out.unlink()  # 1.9 GB: pytest keeps the last runs' directories


def test_partitions_and_content(image: Path, workdir: Path, tmp_path: Path) -> None:
    _record(workdir / "image-figures.json",
            image_mib=round(image.stat().st_size / 2**20),
            image_data_mib=round(image.stat().st_blocks * 512 / 2**20))
    parts = _partitions(image)
    assert [p["type"] for p in parts] == ["c", "83", "83"]
    assert parts[0].get("bootable") is True

    boot = _extract(image, parts[0], tmp_path / "boot.img")
    files = _sh("mdir", "-b", "-i", str(boot), "::/")
    for name in ("config.txt", "cmdline.txt", "bcm2711-rpi-4-b.dtb",
                 "telecentre-firstboot.toml.example"):
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
    # The units in the image are the repository's (a stale copy would test nothing).
    for name in UNITS:
        shipped = _debugfs(root, f"cat /usr/lib/systemd/system/{name}")
        assert shipped == (REPO / "systemd" / name).read_text(), name
    wants = _debugfs(root, "ls -l /etc/systemd/system/telecentre.target.wants")
    for name in UNITS:
        assert name in wants
    assert "ssh_host_" not in _debugfs(root, "ls /etc/ssh")  # first boot makes them
    shadow = _debugfs(root, "cat /etc/shadow")
    for line in shadow.splitlines():
        if ":" in line:
            assert line.split(":")[1] in ("*", "!", "!*"), f"a password in the image: {line}"

    data = _extract(image, parts[2], tmp_path / "data.img")
    assert "TCDATA" in _sh("dumpe2fs", "-h", str(data))
    assert "telecentre" in _debugfs(data, "ls /lib")
    for fs in (boot, root, data):  # 1.8 GB: pytest keeps the last runs' directories
        fs.unlink()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _login(base: str) -> urllib.request.OpenerDirector:
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )
    page = opener.open(f"{base}/login", timeout=60).read().decode()
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    form = {"username": "mairie", "password": PASSWORD}
    if token:
        form["csrf_token"] = token.group(1)
    page = opener.open(f"{base}/login", urllib.parse.urlencode(form).encode(), timeout=60)
    assert not page.geturl().endswith("/login"), "the first-boot password was refused"
    return opener


class Vm:
    """The booted image: qemu with the WAN (eth0) on user networking, the panel's port and
    SSH forwarded to loopback, the serial console (and the journal) in a file."""

    def __init__(self, tmp: Path, disk: Path, kernel: Path, initrd: Path, key: Path) -> None:
        self.key = key
        self.console = tmp / "console.log"
        self.monitor = tmp / "monitor.sock"
        self.http_port, self.ssh_port = _free_port(), _free_port()
        self.base = f"http://127.0.0.1:{self.http_port}"
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            ["qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a72", "-smp", "2",
             "-m", "1536", "-kernel", str(kernel), "-initrd", str(initrd),
             "-append", "root=LABEL=TCROOT ro rootwait console=ttyAMA0 net.ifnames=0 "
             "systemd.journald.forward_to_console=1",
             "-drive", f"file={disk},if=virtio,format=raw,cache=unsafe",
             "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{self.http_port}-:8080,"
             f"hostfwd=tcp:127.0.0.1:{self.ssh_port}-:22",
             "-device", "virtio-net-pci,netdev=n0,romfile=",
             # eth1: a wired LAN port (the VM has no Wi-Fi), isolated from the host.
             "-netdev", "user,id=n1,restrict=on",
             "-device", "virtio-net-pci,netdev=n1,romfile=",
             "-display", "none", "-serial", f"file:{self.console}", "-no-reboot",
             "-monitor", f"unix:{self.monitor},server,nowait"],
            stdin=subprocess.DEVNULL,
        )

    def log(self, tail: int = 8000) -> str:
        text = self.console.read_text(errors="replace") if self.console.exists() else ""
        return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)[-tail:]

    def alive(self) -> None:
        assert self.proc.poll() is None, "qemu exited:\n" + self.log()

    def ssh(self, command: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """A root shell command in the VM, with the first-boot file's key."""
        return subprocess.run(
            ["ssh", "-i", str(self.key), "-p", str(self.ssh_port), "-o", "BatchMode=yes",
             "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
             "-o", "ConnectTimeout=30", "-o", "LogLevel=ERROR", "root@127.0.0.1", command],
            capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        )

    def run(self, command: str, timeout: float = 120) -> str:
        result = self.ssh(command, timeout)
        assert result.returncode == 0, (command, result.stdout, result.stderr)
        return result.stdout

    def wait_for(self, what: str, check, timeout: float) -> float:
        """Seconds from qemu's start until check() is true (polled), else fail."""
        deadline = time.monotonic() + timeout
        while True:
            self.alive()
            try:
                if check():
                    return time.monotonic() - self.started
            except (OSError, ValueError, subprocess.TimeoutExpired):
                pass  # not up yet (connection refused or reset, a page still loading)
            if time.monotonic() > deadline:
                pytest.fail(f"{what}: not after {timeout:.0f} s\n" + self.log())
            time.sleep(3)

    def power_off(self) -> None:
        """A clean shutdown (the first boot's writes reach the disk), over SSH; the power
        button through qemu's monitor if SSH is not up; killed after that."""
        if self.proc.poll() is not None:
            return
        try:
            self.ssh("systemctl poweroff --no-block", timeout=60)
            self.proc.wait(timeout=180)
            return
        except subprocess.TimeoutExpired:
            pass
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(str(self.monitor))
            s.recv(4096)  # the monitor's banner: it reads commands after it
            s.sendall(b"system_powerdown\n")
            s.recv(4096)
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _panel_answers(base: str) -> bool:
    with urllib.request.urlopen(f"{base}/login", timeout=20) as r:
        return r.status == 200


def _board(vm: Vm) -> dict:
    return json.loads(vm.run("cat /run/telecentre/board.json"))


def test_boots_applies_first_boot_and_serves_the_panel(
    image: Path, workdir: Path, tmp_path: Path
) -> None:
    disk = tmp_path / "disk.img"
    subprocess.run(["cp", "--sparse=always", str(image), str(disk)], check=True)
    parts = _partitions(disk)
    boot_at = f"{disk}@@{parts[0]['start'] * 512}"
    key = tmp_path / "id_ed25519"
    _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "image-test", "-f", str(key))
    public = key.with_suffix(".pub").read_text().strip()
    (tmp_path / "firstboot.toml").write_text(
        FIRSTBOOT.format(password=PASSWORD, metrics_secret=METRICS_SECRET, key=public), "utf-8"
    )
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

    vm = Vm(tmp_path, disk, tmp_path / "vmlinuz", tmp_path / "initrd", key)
    try:
        # The panel from the WAN side (eth0, the ISP box's network: the admin's laptop).
        to_panel = vm.wait_for("the panel on the WAN side", lambda: _panel_answers(vm.base),
                               BOOT_TIMEOUT)
        _record(workdir / "image-figures.json", boot_to_panel_seconds=round(to_panel),
                load_at_panel=os.getloadavg()[0])

        opener = _login(vm.base)
        status: dict = {}

        def door_up() -> bool:
            nonlocal status
            status = json.loads(opener.open(f"{vm.base}/api/status", timeout=60).read())
            return bool(status.get("reachable") and status.get("reader_up"))

        vm.wait_for("the door's status in the panel", door_up, 300)
        assert status["emulated"] is True, status  # no SPI, not a Pi: emulated door
        assert status["locked"] is True, status

        _check_units_under_systemd(vm)
        _check_lan(vm)
        _check_first_boot_work(vm)
        _check_relock_on_stop(vm)
    finally:
        vm.power_off()
        (workdir / "console.log").write_text(vm.log(tail=10**7))
    log = vm.log(tail=10**7)
    assert "telecentre-firstboot.toml: applied and removed" in log

    parts = _partitions(disk)
    boot = _extract(disk, parts[0], tmp_path / "boot-after.img")
    after = _sh("mdir", "-b", "-i", str(boot), "::/").split()
    assert "::/telecentre-firstboot.toml" not in after, after  # the .example stays
    assert "::/telecentre-firstboot.toml.example" in after
    report = _sh("mtype", "-i", str(boot), "::/telecentre-firstboot-report.txt")
    assert "applied and removed" in report
    raw = boot.read_bytes()
    for secret in (PASSWORD, METRICS_SECRET):
        assert secret.encode() not in raw, "a secret stayed on the boot partition"
    assert parts[2]["start"] + parts[2]["size"] > (image.stat().st_size // 512), (
        "the data partition was not grown")
    data = _extract(disk, parts[2], tmp_path / "data-after.img")
    site = _debugfs(data, "cat /etc/telecentre/telecentre.toml")
    assert 'name = "Télécentre de test"' in site and 'backend = "emulated"' in site
    for name in ("disk.img", "data-after.img", "boot-after.img"):
        (tmp_path / name).unlink()


def _check_units_under_systemd(vm: Vm) -> None:
    units = " ".join(UNITS + OTHER_UNITS)

    def all_active() -> bool:
        return vm.ssh(f"systemctl is-active {units}").returncode == 0

    vm.wait_for("every service active", all_active, 300)
    assert vm.run("systemctl --failed --no-legend --plain").strip() == ""
    # systemd breaks an ordering cycle by dropping a job and boots on: only the log says so.
    cycles = vm.run("journalctl -b -o cat --no-pager | grep -i 'ordering cycle' || true")
    assert cycles.strip() == "", cycles
    # Exposure as the running systemd computes it (not only --offline on the files).
    out = vm.run(f"systemd-analyze security --no-pager {' '.join(UNITS)}")
    exposure = {m[1]: float(m[2]) for m in re.finditer(r"^(\S+\.service)\s+(\d+\.\d+)\s",
                                                       out, re.M)}
    assert set(exposure) == set(UNITS), out
    assert max(exposure.values()) <= MAX_EXPOSURE, exposure
    # lgpio's notification pipes go to the runtime directory (the root is read-only).
    env = vm.run("systemctl show -p Environment --value telecentre-door.service")
    assert "LG_WD=/run/telecentre" in env.split()
    # The gateway got CAP_NET_ADMIN through its ambient capabilities: its table is loaded,
    # and the LAN (guests) reaches only DHCP, DNS and the portal on the box, not the panel.
    chain = vm.run("nft list chain inet telecentre lan_to_box")
    assert re.search(r"^\s*drop\s*$", chain, re.M) and "8080" not in chain, chain
    assert 'iifname "eth0"' not in vm.run("nft list chain inet telecentre input")
    # The agent runs with the first boot's configuration (a credential of its unit only).
    ready = "import urllib.request as u; print(u.urlopen('http://127.0.0.1:9099/-/ready').status)"
    assert vm.run(f"python3 -c {shlex.quote(ready)}").strip() == "200"
    mode = vm.run("stat -c '%a %U' /etc/telecentre/metrics-agent.yml").split()
    assert mode == ["600", "root"], mode
    agent = json.loads(vm.run("cat /etc/telecentre/metrics-agent.yml"))
    assert agent["global"]["external_labels"]["site"] == "Télécentre de test"
    assert agent["remote_write"][0]["url"] == "https://metrics.invalid/api/v1/write"


def _check_lan(vm: Vm) -> None:
    """The LAN side of a box: IPv4 forwarding on, nftables' base ruleset ours (closed), the
    gateway puts the box's address on the LAN interface and dnsmasq serves there. The
    site's default LAN is wlan0, which this VM lacks: the gateway says so; then the site
    config names eth1 (a wired LAN port) and only the gateway is restarted, as the admin
    does: it rewrites dnsmasq's file and telecentre-dnsmasq-reload.path restarts dnsmasq
    on it. A restart with the same settings leaves dnsmasq alone."""
    assert vm.run("sysctl -n net.ipv4.ip_forward").strip() == "1"
    assert "policy drop" in vm.run("cat /etc/nftables.conf")  # ours, not Debian's
    journal = vm.run("journalctl -b -u telecentre-gateway.service -o cat --no-pager")
    assert "LAN interface wlan0 does not exist" in journal, journal[-3000:]
    vm.run("sed -i 's/^lan_interface = \"wlan0\"$/lan_interface = \"eth1\"/' "
           "/etc/telecentre/telecentre.toml")
    assert 'lan_interface = "eth1"' in vm.run("cat /etc/telecentre/telecentre.toml")
    reload_unit = "telecentre-dnsmasq-reload.service"
    # The boot wrote dnsmasq's file before dnsmasq started: the path unit never fired.
    assert _show(vm, reload_unit, "ExecMainStartTimestampMonotonic") == "0"
    dnsmasq_run = _show(vm, "dnsmasq.service", "InvocationID")
    assert dnsmasq_run, "dnsmasq has no invocation"
    vm.run("systemctl restart telecentre-gateway.service")  # not dnsmasq: the path unit does
    vm.wait_for("the box's address on the LAN",
                lambda: " 10.42.0.1/24 " in vm.run("ip -4 -o addr show dev eth1"), 120)
    forward = vm.run("nft list chain inet telecentre forward")
    assert "policy accept" in forward and "jump from_lan" in forward, forward
    conf = vm.run("cat /run/telecentre/dnsmasq.d/telecentre.conf").splitlines()
    assert "interface=eth1" in conf, conf
    # The dnsmasq started at boot (interface=wlan0) never listens on eth1's address.
    vm.wait_for("dnsmasq restarted by its path unit, on the LAN address",
                lambda: _show(vm, "dnsmasq.service", "InvocationID") not in ("", dnsmasq_run)
                and "10.42.0.1:53 " in vm.run("ss -Hlnu 'sport = :53'"), 120)
    assert vm.run("systemctl is-active telecentre-gateway.service dnsmasq.service").split() == [
        "active", "active"]
    assert _show(vm, reload_unit, "ExecMainStartTimestampMonotonic") != "0"
    assert _show(vm, reload_unit, "Result") == "success"
    # Same settings: the gateway leaves the file alone, and the path unit dnsmasq.
    reloaded_at = _show(vm, reload_unit, "ExecMainStartTimestampMonotonic")
    dnsmasq_run = _show(vm, "dnsmasq.service", "InvocationID")
    vm.run("systemctl restart telecentre-gateway.service")
    time.sleep(15)  # the file is written before READY=1: the path unit would have fired
    assert _show(vm, reload_unit, "ExecMainStartTimestampMonotonic") == reloaded_at
    assert _show(vm, "dnsmasq.service", "InvocationID") == dnsmasq_run
    assert "10.42.0.1:53 " in vm.run("ss -Hlnu 'sport = :53'")


def _show(vm: Vm, unit: str, prop: str) -> str:
    return vm.run(f"systemctl show -p {prop} --value {unit}").strip()


def _check_first_boot_work(vm: Vm) -> None:
    assert vm.ssh("test -e /boot/firmware/telecentre-firstboot.toml").returncode == 1
    # Host keys made on this card (the image has none); sshd used them for this session.
    keys = vm.run("ls /data/ssh").split()
    assert {"ssh_host_ed25519_key", "ssh_host_rsa_key"} <= set(keys), keys
    scanned = _sh("ssh-keyscan", "-t", "ed25519", "-p", str(vm.ssh_port), "127.0.0.1")
    assert vm.run("cut -d' ' -f2 /data/ssh/ssh_host_ed25519_key.pub").strip() in scanned
    assert vm.run("findmnt -n -o OPTIONS /").startswith("ro")
    data_bytes = int(vm.run("lsblk -b -n -o SIZE /dev/disk/by-label/TCDATA"))
    assert data_bytes > 200 * 2**20, "the data partition was not grown"
    assert int(vm.run("df -B1 --output=size /data | tail -1")) > 180 * 2**20, (
        "the data file system was not resized")
    assert vm.run("stat -c %U /var/lib/telecentre/telecentre.db").strip() == "telecentre"


def _lines(out: str) -> list[str]:
    """The board's JSON and the VM's clock, printed by the unlock command."""
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 2, out
    return lines


def _check_relock_on_stop(vm: Vm) -> None:
    """Stopping the door unit leaves the lock locked: a clean stop (the service relocks
    itself, then ExecStopPost=), and a SIGKILL of the whole unit (ExecStopPost= alone)."""
    locked = Lock.locked_pin_level(relay_active_high=True, fail_safe=False)
    unlock = ("runuser -u telecentre -- /opt/telecentre/bin/telecentre unlock >/dev/null"
              " && cat /run/telecentre/board.json && echo && date +%s.%N")
    before, _ = _lines(vm.run(f"{unlock} && systemctl stop telecentre-door.service",
                              timeout=180))
    assert json.loads(before)["pins"]["lock"]["level"] is not locked  # it was open
    board = _board(vm)
    assert board["pins"]["lock"]["level"] is locked, board
    assert board.get("by") == "relock", board

    vm.run("systemctl start telecentre-door.service", timeout=180)  # Type=notify: ready
    before, killed_at = _lines(
        vm.run(f"{unlock} && systemctl kill --signal=SIGKILL telecentre-door.service")
    )
    assert json.loads(before)["pins"]["lock"]["level"] is not locked

    def relocked() -> bool:
        board = _board(vm)
        if board["pins"]["lock"]["level"] is not locked:
            return False
        if board.get("by") == "relock" and board["at"] > float(killed_at):
            return True
        # The unit restarts (Restart=on-failure) and the new door rewrites the board: then
        # the relock's own log line, after the kill, is the proof.
        since = vm.run("journalctl -u telecentre-door.service -o cat --no-pager "
                       f"--since @{int(float(killed_at))}")
        return "driven to its locked level" in since

    vm.wait_for("the relock after SIGKILL", relocked, 120)
    journal = vm.run("journalctl -b -u telecentre-door.service -o cat --no-pager")
    assert "State 'stop-post' timed out" not in journal, journal[-3000:]
