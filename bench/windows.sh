#!/usr/bin/env bash
# Windows build: `kiln.exe build` of the default recipe under Wine (Debian's wine64) against the Linux
# `kiln build` of the same inputs, in the same run, warm (the second and later builds: kernel,
# modules and zero-run hashes cached) and with a fresh cache of derived files (only the input
# packages). Wine's file I/O goes through wineserver, so the figure is an upper bound for native
# Windows. kiln.exe is the CLI-only build (packaging/cross.sh with KILN_NOGUI=1), the same code
# as the release's. Checks that both builds give the same image. Writes docs/bench-windows.md.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
KILN=${KILN_BIN:-$PWD/bin/kiln}
AGENT=${KILN_AGENT:-$PWD/bin/kiln-agent}
CACHE=${KILN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kiln}
WINE=$(command -v wine64 || echo /usr/lib/wine/wine64)
WINESERVER=$(command -v wineserver || echo /usr/lib/wine/wineserver64)
for f in "$KILN" "$AGENT" "$WINE"; do [ -x "$f" ] || { echo "bench/windows: $f missing (make build; apt-get install wine64)" >&2; exit 1; }; done
work=$(mktemp -d)
export WINEPREFIX="$work/prefix" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
trap '"$WINESERVER" -k 2>/dev/null || true; rm -rf "$work"' EXIT
unset DISPLAY WAYLAND_DISPLAY
version=$("$KILN" --version | awk '{print $2}')
KILN_NOGUI=1 bash packaging/cross.sh "$version" "$work/cross" windows >/dev/null
exe="$work/cross/windows-amd64/kiln.exe"
cp "$AGENT" "$work/cross/windows-amd64/kiln-agent"
t0=$(date +%s.%N)
"$WINE" wineboot --init >/dev/null 2>&1
boot=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
x86_64-w64-mingw32-gcc -shared -O2 -s -o "$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll" \
  packaging/wine/bcryptprimitives.c -ladvapi32
winpath() { echo "Z:${1//\//\\}"; }

# Each run writes a new output directory: under Wine 8 replacing a previous build fails (Go's
# directory removal uses a file-disposition call Wine 8 does not implement).
clean() { rm -rf "$work/lin" "$work/win"; }
# Private caches holding links to the input packages: "fresh" starts from only those.
fresh() {
  clean
  rm -rf "$work/cache"
  mkdir -p "$work/cache/debs"
  ln -s "$CACHE"/debs/*.deb "$work/cache/debs/"
}
fresh
export SOURCE_DATE_EPOCH=1704067200 KILN_KEYS="$work/keys"
linux() { KILN_AGENT="$AGENT" KILN_CACHE="$work/cache" "$KILN" build --out "$work/lin" >/dev/null 2>&1; }
windows() {
  KILN_KEYS="$(winpath "$work/keys")" KILN_CACHE="$(winpath "$work/cache")" \
    "$WINE" "$exe" build --out "$(winpath "$work/win")" >"$work/win.log" 2>&1 || { cat "$work/win.log" >&2; return 1; }
}
now() { date +%s.%N; }
timeit() { # median of RUNS timings; PREP runs untimed before each
  local ts=()
  for _ in $(seq "$RUNS"); do
    [ -z "${PREP:-}" ] || $PREP
    local a b
    a=$(now); "$@"; b=$(now)
    ts+=("$(awk -v a="$a" -v b="$b" 'BEGIN { print b - a }')")
  done
  printf '%s\n' "${ts[@]}" | sort -g | sed -n "$(( (RUNS + 1) / 2 ))p"
}
linux; windows # warm up both, and the keys
cmp "$work/lin/kiln-tiny.img" "$work/win/kiln-tiny.img" || { echo "bench/windows: the images differ" >&2; exit 1; }
lw=$(PREP=clean timeit linux)
ww=$(PREP=clean timeit windows)
lf=$(PREP=fresh timeit linux)
wf=$(PREP=fresh timeit windows)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f×", a / b }'; }
load=$(cut -d' ' -f1 /proc/loadavg)
{
  echo "# Windows build (under Wine)"
  echo
  echo "\`bash bench/windows.sh\` (RUNS=$RUNS, median), $(date -u +%F), $(nproc) cores shared with other work"
  echo "(load average $load at the end of the run), $("$WINE" --version 2>/dev/null || echo wine)."
  echo "\`kiln.exe build\` of the default recipe (Kiln Tiny) under Wine against the Linux \`kiln build\`"
  echo "of the same inputs; both images are byte-identical. A new Wine prefix (\`wineboot --init\`) took"
  echo "$boot s. Wine is an upper bound for native Windows."
  echo
  echo "| build | Linux kiln | kiln.exe under Wine | Wine vs. Linux |"
  echo "|---|---|---|---|"
  printf '| warm (kernel, modules, zero-run hashes cached) | %.2f s | %.2f s | %s |\n' "$lw" "$ww" "$(ratio "$ww" "$lw")"
  printf '| fresh cache (input packages only) | %.2f s | %.2f s | %s |\n' "$lf" "$wf" "$(ratio "$wf" "$lf")"
} > docs/bench-windows.md
cat docs/bench-windows.md
