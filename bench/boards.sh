#!/usr/bin/env bash
# Boards: the same recipe built for pc (x86_64) and for arm64-uefi, cold (a fresh private cache
# holding links to the input packages: the kernel's module index and the modules are read from
# the package) and warm (every later build); then the arm64-uefi image's boot to its ready line
# under TCG with `kiln preview --machine virt --expect` against a hand-written
# qemu-system-aarch64 -M virt line (same CPU, firmware, memory, virtio disk). Writes
# docs/bench-boards.md.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
KILN=${KILN_BIN:-$PWD/bin/kiln}
AGENT=${KILN_AGENT:-$PWD/bin/kiln-agent}
CACHE=${KILN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kiln}
AAVMF_CODE=${AAVMF_CODE:-/usr/share/AAVMF/AAVMF_CODE.fd}
AAVMF_VARS=${AAVMF_VARS:-/usr/share/AAVMF/AAVMF_VARS.fd}
for f in "$KILN" "$AGENT" "$AGENT-arm64"; do [ -x "$f" ] || { echo "bench/boards: $f missing: run make build" >&2; exit 1; }; done
for d in debs debs-arm64; do compgen -G "$CACHE/$d/*.deb" >/dev/null || { echo "bench/boards: $CACHE/$d is empty: run make inputs" >&2; exit 1; }; done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export SOURCE_DATE_EPOCH=1704067200 KILN_AGENT="$AGENT" KILN_KEYS="$work/keys"

now() { date +%s.%N; }
median() { sort -g | sed -n "$(( (RUNS + 1) / 2 ))p"; }
# fresh: a private cache with links to the input packages and nothing else.
fresh() {
  rm -rf "$work/cache" && mkdir -p "$work/cache/debs" "$work/cache/debs-arm64"
  ln -s "$CACHE"/debs/*.deb "$work/cache/debs/" && ln -s "$CACHE"/debs-arm64/*.deb "$work/cache/debs-arm64/"
}
recipe() { # recipe BOARD: the same product recipe for a board
  printf 'kiln = 1\nname = "bench"\nversion = "1.0.0"\n[board]\nname = "%s"\n[system]\nhostname = "bench"\n' "$1" > "$work/$1.toml"
}
# build BOARD cold|warm: median seconds of RUNS builds
build() {
  local board=$1 mode=$2 ts=()
  recipe "$board"
  fresh
  for _ in $(seq "$RUNS"); do
    [ "$mode" = warm ] || fresh
    [ "$mode" = cold ] || KILN_CACHE="$work/cache" "$KILN" build --recipe "$work/$board.toml" --lock "$work/$board.lock" --out "$work/out-$board" >/dev/null 2>&1
    rm -f "$work/$board.lock"
    local t0 t1
    t0=$(now)
    KILN_CACHE="$work/cache" "$KILN" build --recipe "$work/$board.toml" --lock "$work/$board.lock" --out "$work/out-$board" >/dev/null 2>&1
    t1=$(now)
    rm -f "$work/$board.lock"
    ts+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')")
  done
  printf '%s\n' "${ts[@]}" | median
}
pc_cold=$(build pc cold); pc_warm=$(build pc warm)
arm_cold=$(build arm64-uefi cold); arm_warm=$(build arm64-uefi warm)
img="$work/out-arm64-uefi/bench.img"
ready="kiln: ready name=bench version=1.0.0 hostname=bench"

# Boot: kiln preview (machine from the manifest) vs a hand-written line, to the ready line.
kiln_boot() {
  local t0 t1 ts=()
  for _ in $(seq "$RUNS"); do
    t0=$(now)
    "$KILN" preview --headless --expect "$ready" --timeout 5m "$img" >/dev/null 2>&1
    t1=$(now)
    ts+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')")
  done
  printf '%s\n' "${ts[@]}" | median
}
hand_boot() {
  local t0 t1 ts=()
  for _ in $(seq "$RUNS"); do
    cp "$AAVMF_VARS" "$work/vars.fd"
    t0=$(now)
    timeout 300 qemu-system-aarch64 -nodefaults -no-user-config -machine virt -accel tcg,thread=multi -cpu cortex-a72 \
      -smp 2 -m 1024M -drive "if=pflash,unit=0,format=raw,readonly=on,file=$AAVMF_CODE" \
      -drive "if=pflash,unit=1,format=raw,file=$work/vars.fd" -drive "if=none,id=d,file=$img,format=raw" \
      -device virtio-blk-pci,drive=d -snapshot -netdev user,id=n -device virtio-net-pci,netdev=n \
      -display none -serial stdio 2>/dev/null | grep -m1 -q "$ready" || true
    t1=$(now)
    ts+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')")
  done
  printf '%s\n' "${ts[@]}" | median
}
kb=$(kiln_boot); hb=$(hand_boot)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f×", a / b }'; }
{
  echo "# Boards: arm64 build and preview"
  echo
  echo "\`bash bench/boards.sh\` (RUNS=$RUNS, median), $(date -u +%F), $(nproc) cores, load average $(cut -d' ' -f1 /proc/loadavg) at the end."
  echo "The same five-line recipe built with \`[board] name = \"pc\"\` and \`\"arm64-uefi\"\` from the hand-filled input"
  echo "packages (cold: a fresh cache, the kernel package read and its modules picked; warm: every later build)."
  echo
  echo "| build | pc (x86_64) | arm64-uefi | arm64 vs x86 |"
  echo "|---|---|---|---|"
  printf '| cold | %.2f s | %.2f s | %s |\n' "$pc_cold" "$arm_cold" "$(ratio "$arm_cold" "$pc_cold")"
  printf '| warm | %.2f s | %.2f s | %s |\n' "$pc_warm" "$arm_warm" "$(ratio "$arm_warm" "$pc_warm")"
  echo
  echo "Boot of the arm64-uefi image to its ready line under TCG (AAVMF → systemd-boot → UKI, -cpu cortex-a72, 2 vCPUs, 1 GiB):"
  echo
  echo "| boot | time | vs. hand-written QEMU line |"
  echo "|---|---|---|"
  printf '| qemu-system-aarch64 -M virt, hand-written | %.2f s | 1.00× |\n' "$hb"
  printf '| kiln preview (machine from the manifest) | %.2f s | %s |\n' "$kb" "$(ratio "$kb" "$hb")"
} > docs/bench-boards.md
cat docs/bench-boards.md
