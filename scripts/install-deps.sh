#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages Kiln needs to build, run and test, skipping what is already there.
set -euo pipefail
pkgs=(
  # Go toolchain needs (cgo for Fyne and libusb)
  gcc pkg-config libgl1-mesa-dev xorg-dev libxkbcommon-dev libwayland-dev libusb-1.0-0-dev
  # image building and its checks
  mtools dosfstools gdisk fdisk cpio bmap-tools binutils e2fsprogs kmod erofs-utils
  # peers for the cpio and UKI tests (busybox cpio -t, systemd's EFI stub)
  busybox-static systemd-boot-efi
  # compression peers
  xz-utils zstd gzip pigz isal bzip2 zip unzip
  # peers for the GRUB core image and environment block tests (grub-mkimage, grub-editenv)
  grub-common
  # preview (QEMU, firmware)
  qemu-system-x86 qemu-system-gui qemu-utils ovmf seabios xorriso
  # arm64 previews (arm64-uefi: qemu-system-aarch64 -M virt, AAVMF; rpi: -M raspi3b)
  qemu-system-arm qemu-efi-aarch64
  # arm64 package images: their maintainer scripts run under QEMU user emulation (binfmt_misc)
  qemu-user-static binfmt-support
  # the Windows release (cross-built with mingw-w64) and its tests under Wine
  gcc-mingw-w64-x86-64 binutils-mingw-w64-x86-64 wine64 util-linux
  # GUI tests and screenshots
  xvfb imagemagick xdotool x11-utils
  # first-boot settings checks (cloud-init schema, netplan generate)
  cloud-init netplan.io
  # networking tests, benchmarks
  iproute2 socat hyperfine time
  # package images against mmdebstrap and the usual image tools (bench/mmdebstrap.sh); apt for
  # the resolver's comparison test
  mmdebstrap squashfs-tools apt
  # the device database on PostgreSQL, and nginx as the load balancer of several servers
  postgresql nginx
  # package builds as an ordinary user (newuidmap/newgidmap for the user namespace)
  uidmap
)
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
# QEMU user emulation registered with the kernel, for arm64 package images built here. Where
# systemd runs, binfmt-support's service does this at boot; containers and CI machines need it
# done by hand.
enable_binfmt() {
  [ "$(uname -m)" = aarch64 ] && return 0
  [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] && return 0
  [ -e /proc/sys/fs/binfmt_misc/register ] || $sudo mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || true
  $sudo update-binfmts --enable qemu-aarch64 ||
    echo "deps: could not register QEMU user emulation for arm64 (binfmt_misc): arm64 package images will not build" >&2
}
# rootless_user makes the user the rootless package build test runs as, with a subordinate id
# range for its user namespace (root only; idempotent).
rootless_user() {
  [ "$(id -u)" -eq 0 ] || return 0
  local u=kiln-build-test r=1879048192-1879113727
  touch /etc/subuid /etc/subgid # usermod adds ranges only to files that exist
  id "$u" >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$u"
  grep -q "^$u:" /etc/subuid 2>/dev/null || usermod --add-subuids "$r" "$u"
  grep -q "^$u:" /etc/subgid 2>/dev/null || usermod --add-subgids "$r" "$u"
}
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#pkgs[@]} packages present"
  enable_binfmt
  rootless_user
  exit 0
fi
echo "deps: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
enable_binfmt
rootless_user
