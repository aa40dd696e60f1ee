#!/usr/bin/env bash
# Cross-builds Kiln's Windows and macOS programs for the release (make package):
#   OUTDIR/windows-amd64/kiln.exe   desktop app + CLI, cgo with Debian's mingw-w64 gcc, with the icon,
#                                   version information and an application manifest as resources
#   OUTDIR/darwin-amd64/kiln, OUTDIR/darwin-arm64/kiln
#                                   the CLI (-tags nogui, no cgo: the desktop app needs a Mac to build)
# Usage: packaging/cross.sh VERSION OUTDIR [windows|darwin]...   (default: both)
# KILN_NOGUI=1 builds kiln.exe without the desktop app and cgo (fast; the Wine tests use it).
# Needs: go, x86_64-w64-mingw32-gcc and -windres (gcc-mingw-w64-x86-64). A cold cache takes minutes
# for the Windows desktop app (Fyne's C parts); keep the Go build cache.
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:?usage: packaging/cross.sh VERSION OUTDIR [windows|darwin]...}
out=${2:?usage: packaging/cross.sh VERSION OUTDIR [windows|darwin]...}
shift 2
targets=("${@:-windows darwin}")
GO=${GO:-go}
ldflags="-X github.com/kilnproject/kiln/internal/version.Version=$version"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# FILEVERSION wants four numbers: the leading X.Y.Z of the version, else FyneApp.toml's.
base=$(sed -n 's/^ *Version *= *"\(.*\)"/\1/p' FyneApp.toml)
num=$(echo "${version#v}" | grep -oE '^[0-9]+\.[0-9]+\.[0-9]+' || echo "${base:-0.1.0}")
IFS=. read -r major minor patch <<<"$num"

windows() {
  local dir=$out/windows-amd64 windres=${WINDRES:-x86_64-w64-mingw32-windres}
  mkdir -p "$dir"
  $GO run ./packaging/icon -svg packaging/icon.svg -ico "$work/kiln.ico"
  cat > "$work/kiln.exe.manifest" <<'XML'
<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<assembly xmlns="urn:schemas-microsoft-com:asm.v1" manifestVersion="1.0">
  <assemblyIdentity type="win32" name="org.kilnproject.kiln" version="1.0.0.0" processorArchitecture="amd64"/>
  <trustInfo xmlns="urn:schemas-microsoft-com:asm.v3"><security><requestedPrivileges>
    <requestedExecutionLevel level="asInvoker" uiAccess="false"/>
  </requestedPrivileges></security></trustInfo>
  <compatibility xmlns="urn:schemas-microsoft-com:compatibility.v1"><application>
    <supportedOS Id="{8e0f7a12-bfb3-4fe8-b9a5-48fd50a15a9a}"/>
  </application></compatibility>
  <application xmlns="urn:schemas-microsoft-com:asm.v3"><windowsSettings>
    <dpiAware xmlns="http://schemas.microsoft.com/SMI/2005/WindowsSettings">true/pm</dpiAware>
    <dpiAwareness xmlns="http://schemas.microsoft.com/SMI/2016/WindowsSettings">PerMonitorV2</dpiAwareness>
    <longPathAware xmlns="http://schemas.microsoft.com/SMI/2016/WindowsSettings">true</longPathAware>
  </windowsSettings></application>
</assembly>
XML
  cat > "$work/kiln.rc" <<RC
#include <winver.h>
1 ICON "kiln.ico"
1 24 "kiln.exe.manifest"
1 VERSIONINFO
FILEVERSION $major,$minor,$patch,0
PRODUCTVERSION $major,$minor,$patch,0
FILEOS VOS_NT_WINDOWS32
FILETYPE VFT_APP
BEGIN
  BLOCK "StringFileInfo"
  BEGIN
    BLOCK "040904B0"
    BEGIN
      VALUE "CompanyName", "Kiln developers"
      VALUE "FileDescription", "Kiln: build, flash, preview and serve OS images"
      VALUE "FileVersion", "$version"
      VALUE "InternalName", "kiln"
      VALUE "OriginalFilename", "kiln.exe"
      VALUE "ProductName", "Kiln"
      VALUE "ProductVersion", "$version"
    END
  END
  BLOCK "VarFileInfo"
  BEGIN
    VALUE "Translation", 0x409, 1200
  END
END
RC
  (cd "$work" && $windres -O coff -i kiln.rc -o kiln.syso)
  # go build takes .syso objects from the package directory only (not through -overlay): the
  # object stays there for this build and is removed after it.
  # One Windows build of this tree at a time: a second one would link both objects.
  exec 9>"${TMPDIR:-/tmp}/kiln-cross-$(echo "$PWD" | cksum | cut -d' ' -f1).lock"
  flock 9
  syso=$PWD/zz_resources_windows_amd64.syso
  cp "$work/kiln.syso" "$syso"
  trap 'rm -rf "$work" "$syso"' EXIT
  if [ "${KILN_NOGUI:-}" = 1 ]; then
    GOOS=windows GOARCH=amd64 CGO_ENABLED=0 $GO build -tags nogui -trimpath -ldflags "$ldflags" -o "$dir/kiln.exe" .
  else
    GOOS=windows GOARCH=amd64 CGO_ENABLED=1 CC=${CC_WINDOWS:-x86_64-w64-mingw32-gcc} \
      $GO build -trimpath -ldflags "$ldflags -s -w" -o "$dir/kiln.exe" .
  fi
  rm -f "$syso"
  flock -u 9
  echo "cross: $dir/kiln.exe"
}

darwin() {
  for arch in amd64 arm64; do
    mkdir -p "$out/darwin-$arch"
    GOOS=darwin GOARCH=$arch CGO_ENABLED=0 $GO build -tags nogui -trimpath -ldflags "$ldflags -s -w" \
      -o "$out/darwin-$arch/kiln" .
    echo "cross: $out/darwin-$arch/kiln"
  done
}

for t in ${targets[*]}; do
  case $t in
    windows) windows ;;
    darwin) darwin ;;
    *) echo "cross: unknown target $t (windows, darwin)" >&2; exit 2 ;;
  esac
done
