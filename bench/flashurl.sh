#!/usr/bin/env bash
# URL flash benchmark: `kiln flash --image http://…/test.img.xz` from a loopback web server (busybox
# httpd, which answers Range requests) against `curl | xz -dc | dd` onto the same kind of loop
# device, alternating in the same run; also the peak RSS of each. Prints a Markdown table; needs
# root. Usage: bench/flashurl.sh [IMAGE_MiB] (default 1024).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench/flashurl.sh needs root (loop devices)" >&2; exit 1; }
for t in busybox curl xz /usr/bin/time bc; do command -v "$t" >/dev/null || { echo "needs $t" >&2; exit 1; }; done
KILN=${KILN_BIN:-$PWD/bin/kiln}
MIB=${1:-1024}
RUNS=${RUNS:-2}
W=$(mktemp -d /var/tmp/kiln-bench-url.XXXXXX)
cleanup() {
  [ -f "$W/httpd.pid" ] && kill "$(cat "$W/httpd.pid")" 2>/dev/null || true
  [ -f "$W/loops" ] && while read -r l; do losetup -d "$l" 2>/dev/null || true; done < "$W/loops"
  rm -rf "$W"
}
trap cleanup EXIT
loop() { # loop SIZE_MiB → device
  local f; f=$(mktemp "$W/disk.XXXX"); truncate -s "$1M" "$f"
  local l; l=$(losetup --find --show --direct-io=on "$f"); echo "$l" >> "$W/loops"; echo "$l"
}
lower() { if [ -z "$1" ] || [ "$(echo "$2 < $1" | bc -l)" = 1 ]; then echo "$2"; else echo "$1"; fi; }
# run CMD: seconds and peak RSS (KiB, the largest process of the command) as "SECONDS RSS"
run() {
  sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
  local s e; s=$(date +%s.%N)
  /usr/bin/time -o "$W/rss" -f %M bash -c "$1" >/dev/null 2>"$W/err" || { echo "failed: $1" >&2; cat "$W/err" >&2; exit 1; }
  e=$(date +%s.%N)
  echo "$(echo "$e - $s" | bc -l) $(tail -1 "$W/rss")"
}

echo "preparing a ${MIB} MiB image and its .xz…" >&2
mkdir -p "$W/www"
tar -cf - /usr/lib /usr/share 2>/dev/null | head -c "$((MIB << 20))" > "$W/test.img" || true
truncate -s "${MIB}M" "$W/test.img"
xz -T0 -3 -c "$W/test.img" > "$W/www/test.img.xz"
SUM=$(sha256sum "$W/www/test.img.xz" | cut -d' ' -f1)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
busybox httpd -f -p "127.0.0.1:$PORT" -h "$W/www" & echo $! > "$W/httpd.pid"
sleep 0.5
URL=http://127.0.0.1:$PORT/test.img.xz
DEV=$(loop $((MIB + 16)))

tk="" tp="" rk=0 rp=0
for _ in $(seq "$RUNS"); do
  read -r t r < <(run "curl -sf $URL | xz -dc -T0 | dd of=$DEV bs=4M iflag=fullblock oflag=direct conv=fsync status=none")
  tp=$(lower "$tp" "$t"); rp=$(( r > rp ? r : rp ))
  read -r t r < <(run "$KILN flash --yes --no-verify --sha256 $SUM --image $URL --device $DEV")
  tk=$(lower "$tk" "$t"); rk=$(( r > rk ? r : rk ))
done
cmp -n "$((MIB << 20))" "$DEV" "$W/test.img" || { echo "the drive differs from the image" >&2; exit 1; }
XZ=$(du -m "$W/www/test.img.xz" | cut -f1)
echo "| case | anchor | kiln | ratio |"
echo "|---|---|---|---|"
printf '| %s MiB image as .xz (%s MiB) from a loopback server, sha256 checked, no read-back | curl \\| xz -dc -T0 \\| dd oflag=direct: %.3f s, peak RSS %d MiB | kiln: %.3f s, peak RSS %d MiB | %.2f × the pipeline (goal ≤ 1.0) |\n' \
  "$MIB" "$XZ" "$tp" $((rp / 1024)) "$tk" $((rk / 1024)) "$(echo "$tk / $tp" | bc -l)"
