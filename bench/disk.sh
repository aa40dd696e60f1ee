#!/usr/bin/env bash
# Disk image writer: Kiln's assembler/disk (GPT + one-pass FAT32) against the usual tools (truncate,
# sgdisk, mkfs.vfat, mcopy) making the same 512 MiB image (192 MiB ESP + FAT32 data partition) with
# 1,000 and 10,000 files of 4 KiB on the data partition, in the same run. Writes docs/bench-disk.md.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
GO=$(bash scripts/go.sh)
RUNS=${RUNS:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
$GO build -o "$work/diskimage" ./bench/diskimage

now() { date +%s.%N; }
# median of RUNS timings of a command, in seconds
timeit() {
  local ts=()
  for _ in $(seq "$RUNS"); do
    local t0 t1
    t0=$(now); "$@" >/dev/null; t1=$(now)
    ts+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')")
  done
  printf '%s\n' "${ts[@]}" | sort -g | sed -n "$(( (RUNS + 1) / 2 ))p"
}

peer() { # src img
  local src=$1 img=$2
  rm -f "$img"
  truncate -s 512M "$img"
  sgdisk -n 1:2048:+192M -t 1:ef00 -c 1:ESP -n 2:0:0 -t 2:0700 -c 2:data "$img" >/dev/null
  local s e
  s=$(sgdisk -i 2 "$img" | awk '/^First sector/ {print $3}')
  e=$(sgdisk -i 2 "$img" | awk '/^Last sector/ {print $3}')
  mkfs.vfat -F 32 -s 1 -n ESP --offset 2048 "$img" $((192 * 1024)) >/dev/null 2>&1
  mkfs.vfat -F 32 -s 8 -n KILN-DATA --offset "$s" "$img" $(((e - s + 1) / 2)) >/dev/null 2>&1
  mcopy -s -i "$img@@$((s * 512))" "$src"/* ::
}

kiln() { "$work/diskimage" -src "$1" -out "$2"; }

rows=()
for n in 1000 10000; do
  src="$work/src-$n"
  "$work/diskimage" -gen "$n" -src "$src"
  tk=$(timeit kiln "$src" "$work/kiln.img")
  tp=$(timeit peer "$src" "$work/peer.img")
  # Both images must hold the same files: spot-check the last one through mtools.
  off=$("$work/diskimage" -src "$src" -out "$work/kiln.img" | sed 's/.*data_offset=//')
  last=$(cd "$src" && find . -type f | sort | tail -1 | sed 's|^\./||')
  cmp <(mcopy -n -i "$work/kiln.img@@$off" "::$last" -) "$src/$last"
  cmp <(mcopy -n -i "$work/peer.img@@$off" "::$last" -) "$src/$last"
  ak=$(du -k "$work/kiln.img" | cut -f1)
  ap=$(du -k "$work/peer.img" | cut -f1)
  rows+=("$(awk -v n="$n" -v tk="$tk" -v tp="$tp" -v ak="$ak" -v ap="$ap" 'BEGIN {
    printf "| %d | %.2f s (%.0f files/s) | %.2f s (%.0f files/s) | %.3f× | %.1f / %.1f MiB |", n, tk, n / tk, tp, n / tp, tk / tp, ak / 1024, ap / 1024 }')")
  echo "${rows[-1]}"
done

{
  echo "# Disk image writer"
  echo
  echo "A 512 MiB GPT image (192 MiB FAT32 ESP, the rest a FAT32 data partition) holding N files of"
  echo "4 KiB (100 per directory) on the data partition. Kiln: \`assembler/disk\` through"
  echo "\`bench/diskimage\` (reading the files included). Peer: \`truncate\` + \`sgdisk\` + \`mkfs.vfat\` ×2 +"
  echo "\`mcopy -s\`, with the same cluster sizes. Median of $RUNS runs each, in the same run."
  echo
  echo "| files | Kiln | mkfs.vfat + mcopy + sgdisk | Kiln / peer time | allocated on disk (Kiln / peer) |"
  echo "|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
  echo
  echo "Command: \`bash bench/run.sh disk\` (or \`make bench\`), $(date -u +%Y-%m-%d), $(nproc) cores."
} > docs/bench-disk.md
echo "wrote docs/bench-disk.md"
