#!/usr/bin/env bash
# Downloads the default image's input packages (kernel, busybox, systemd-boot, and GRUB for BIOS) into $KILN_CACHE/debs
# with apt-get download. Idempotent: packages already in the cache are not fetched again.
set -euo pipefail
cache="${KILN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kiln}"
dir="$cache/debs"
mkdir -p "$dir"
have() { compgen -G "$dir/${1}_*.deb" >/dev/null; }
# linux-image-amd64 is a metapackage: fetch it and the versioned kernel package it depends on.
kernel=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
if [ -z "$kernel" ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  kernel=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
fi
want=(linux-image-amd64 "$kernel" busybox-static systemd-boot-efi grub-pc-bin)
fetch=()
for p in "${want[@]}"; do have "$p" || fetch+=("$p"); done
if [ ${#fetch[@]} -eq 0 ]; then
  echo "inputs: cached in $dir"
  exit 0
fi
echo "inputs: downloading ${fetch[*]} into $dir"
tmp=$(mktemp -d)
chmod 0777 "$tmp"  # apt-get download drops privileges to _apt when it can
(cd "$tmp" && apt-get download "${fetch[@]}" 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
for p in "${fetch[@]}"; do
  compgen -G "$tmp/${p}_*.deb" >/dev/null || { echo "inputs: apt-get download $p failed" >&2; exit 1; }
done
mv "$tmp"/*.deb "$dir"/
rmdir "$tmp"
