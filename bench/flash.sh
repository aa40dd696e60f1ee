#!/usr/bin/env bash
# Flash benchmarks: `kiln flash` against dd, bmaptool, and the decompressors on loop devices backed
# by files (direct I/O on, so writes reach the backing file), peers measured in the same run.
# Prints a Markdown table; needs root. Usage: bench/flash.sh [IMAGE_MiB] (default 1024).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench/flash.sh needs root (loop devices)" >&2; exit 1; }
KILN=${KILN_BIN:-$PWD/bin/kiln}
MIB=${1:-1024}
RUNS=${RUNS:-3}
W=$(mktemp -d /var/tmp/kiln-bench-flash.XXXXXX)
cleanup() {
  [ -f "$W/loops" ] && while read -r l; do losetup -d "$l" 2>/dev/null || true; done < "$W/loops"
  rm -rf "$W" /dev/shm/kiln-bench-flash.disk
}
trap cleanup EXIT
loop() { # loop SIZE_MiB → device
  local f; f=$(mktemp "$W/disk.XXXX"); truncate -s "$1M" "$f"
  local l; l=$(losetup --find --show --direct-io=on "$f"); echo "$l" >> "$W/loops"; echo "$l"
}
# lower CURRENT NEW: the smaller of two times (CURRENT may be empty: none yet)
lower() { if [ -z "$1" ] || [ "$(echo "$2 < $1" | bc -l)" = 1 ]; then echo "$2"; else echo "$1"; fi; }
# best SECONDS of $RUNS runs of a shell command; page caches are dropped first unless DROP=0
best() {
  local b=""
  for _ in $(seq "$RUNS"); do
    [ "${DROP:-1}" = 0 ] || { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }
    local s e; s=$(date +%s.%N); bash -c "$1" >/dev/null 2>&1 || { echo "failed: $1" >&2; exit 1; }; e=$(date +%s.%N)
    b=$(lower "$b" "$(echo "$e - $s" | bc -l)")
  done
  printf '%.3f' "$b"
}
# pair CMD_A CMD_B: run the two alternately $RUNS times (the shared disk's speed drifts) and print
# "best_A best_B"
pair() {
  local a="" b="" t
  for _ in $(seq "$RUNS"); do
    t=$(RUNS=1 best "$1"); a=$(lower "$a" "$t")
    t=$(RUNS=1 best "$2"); b=$(lower "$b" "$t")
  done
  echo "$a $b"
}
ratio() { printf '%.2f' "$(echo "$1 / $2" | bc -l)"; }
rows=()
row() { rows+=("| $1 | $2 | $3 | $4 |"); }

echo "preparing a ${MIB} MiB image (system files: compressible like a real OS image)…" >&2
IMG=$W/test.img
tar -cf - /usr/lib /usr/share 2>/dev/null | head -c "$((MIB << 20))" > "$IMG" || true
truncate -s "${MIB}M" "$IMG"
DEV=$(loop $((MIB + 16)))
MB=$(echo "$MIB * 1.048576" | bc -l)

# 1. raw write, including the final flush (twice the runs: the headline figure, and the shared
# disk's speed swings by 2× within minutes)
read -r t_dd t_k < <(RUNS=$((RUNS * 2)) pair "dd if=$IMG of=$DEV bs=4M oflag=direct conv=fsync" "$KILN flash --yes --no-verify --no-bmap --image $IMG --device $DEV")
row "raw ${MIB} MiB write" "dd bs=4M oflag=direct conv=fsync: ${t_dd} s" "kiln: ${t_k} s" "$(ratio "$t_k" "$t_dd") × dd (goal ≤ 1.05)"
# The same on a memory-speed device (a loop device over a file in /dev/shm) with the image in the
# page cache: no disk in the loop, so this shows each tool's own cost without the disk's noise.
truncate -s "$((MIB + 16))M" /dev/shm/kiln-bench-flash.disk
MEMDEV=$(losetup --find --show /dev/shm/kiln-bench-flash.disk); echo "$MEMDEV" >> "$W/loops"
cat "$IMG" > /dev/null
read -r t_dd t_k < <(DROP=0 RUNS=$((RUNS * 2)) pair "dd if=$IMG of=$MEMDEV bs=4M oflag=direct conv=fsync" "$KILN flash --yes --no-verify --no-bmap --image $IMG --device $MEMDEV")
losetup -d "$MEMDEV"; rm -f /dev/shm/kiln-bench-flash.disk
row "raw ${MIB} MiB write, memory-speed device, image cached" "dd bs=4M oflag=direct conv=fsync: ${t_dd} s" "kiln: ${t_k} s" "$(ratio "$t_k" "$t_dd") × dd"

# 2. verify read-back against dd iflag=direct
t_ddr=$(best "dd if=$DEV of=/dev/null bs=4M iflag=direct count=$((MIB / 4))")
t_v=""
for _ in $(seq "$RUNS"); do # best verify phase of $RUNS flashes, like dd's best of $RUNS
  v=$("$KILN" flash --yes --json --no-bmap --image "$IMG" --device "$DEV" | tail -1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["result"][0]["verify_seconds"])')
  t_v=$(lower "$t_v" "$v")
done
row "verify ${MIB} MiB" "dd iflag=direct bs=4M of=/dev/null: ${t_ddr} s" "kiln verify phase: $(printf %.3f "$t_v") s" "$(ratio "$t_ddr" "$t_v") × dd throughput (goal ≥ 0.9)"

# 3. 1 GiB sparse image with 10% data and a block map
SP=$W/sparse.img
truncate -s 1G "$SP"
for i in $(seq 0 9); do dd if="$IMG" of="$SP" bs=1M count=10 skip=$((i * 10 % MIB)) seek=$((i * 100)) conv=notrunc status=none; done
bmaptool -q create -o "$SP.bmap" "$SP"
DEV2=$(loop 1040)
t_dd=$(best "dd if=$SP of=$DEV2 bs=4M oflag=direct conv=fsync")
read -r t_b t_k < <(pair "bmaptool -q copy $SP $DEV2" "$KILN flash --yes --no-verify --image $SP --device $DEV2")
row "1 GiB, 10% data + bmap" "bmaptool copy: ${t_b} s; dd: ${t_dd} s" "kiln: ${t_k} s" "$(ratio "$t_k" "$t_b") × bmaptool (goal ≤ 1.0), $(ratio "$t_dd" "$t_k") × faster than dd (goal ≥ 3)"
t_kv=$(best "$KILN flash --yes --image $SP --device $DEV2")
row "same, with read-back verify" "" "kiln: ${t_kv} s" ""

# 4. compressed images: device- or decompressor-bound
zstd -q -T0 -3 -f "$IMG" -o "$IMG.zst"
pigz -6 -c "$IMG" > "$IMG.gz"
xz -T0 -6 -c "$IMG" > "$IMG.xz"
t_raw=$(best "$KILN flash --yes --no-verify --no-bmap --image $IMG --device $DEV")
# For each format: the decompressor alone, the pipeline a user would otherwise type, and kiln (which
# picks the fastest installed decompressor: zstd in Go, igzip before pigz, xz -T0).
for f in zst gz xz; do
  case $f in
    zst) dec="zstd -dc -T0 $IMG.zst";;
    gz) dec="igzip -dc $IMG.gz"; command -v igzip >/dev/null || dec="pigz -dc $IMG.gz";;
    xz) dec="xz -dc -T0 $IMG.xz";;
  esac
  read -r t_d t_k < <(pair "$dec > /dev/null" "$KILN flash --yes --no-verify --image $IMG.$f --device $DEV")
  t_p=$(best "$dec | dd of=$DEV bs=4M iflag=fullblock oflag=direct conv=fsync")
  bound=$t_raw; [ "$(echo "$t_d > $bound" | bc -l)" = 1 ] && bound=$t_d
  row ".$f ($(du -m "$IMG.$f" | cut -f1) MiB)" "${dec%% *} alone: ${t_d} s; raw flash: ${t_raw} s; ${dec%% *} \| dd oflag=direct: ${t_p} s" "kiln: ${t_k} s" "$(ratio "$t_k" "$bound") × the slower of decompressor and raw flash; $(ratio "$t_k" "$t_p") × the pipeline's time; $(ratio "$t_d" "$t_k") × the decompressor's throughput"
done
if command -v igzip >/dev/null; then
  read -r t_d t_k < <(pair "pigz -dc $IMG.gz > /dev/null" "$KILN flash --yes --no-verify --decoder pigz --image $IMG.gz --device $DEV")
  row ".gz through pigz (--decoder pigz)" "pigz alone: ${t_d} s" "kiln: ${t_k} s" "$(ratio "$t_d" "$t_k") × pigz's throughput"
fi
t_x=$(best "xz -dc -T0 $IMG.xz > /dev/null")
# The built-in decoder (used when xz is not installed) is much slower per core: one run, with RSS.
s=$(date +%s.%N)
/usr/bin/time -o "$W/rss" -f '%M' "$KILN" flash --yes --no-verify --decoder go --image "$IMG.xz" --device "$DEV" >/dev/null 2>&1
t_k=$(echo "$(date +%s.%N) - $s" | bc -l)
row ".xz, built-in Go decoder (1 run)" "xz -dc -T0 > /dev/null: ${t_x} s" "kiln: $(printf %.3f "$t_k") s, peak RSS $(( $(tail -1 "$W/rss") / 1024 )) MiB" "$(ratio "$t_x" "$t_k") × xz throughput"

# 5. peak memory flashing a 4 GiB image (raw, zstd and xz), with verification
BIG=$W/big.img
for i in 1 2 3 4; do cat "$IMG"; done | head -c 4G > "$BIG"; truncate -s 4G "$BIG"
zstd -q -T0 -1 -f "$BIG" -o "$BIG.zst"; xz -T0 -0 -c "$BIG" > "$BIG.xz"; rm -f "$IMG.xz" "$IMG.gz" "$IMG.zst" "$SP"
DEV3=$(loop 4112)
for f in "$BIG" "$BIG.zst" "$BIG.xz --decoder exec"; do
  /usr/bin/time -o "$W/rss" -f '%M' "$KILN" flash --yes --image $f --device "$DEV3" >/dev/null 2>&1
  rss=$(tail -1 "$W/rss")
  row "peak RSS, 4 GiB $(basename "${f%% *}")${f#"${f%% *}"}" "" "$((rss / 1024)) MiB" "goal ≤ 256 MiB"
done

echo "| benchmark | peer | kiln | ratio |"
echo "|---|---|---|---|"
printf '%s\n' "${rows[@]}"
