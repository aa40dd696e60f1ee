#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages Kiln needs to build, run and test, skipping what is already there.
set -euo pipefail
pkgs=(
  # Go toolchain needs (cgo for Fyne and libusb)
  gcc pkg-config libgl1-mesa-dev xorg-dev libxkbcommon-dev libwayland-dev libusb-1.0-0-dev
  # image building and its checks
  mtools dosfstools gdisk fdisk cpio bmap-tools binutils e2fsprogs kmod
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
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#pkgs[@]} packages present"
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "deps: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
