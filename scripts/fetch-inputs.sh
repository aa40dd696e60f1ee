#!/usr/bin/env bash
# Downloads the default image's input packages (kernel, busybox, systemd-boot, and GRUB for BIOS) into $KILN_CACHE/debs,
# and the arm64-uefi and rpi boards' into $KILN_CACHE/debs-arm64,
# with `kiln packages download` (from the host's apt sources, checked against the archive keyring;
# apt is not needed). Idempotent: packages already in the cache are not fetched again.
# `kiln build` fetches missing inputs by itself; this fills debs/, which the tests read.
set -euo pipefail
cache="${KILN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kiln}"
dir="$cache/debs"
kiln="${KILN_BIN:-bin/kiln}"
[ -x "$kiln" ] || { echo "inputs: $kiln missing: run make build (make inputs does)" >&2; exit 1; }
mkdir -p "$dir"
have() { compgen -G "$dir/${1}_*.deb" >/dev/null; }
# linux-image-amd64 is a metapackage: the versioned kernel package it depends on comes with it.
want=(linux-image-amd64 busybox-static systemd-boot-efi grub-pc-bin)
fetch=()
for p in "${want[@]}"; do have "$p" || fetch+=("$p"); done
if ! compgen -G "$dir/linux-image-[0-9]*_*.deb" >/dev/null && [[ ! " ${fetch[*]} " =~ " linux-image-amd64 " ]]; then
  fetch+=(linux-image-amd64)
fi
if [ ${#fetch[@]} -eq 0 ]; then
  echo "inputs: cached in $dir"
else
  echo "inputs: downloading ${fetch[*]} into $dir"
  KILN_CACHE="$cache" "$kiln" packages download --dir "$dir" "${fetch[@]}"
fi

# The arm64 inputs (board arm64-uefi) into debs-arm64/: packages of one name must not mix arches.
dir64="$cache/debs-arm64"
mkdir -p "$dir64"
fetch=()
for p in linux-image-arm64 busybox-static systemd-boot-efi; do compgen -G "$dir64/${p}_*.deb" >/dev/null || fetch+=("$p"); done
if ! compgen -G "$dir64/linux-image-[0-9]*_*.deb" >/dev/null && [[ ! " ${fetch[*]} " =~ " linux-image-arm64 " ]]; then
  fetch+=(linux-image-arm64)
fi
if [ ${#fetch[@]} -gt 0 ]; then
  echo "inputs: downloading ${fetch[*]} (arm64) into $dir64"
  KILN_CACHE="$cache" "$kiln" packages download --arch arm64 --dir "$dir64" "${fetch[@]}"
fi
# The rpi board's firmware lives in the archive's non-free-firmware component.
if ! compgen -G "$dir64/raspi-firmware_*.deb" >/dev/null; then
  echo "inputs: downloading raspi-firmware into $dir64"
  KILN_CACHE="$cache" "$kiln" packages download --arch arm64 --components main,non-free-firmware --dir "$dir64" raspi-firmware
fi
