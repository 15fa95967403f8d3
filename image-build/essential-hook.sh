#!/bin/sh
# mmdebstrap essential hook: under qemu-user one initramfs takes minutes, and the kernel,
# udev, kmod, zstd... each ask for a new one while they install. Divert update-initramfs to
# a no-op now; customize.sh restores it and builds the initramfs once, at the end.
set -eu
root=$1
chroot "$root" dpkg-divert --quiet --local --rename --add /usr/sbin/update-initramfs
printf '#!/bin/sh\n# image build: deferred to customize.sh\nexit 0\n' > "$root/usr/sbin/update-initramfs"
chmod 0755 "$root/usr/sbin/update-initramfs"
