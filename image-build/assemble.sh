#!/bin/sh
# Turns the mmdebstrap root directory into a partitioned SD-card image, without loop
# devices or mounts (they are often unavailable in CI containers): each file system is
# made in a file (mkfs.vfat + mcopy, mkfs.ext4 -d), the table is written with sfdisk,
# and the file systems are copied into place with dd.
#
#   assemble.sh ROOTDIR OUTPUT.img BOOT_MIB ROOT_MIB DATA_MIB
#
# MBR (the Pi's firmware reads the first FAT partition of an MBR disk):
#   1 TCBOOT  FAT32  /boot/firmware  firmware, kernel, initrd, config.txt, first-boot file
#   2 TCROOT  ext4   /               read-only at run time
#   3 TCDATA  ext4   /data           state, metrics buffer, site config, SSH keys; grown
#                                    to the end of the card at first boot
set -eu
root=$1 out=$2 boot_mib=$3 root_mib=$4 data_mib=$5
work=$(dirname "$root")
offset=4  # MiB before the first partition

# The root file system, at least 30 % larger than its content (the update path writes a
# new root of the same size, see docs/admin).
used=$(du -sm --exclude=./boot/firmware "$root" | cut -f1)
need=$((used * 13 / 10 + 64))
[ "$root_mib" -ge "$need" ] || root_mib=$need

# The boot partition's content moves out of the root tree (it is a mount point there).
rm -rf "$work/bootfs" "$work/datafs"
mv "$root/boot/firmware" "$work/bootfs"
mkdir "$root/boot/firmware"

# The data partition's initial content: empty state, with the owners the units expect.
uid=$(awk -F: '$1 == "telecentre" {print $3}' "$root/etc/passwd")
gid=$(awk -F: '$1 == "telecentre" {print $3}' "$root/etc/group")
[ -n "$uid" ] && [ -n "$gid" ] || { echo "assemble.sh: no telecentre user in the image"; exit 1; }
d=$work/datafs
mkdir -p "$d/etc" "$d/lib" "$d/ssh/authorized_keys"
install -d -m 0750 -o 0 -g "$gid" "$d/etc/telecentre"
install -d -m 0750 -o "$uid" -g "$gid" "$d/lib/telecentre"
install -d -m 0700 "$d/lib/private" "$d/ssh"
cp -a "$root/var/lib/systemd" "$d/lib/systemd"
cp -a "$root/var/lib/misc" "$d/lib/misc"
echo 1 > "$d/layout-version"

rm -f "$work/boot.img" "$work/root.img" "$work/data.img"
mkfs.vfat -F 32 -n TCBOOT -C "$work/boot.img" $((boot_mib * 1024)) >/dev/null
(cd "$work/bootfs" && MTOOLS_SKIP_CHECK=1 mcopy -s -p -m -i "$work/boot.img" ./* ::)
mkfs.ext4 -q -L TCROOT -d "$root" -E root_owner=0:0 "$work/root.img" "${root_mib}M"
mkfs.ext4 -q -L TCDATA -d "$d" -E root_owner=0:0 "$work/data.img" "${data_mib}M"

total=$((offset + boot_mib + root_mib + data_mib))
rm -f "$out"
truncate -s "${total}M" "$out"
sfdisk --quiet "$out" <<TABLE
label: dos
unit: sectors
start=$((offset * 2048)), size=$((boot_mib * 2048)), type=c, bootable
start=$(((offset + boot_mib) * 2048)), size=$((root_mib * 2048)), type=83
start=$(((offset + boot_mib + root_mib) * 2048)), size=$((data_mib * 2048)), type=83
TABLE
dd if="$work/boot.img" of="$out" bs=1M seek="$offset" conv=notrunc,sparse status=none
dd if="$work/root.img" of="$out" bs=1M seek=$((offset + boot_mib)) conv=notrunc,sparse status=none
dd if="$work/data.img" of="$out" bs=1M seek=$((offset + boot_mib + root_mib)) \
  conv=notrunc,sparse status=none
rm -f "$work/boot.img" "$work/root.img" "$work/data.img"
