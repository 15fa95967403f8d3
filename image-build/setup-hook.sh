#!/bin/sh
# mmdebstrap setup hook: settings that packages read while they install. Debian's
# raspi-firmware writes /boot/firmware/config.txt and cmdline.txt from these files on
# every kernel update, so our boot configuration lives here, not in config.txt itself.
set -eu
root=$1
repo=$2
mkdir -p "$root/etc/default" "$root/boot/firmware"
cat > "$root/etc/default/raspi-firmware" <<'CONF'
# Written by the telecentre image build (image-build/setup-hook.sh).
KERNEL_ARCH="arm64"
ROOTPART=LABEL=TCROOT
CONSOLES="tty0 ttyS1,115200"
CONF
# Our fragment is appended to config.txt by raspi-firmware's hook, on every kernel update.
cp "$repo/firmware/config.txt" "$root/etc/default/raspi-firmware-custom"
# The root file system is read-only at run time; the data partition holds what changes.
echo "ro" > "$root/etc/default/raspi-extra-cmdline"
