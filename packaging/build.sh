#!/usr/bin/env bash
# Builds Kiln's Linux release artifacts from bin/kiln and bin/kiln-agent (make package):
#   dist/kiln-<version>-linux-<arch>.tar.xz   the `fyne package` layout: usr/local/{bin,share}/… + Makefile
#   dist/kiln_<version>_<arch>.deb             /usr/bin/kiln, /usr/bin/kiln-agent, desktop entry, icons,
#                                              the polkit policy for `kiln flash-helper`
#   dist/kiln-<version>-windows-amd64.zip      kiln.exe (app + CLI) and kiln-agent   } from KILN_CROSS
#   dist/kiln-<version>-darwin-<arch>.tar.gz   kiln (CLI) and kiln-agent             } (packaging/cross.sh)
# Usage: packaging/build.sh VERSION [OUTDIR]   (env KILN_BIN, KILN_AGENT override the binaries;
# KILN_CROSS is the directory cross.sh wrote, default bin/cross; missing platforms are skipped;
# KILN_PACKAGES="windows darwin" leaves out the Linux packages)
# Needs: tar, xz, dpkg-deb, zip (no network). The .desktop file and the icon come from FyneApp.toml and
# assets/icon.png.
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:?usage: packaging/build.sh VERSION [OUTDIR]}
out=${2:-dist}
bin=${KILN_BIN:-bin/kiln}
agent=${KILN_AGENT:-bin/kiln-agent}
level=${KILN_XZ_LEVEL:-6} # xz preset for both archives; tests use 0 for speed
# agents DIR: kiln-agent and the agents for images of each arch (make build writes them beside
# bin/kiln-agent) into DIR.
agents() {
  install -Dm755 "$agent" "$1/kiln-agent"
  for a in amd64 arm64; do
    [ ! -f "$agent-$a" ] || install -Dm755 "$agent-$a" "$1/kiln-agent-$a"
  done
}
for f in "$bin" "$agent" assets/icon.png packaging/org.kilnproject.kiln.flash-helper.policy; do
  [ -f "$f" ] || { echo "package: $f is missing (run make build)" >&2; exit 1; }
done
app_id=org.kilnproject.kiln
arch=$(dpkg --print-architecture 2>/dev/null || go env GOARCH)
# Debian versions must start with a digit: "ce9a44b-dirty" or "v0.2.0-3-gabc" become
# "0.1.0+git.ce9a44b.dirty" / "0.2.0+3.gabc".
base=$(sed -n 's/^ *Version *= *"\(.*\)"/\1/p' FyneApp.toml)
v=${version#v}
if [[ ! $v =~ ^[0-9] ]]; then
  v="${base:-0.1.0}+git.${v//-/.}"
elif [[ $v == *-* ]]; then
  v="${v/-/+}"; v="${v//-/.}"
fi
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

toml() { sed -n "s/^ *$1 *= *\"\(.*\)\"/\1/p" FyneApp.toml | head -1; }
list() { sed -n "s/^ *$1 *= *\[\(.*\)\]/\1/p" FyneApp.toml | tr -d '"' | sed 's/, */;/g'; }
desktop() { # $1 = Exec path, $2 = Icon name
  cat <<EOF
[Desktop Entry]
Type=Application
Name=$(toml Name)
GenericName=$(toml GenericName)
Comment=$(toml Comment)
Exec=$1
Icon=$2
Terminal=false
Categories=$(list Categories);
Keywords=$(list Keywords);
StartupWMClass=kiln
EOF
}

linux() {
# 1. tar.xz in the `fyne package` layout, installable with `sudo make install` or `make user-install`.
t=$work/tar/kiln
install -Dm755 "$bin" "$t/usr/local/bin/kiln"
agents "$t/usr/local/bin"
desktop kiln $app_id > "$work/kiln.desktop"
install -Dm644 "$work/kiln.desktop" "$t/usr/local/share/applications/$app_id.desktop"
install -Dm644 assets/icon.png "$t/usr/local/share/pixmaps/$app_id.png"
install -Dm644 packaging/org.kilnproject.kiln.flash-helper.policy "$t/usr/local/share/polkit-1/actions/$app_id.flash-helper.policy"
sed -i 's#/usr/bin/kiln#/usr/local/bin/kiln#' "$t/usr/local/share/polkit-1/actions/$app_id.flash-helper.policy"
cat > "$t/Makefile" <<'EOF'
# Kiln: `sudo make install` puts Kiln under /usr/local; `make user-install` under ~/.local (flashing
# then asks for sudo in a terminal, as polkit only trusts system-wide policies).
PREFIX ?= /usr/local
install:
	install -Dm755 usr/local/bin/kiln $(DESTDIR)$(PREFIX)/bin/kiln
	install -Dm755 usr/local/bin/kiln-agent $(DESTDIR)$(PREFIX)/bin/kiln-agent
	for a in amd64 arm64; do [ ! -f usr/local/bin/kiln-agent-$$a ] || install -Dm755 usr/local/bin/kiln-agent-$$a $(DESTDIR)$(PREFIX)/bin/kiln-agent-$$a; done
	install -Dm644 usr/local/share/applications/org.kilnproject.kiln.desktop $(DESTDIR)$(PREFIX)/share/applications/org.kilnproject.kiln.desktop
	install -Dm644 usr/local/share/pixmaps/org.kilnproject.kiln.png $(DESTDIR)$(PREFIX)/share/pixmaps/org.kilnproject.kiln.png
	install -Dm644 usr/local/share/polkit-1/actions/org.kilnproject.kiln.flash-helper.policy $(DESTDIR)/usr/share/polkit-1/actions/org.kilnproject.kiln.flash-helper.policy
uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/kiln $(DESTDIR)$(PREFIX)/bin/kiln-agent $(DESTDIR)$(PREFIX)/bin/kiln-agent-amd64 $(DESTDIR)$(PREFIX)/bin/kiln-agent-arm64 \
	  $(DESTDIR)$(PREFIX)/share/applications/org.kilnproject.kiln.desktop \
	  $(DESTDIR)$(PREFIX)/share/pixmaps/org.kilnproject.kiln.png \
	  $(DESTDIR)/usr/share/polkit-1/actions/org.kilnproject.kiln.flash-helper.policy
user-install:
	install -Dm755 usr/local/bin/kiln $(HOME)/.local/bin/kiln
	install -Dm755 usr/local/bin/kiln-agent $(HOME)/.local/bin/kiln-agent
	for a in amd64 arm64; do [ ! -f usr/local/bin/kiln-agent-$$a ] || install -Dm755 usr/local/bin/kiln-agent-$$a $(HOME)/.local/bin/kiln-agent-$$a; done
	sed 's#^Exec=.*#Exec=$(HOME)/.local/bin/kiln#' usr/local/share/applications/org.kilnproject.kiln.desktop > $(HOME)/.local/share/applications/org.kilnproject.kiln.desktop
	install -Dm644 usr/local/share/pixmaps/org.kilnproject.kiln.png $(HOME)/.local/share/icons/hicolor/512x512/apps/org.kilnproject.kiln.png
user-uninstall:
	rm -f $(HOME)/.local/bin/kiln $(HOME)/.local/bin/kiln-agent $(HOME)/.local/bin/kiln-agent-amd64 $(HOME)/.local/bin/kiln-agent-arm64 $(HOME)/.local/share/applications/org.kilnproject.kiln.desktop \
	  $(HOME)/.local/share/icons/hicolor/512x512/apps/org.kilnproject.kiln.png
.PHONY: install uninstall user-install user-uninstall
EOF
tarball="$out/kiln-$v-linux-$arch.tar.xz"
XZ_OPT="-T0 -$level" tar -C "$work/tar" --owner=0 --group=0 --numeric-owner --sort=name -cJf "$tarball" kiln

# 2. .deb built with dpkg-deb (no network, no nfpm needed).
d=$work/deb
install -Dm755 "$bin" "$d/usr/bin/kiln"
agents "$d/usr/bin"
desktop /usr/bin/kiln $app_id > "$work/kiln-deb.desktop"
install -Dm644 "$work/kiln-deb.desktop" "$d/usr/share/applications/$app_id.desktop"
install -Dm644 assets/icon.png "$d/usr/share/icons/hicolor/512x512/apps/$app_id.png"
install -Dm644 assets/icon.png "$d/usr/share/pixmaps/kiln.png" # the polkit policy's icon_name
install -Dm644 packaging/org.kilnproject.kiln.flash-helper.policy "$d/usr/share/polkit-1/actions/$app_id.flash-helper.policy"
# Shared libraries the binary links, mapped to the packages that ship them on this system.
depends=$( (ldd "$bin" 2>/dev/null || true) | awk '/=> \//{print $3}' | while read -r lib; do
  dpkg -S "$(readlink -f "$lib")" 2>/dev/null || dpkg -S "$lib" 2>/dev/null || true
done | cut -d: -f1 | sort -u | paste -sd, | sed 's/,/, /g')
size=$(du -sk "$d" | cut -f1)
mkdir -p "$d/DEBIAN"
cat > "$d/DEBIAN/control" <<EOF
Package: kiln
Version: $v
Architecture: $arch
Maintainer: Kiln developers <dev@kilnproject.org>
Installed-Size: $size
Depends: ${depends:-libc6}
Recommends: qemu-system-x86, ovmf, pkexec | policykit-1, xz-utils, isal | pigz, uidmap
Suggests: bmap-tools, qemu-system-arm, qemu-efi-aarch64, qemu-user-static, binfmt-support
Section: admin
Priority: optional
Homepage: $(toml Website)
Description: build, flash, preview and serve bootable OS images
 Kiln builds a bootable disk image from a recipe, flashes it to USB sticks and SD
 cards (never to a system drive, verified by reading back), previews it in QEMU and
 serves signed A/B updates to devices on the home network. The desktop app and the
 kiln command share the same core.
EOF
deb="$out/kiln_${v}_$arch.deb"
dpkg-deb --root-owner-group -Zxz -z"$level" --build "$d" "$deb" >/dev/null
echo "package: $tarball"
echo "package: $deb"
}
want() { [[ " ${KILN_PACKAGES:-linux windows darwin} " == *" $1 "* ]]; }
if want linux; then linux; fi

# 3. Windows and macOS, from the cross-built programs. kiln-agent is the Linux program that goes
# into images: every platform's release carries it beside kiln.
cross=${KILN_CROSS:-bin/cross}
touch -d "@${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}" "$work/stamp"
if want windows && [ -f "$cross/windows-amd64/kiln.exe" ]; then
  z=$work/win/kiln-$v-windows-amd64
  install -Dm755 "$cross/windows-amd64/kiln.exe" "$z/kiln.exe"
  agents "$z"
  install -Dm644 LICENSE "$z/LICENSE.txt"
  sed 's/$/\r/' > "$z/README.txt" <<EOF
Kiln $version for Windows (64-bit)

kiln.exe opens the desktop app; with arguments it is the command line (kiln.exe help).
Keep the kiln-agent files next to kiln.exe: they are the Linux programs Kiln puts into the images it builds.
Flashing a drive needs administrator rights (right-click kiln.exe, Run as administrator).
Preview needs QEMU for Windows (https://qemu.weilnetz.de/ or winget install qemu).
Settings and keys: %APPDATA%\\kiln; downloads and the input cache: %LOCALAPPDATA%\\kiln.
EOF
  find "$work/win" -exec touch -r "$work/stamp" {} +
  zipfile="$out/kiln-$v-windows-amd64.zip"; zipabs=$(realpath -m "$zipfile")
  rm -f "$zipabs"
  (cd "$work/win" && find "kiln-$v-windows-amd64" | LC_ALL=C sort | zip -X -q -"${KILN_ZIP_LEVEL:-9}" "$zipabs" -@)
  echo "package: $zipfile"
fi
for arch in amd64 arm64; do
  want darwin && [ -f "$cross/darwin-$arch/kiln" ] || continue
  m=$work/mac-$arch/kiln-$v-darwin-$arch
  install -Dm755 "$cross/darwin-$arch/kiln" "$m/kiln"
  agents "$m"
  install -Dm644 LICENSE "$m/LICENSE"
  find "$work/mac-$arch" -exec touch -r "$work/stamp" {} +
  tgz="$out/kiln-$v-darwin-$arch.tar.gz"
  tar -C "$work/mac-$arch" --owner=0 --group=0 --numeric-owner --sort=name -cf - "kiln-$v-darwin-$arch" | gzip -n -9 > "$tgz"
  echo "package: $tgz"
done
