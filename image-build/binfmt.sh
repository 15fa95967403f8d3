#!/bin/sh
# Makes sure arm64 binaries run on this machine (qemu-user-static through binfmt_misc).
# Without a running systemd (containers, CI VMs) nothing registers the emulator: do it here.
set -eu
if ! mountpoint -q /proc/sys/fs/binfmt_misc; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  /usr/lib/systemd/systemd-binfmt /usr/lib/binfmt.d/qemu-aarch64.conf
fi
arch-test arm64 >/dev/null || { echo "binfmt.sh: arm64 binaries do not run here"; exit 1; }
