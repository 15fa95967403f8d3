#!/bin/sh
# Builds the SD-card image: Debian bookworm arm64 with mmdebstrap (qemu-user through
# binfmt_misc on an x86 machine), then three partitions assembled without loop devices
# (mkfs on files, mcopy, mkfs.ext4 -d, sfdisk, dd into place). Run as root.
#
#   image-build/build-image.sh OUTPUT.img [--reduced]
#
# --reduced (the CI boot test): no Wi-Fi firmware or regulatory database, and an initramfs
# with a short list of modules; everything the boot test checks is the same. See README.md.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
out=${1:?usage: build-image.sh OUTPUT.img [--reduced]}
reduced=${2:-}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
work=${IMAGE_WORKDIR:-$(dirname "$(realpath -m "$out")")/image-work}
python=${PYTHON:-python3}

[ "$(id -u)" = 0 ] || { echo "build-image.sh: run as root (mmdebstrap --mode=root)"; exit 1; }

# Sizes in MiB. The data partition is grown to the end of the card at first boot.
boot_mib=256
root_mib=${ROOT_MIB:-0}
data_mib=64

start=$(date +%s)
"$here/binfmt.sh"

rm -rf "$work"
mkdir -p "$work/wheels"
# The appliance's wheel and its dependencies, fetched on the build machine for arm64:
# pip in the arm64 chroot only unpacks them (it runs under qemu-user: slow). All pure
# Python except markupsafe and lgpio, which have manylinux aarch64 wheels; spidev has none
# on PyPI, so the image takes Debian's python3-spidev (system site packages). mfrc522 goes
# in without its dependencies (RPi.GPIO; rpi-lgpio provides that module).
"$python" -m pip wheel --quiet --no-deps --wheel-dir "$work/wheels" "$repo"
"$python" -m pip download --quiet --dest "$work/wheels" --only-binary=:all: \
    --python-version 3.11 --implementation cp --abi cp311 \
    --platform manylinux_2_34_aarch64 --platform manylinux_2_28_aarch64 \
    --platform manylinux_2_17_aarch64 --platform manylinux2014_aarch64 \
    "$(ls "$work"/wheels/telecentre_appliance-*.whl)" 'lgpio>=0.2' 'rpi-lgpio>=0.6'
"$python" -m pip download --quiet --dest "$work/wheels" --no-deps --only-binary=:all: \
    'mfrc522>=0.0.7,<0.1'

pkgs="linux-image-arm64 raspi-firmware initramfs-tools zstd systemd-sysv systemd-resolved
systemd-timesyncd udev kmod dbus openssh-server ca-certificates iproute2 iputils-ping
nftables dnsmasq hostapd iw prometheus iperf3 python3 python3-venv python3-spidev
dosfstools e2fsprogs fdisk util-linux tzdata"
if [ "$reduced" = --reduced ]; then
  export IMAGE_REDUCED=1
else
  pkgs="$pkgs firmware-brcm80211 wireless-regdb rfkill"
fi

mmdebstrap --mode=root --architectures=arm64 --variant=apt \
  --include="$(echo $pkgs | tr ' ' ',')" \
  --dpkgopt=force-confold \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
  --setup-hook="\"$here/setup-hook.sh\" \"\$1\" \"$repo\"" \
  --essential-hook="\"$here/essential-hook.sh\" \"\$1\"" \
  --customize-hook="\"$here/customize.sh\" \"\$1\" \"$repo\" \"$work/wheels\"" \
  bookworm "$work/rootfs" \
  "deb $mirror bookworm main non-free-firmware" \
  "deb $mirror bookworm-updates main non-free-firmware" \
  "deb http://deb.debian.org/debian-security bookworm-security main non-free-firmware"

"$here/assemble.sh" "$work/rootfs" "$out" "$boot_mib" "$root_mib" "$data_mib"
rm -rf "$work"
end=$(date +%s)
echo "build-image: $out, $(du -m --apparent-size "$out" | cut -f1) MiB, built in $((end - start)) s"
