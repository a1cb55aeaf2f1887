#!/bin/sh
# Build a small ext4 root file system for spore's --rootfs tests, without
# root privileges: busybox and its applets, the mount points the guest init
# needs, and a marker file.
# Usage: mkrootfs.sh BUSYBOX OUTPUT
set -eu
busybox=$1
out=$2

tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT

mkdir -p "$tree/bin" "$tree/etc" "$tree/proc" "$tree/sys" "$tree/dev" "$tree/tmp" "$tree/run" "$tree/root"
cp "$busybox" "$tree/bin/busybox"
chmod 0755 "$tree/bin/busybox"
for applet in sh cat echo ls mkdir rm sleep env uname grep sync true false test touch mount pwd; do
	ln -s busybox "$tree/bin/$applet"
done
printf 'ID=spore-test-rootfs\nNAME="spore test root file system"\n' > "$tree/etc/os-release"

rm -f "$out"
mkfs.ext4 -q -F -L spore-test -d "$tree" "$out" 64M
