#!/usr/bin/env bash
# Raspberry Pi preview: time from start to the ready line of an rpi image on QEMU's raspi3b with
# `kiln preview --headless --expect` against a hand-written qemu-system-aarch64 line booting the
# same kernel, device tree and initramfs (taken from the image's boot slot with mtools) with the
# image as the SD card, in the same run, with hyperfine. Also the build time of the rpi image.
# Writes docs/bench-rpi.md.
#
# Internal use by the hyperfine command: bench/rpi.sh hand DIR IMAGE MARKER
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."

# hand DIR IMAGE MARKER: the machine kiln preview builds for raspi3b: single-threaded TCG, 4 CPUs,
# 1 GiB, the boot slot's kernel, device tree, initramfs and command line, the image on the SD card
# with -snapshot, user networking on a USB network adapter, serial console on the first UART.
hand() {
  local dir=$1 image=$2 marker=$3
  coproc Q { exec qemu-system-aarch64 -nodefaults -no-user-config -machine raspi3b -accel tcg,thread=single \
    -smp 4 -m 1024M -kernel "$dir/vmlinuz" -dtb "$dir/bcm2837-rpi-3-b.dtb" -initrd "$dir/initrd.img" \
    -append "$(cat "$dir/cmdline")" -drive "if=sd,index=0,file=$image,format=raw" -snapshot \
    -display none -netdev user,id=net0,hostfwd=tcp:127.0.0.1:0-:22 -device usb-net,netdev=net0 \
    -serial stdio 2>/dev/null; }
  local pid=$Q_PID
  grep -q -m1 -F -- "$marker" <&"${Q[0]}" || true
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
if [ "${1:-}" = hand ]; then
  hand "$2" "$3" "$4"
  exit 0
fi

RUNS=${RUNS:-3}
KILN=${KILN_BIN:-$PWD/bin/kiln}
[ -x "$KILN" ] || { echo "bench/rpi: $KILN missing: run make build" >&2; exit 1; }
command -v hyperfine >/dev/null || { echo "bench/rpi: hyperfine missing: run make deps" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export KILN_CACHE=${KILN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kiln}
export SOURCE_DATE_EPOCH=1704067200 KILN_KEYS="$work/keys"
printf 'kiln = 1\nname = "tiny-pi"\nversion = "1.0.0"\n[board]\nname = "rpi"\n[system]\nhostname = "pihost"\n' >"$work/kiln.toml"
start=$(date +%s.%N)
"$KILN" build --recipe "$work/kiln.toml" --out "$work/out" >/dev/null
build=$(awk "BEGIN{print $(date +%s.%N) - $start}")
img=$work/out/tiny-pi.img
marker="kiln: ready name=tiny-pi version=1.0.0 hostname=pihost"

# The boot slot (partition 2) as the firmware would read it.
off=$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print([p["offset"] for p in m["partitions"] if p["name"]=="boot-a"][0])' "$work/out/manifest.json")
mkdir -p "$work/slot"
for f in vmlinuz initrd.img bcm2837-rpi-3-b.dtb cmdline.txt; do
  mcopy -n -i "$img@@$off" "::$f" "$work/slot/$f"
done
sed 's/console=serial0/console=ttyAMA0/' "$work/slot/cmdline.txt" | tr -d '\n' >"$work/slot/cmdline"

hyperfine --runs "$RUNS" --export-json "$work/h.json" \
  -n hand "bash bench/rpi.sh hand $work/slot $img '$marker'" \
  -n kiln "$KILN preview --headless --expect '$marker' $img" >&2
read -r hand kiln < <(python3 -c 'import json,sys; r={x["command"]:x["median"] for x in json.load(open(sys.argv[1]))["results"]}; print("%.2f %.2f"%(r["hand"],r["kiln"]))' "$work/h.json")
cat >docs/bench-rpi.md <<MD
# Raspberry Pi image

Command: \`bash bench/rpi.sh\` (RUNS=$RUNS; hyperfine medians, same machine, same run).

- **build**: \`kiln build\` of an rpi recipe (arm64 inputs cached): $(printf %.1f "$build") s.
- **hand**: \`qemu-system-aarch64 -machine raspi3b -accel tcg,thread=single\`, 4 CPUs, 1 GiB, the
  boot slot's kernel, device tree (\`bcm2837-rpi-3-b.dtb\`), initramfs and command line taken out
  with mtools, the image as SD card with \`-snapshot\`, user networking on \`usb-net\`,
  \`-serial stdio | grep -m1\`.
- **kiln**: \`kiln preview --headless --expect TEXT IMAGE\`: detects the Pi image, reads the boot
  slot autoboot.txt names, passes the same files, QMP and serial sockets.

| image (marker) | hand | kiln |
|---|---|---|
| tiny-pi on raspi3b (ready line) | $hand s | $kiln s |

kiln passes QEMU the same machine and files as the hand-written line; the difference between the
two is the load of the shared cores, which swings a TCG boot by seconds between runs (kiln's own
fixed cost is in bench-preview.md's MBR row: milliseconds).

Host: $(nproc) cores shared with other work (load average $(cut -d' ' -f1-3 /proc/loadavg) at the end), $(qemu-system-aarch64 --version | head -1).
MD
echo "bench/rpi: wrote docs/bench-rpi.md" >&2
