#!/bin/sh
# Installs the Debian packages the appliance needs: `base` for the venv and the
# demo, `test` for the whole test suite. As root it installs what is missing;
# otherwise it says what to install. Under CI=true a missing tool fails the run.
set -eu
want="${1:-base}"

base_pkgs="python3 python3-venv python3-pip"
# chromium: the panel's browser tests; prometheus: promtool checks the metrics, the
# alert rules and the agent/central configs, and tests/dashboards runs both Prometheus;
# sqlite3: inspecting the state database in tests and by hand.
# systemd: systemd-analyze verify/security on our units; device-tree-compiler: dtc.
# iperf3, iproute2, nftables, dnsutils: the link service's real-network tests in
# namespaces (iperf3 is also the product's own-server backend); nftables and iproute2
# also the gateway's namespace tests; dnsmasq: the gateway's DHCP (option 114) tests;
# udhcpc: busybox's DHCP client, the phone in those tests (it reports option 114).
# hostapd: the generated access-point configuration is parsed by the real hostapd.
# openssl: a throwaway CA for the fake speedtest.net (HTTPS) in the link tests.
# The SD-card image (`make image`, tests/image; also `system-deps.sh image` alone):
# mmdebstrap with arm64 emulation (qemu-user-static, registered by image-build/binfmt.sh,
# checked by arch-test), file systems made in files without loop devices (dosfstools,
# mtools, e2fsprogs, fdisk), and qemu-system-arm (qemu-system-aarch64) to boot the result.
test_pkgs="chromium prometheus sqlite3 procps systemd device-tree-compiler iperf3 iproute2 nftables dnsutils dnsmasq udhcpc hostapd openssl"

missing=""
need() { # package, command-or-path that proves it is there
  if ! command -v "$2" >/dev/null 2>&1 && [ ! -e "$2" ]; then missing="$missing $1"; fi
}

need python3 python3
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then missing="$missing python3-venv"; fi
if [ "$want" = test ]; then
  need chromium /usr/bin/chromium
  need prometheus promtool
  need sqlite3 sqlite3
  need procps pgrep
  need systemd systemd-analyze
  need device-tree-compiler dtc
  need iperf3 iperf3
  need iproute2 ss
  need nftables nft
  need dnsutils dig
  need dnsmasq /usr/sbin/dnsmasq
  need udhcpc udhcpc
  need hostapd /usr/sbin/hostapd
  need openssl openssl
fi
# The image tools are part of `test` too: tests/image builds and boots the image in CI
# (openssh-client: the boot test logs in to the virtual machine with a first-boot key).
if [ "$want" = image ] || [ "$want" = test ]; then
  need mmdebstrap mmdebstrap
  need qemu-user-static /usr/bin/qemu-aarch64-static
  need arch-test arch-test
  need dosfstools mkfs.vfat
  need mtools mcopy
  need e2fsprogs mkfs.ext4
  need fdisk sfdisk
  need qemu-system-arm qemu-system-aarch64
  need device-tree-compiler dtc
  need openssh-client ssh-keygen
fi
[ -z "$missing" ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing Debian packages:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
  exit 0
fi
echo "Missing Debian packages:$missing"
echo "Install them with: sudo apt-get install$missing"
if [ "${CI:-}" = true ]; then exit 1; fi
if [ "$want" = base ]; then exit 1; fi
echo "(tests that need them will be skipped)"
