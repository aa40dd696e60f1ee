#!/usr/bin/env bash
# Image build: `kiln build` of the default recipe (Kiln Tiny) against the same image assembled with
# the usual tools in the same run: dpkg-deb -x of the three input packages, depmod + modprobe
# --show-depends for the module closure, cpio + zstd for the initramfs, objcopy for the UKI,
# mkfs.vfat + mmd/mcopy for the ESP and the data partition, sgdisk and dd for the disk, bmaptool
# create and sha256sum for the block map and the checksum (Kiln writes both, and the manifest).
# Kiln is timed cold (a fresh input cache's first build), with only the module index cached (a new
# module list) and warm (the kernel, modules and the image's zero-run hashes cached: every later
# build). Writes docs/bench-build.md.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
KILN=${KILN_BIN:-$PWD/bin/kiln}
AGENT=${KILN_AGENT:-$PWD/bin/kiln-agent}
CACHE=${KILN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kiln}
for f in "$KILN" "$AGENT"; do [ -x "$f" ] || { echo "bench/build: $f missing: run make build" >&2; exit 1; }; done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A private cache holding links to the input packages, so that "cold" can drop the module index.
mkdir -p "$work/cache/debs"
ln -s "$CACHE"/debs/*.deb "$work/cache/debs/"
export SOURCE_DATE_EPOCH=1704067200 KILN_AGENT="$AGENT" KILN_KEYS="$work/keys" KILN_CACHE="$work/cache"

now() { date +%s.%N; }
# median of RUNS timings of a command, in seconds; PREP runs untimed before each.
timeit() {
  local ts=()
  for _ in $(seq "$RUNS"); do
    [ -z "${PREP:-}" ] || $PREP
    local t0 t1
    t0=$(now); "$@" >/dev/null 2>&1; t1=$(now)
    ts+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')")
  done
  printf '%s\n' "${ts[@]}" | sort -g | sed -n "$(( (RUNS + 1) / 2 ))p"
}

deb() { compgen -G "$CACHE/debs/${1}_*.deb" | sort -V | tail -1; }
kdeb=$(deb "$(dpkg-deb -f "$(deb linux-image-amd64)" Depends | sed 's/ .*//')")
bbdeb=$(deb busybox-static)
sbdeb=$(deb systemd-boot-efi)

# Kiln, once untimed: its initramfs gives the peer the same small generated files (/etc: passwd,
# hostname, release.json, inittab …) and the list of modules to check the peer's closure against.
"$KILN" build --out "$work/ref" >/dev/null 2>&1
ref="$work/ref-root"
mkdir -p "$ref"
python3 - "$work/ref/manifest.json" > "$work/ref-modules" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
for f in m["files"]:
    p = f["path"]
    if p.startswith("initramfs:/lib/modules/") and p.endswith(".ko"):
        print(p.split("/")[-1][:-3])
EOF
modules=$(python3 -c 'import tomllib,sys; print(" ".join(tomllib.load(open(sys.argv[1],"rb"))["kernel"]["modules"]))' assets/kiln.toml)
modules="$modules vfat nls_cp437 nls_ascii"
uki_ref="$work/ref/update/kiln-tiny-1.0.0.efi"
objcopy -O binary --only-section=.initrd "$uki_ref" "$work/ref.initrd"
(cd "$ref" && zstd -dc "$work/ref.initrd" | cpio -idm --quiet 2>/dev/null || true)
cmdline=$(objcopy -O binary --only-section=.cmdline "$uki_ref" /dev/stdout)
objcopy -O binary --only-section=.osrel "$uki_ref" "$work/osrel"

# The usual tools, step by step.
peer() {
  local w="$work/peer" rel
  rm -rf "$w"; mkdir -p "$w"/{k,bb,sb,root}
  dpkg-deb -x "$kdeb" "$w/k"
  dpkg-deb -x "$bbdeb" "$w/bb"
  dpkg-deb -x "$sbdeb" "$w/sb"
  rel=$(ls "$w/k/lib/modules")
  # Root filesystem: the generated files, busybox and its applet links, the agent.
  (cd "$ref" && find . -path ./lib/modules -prune -o -path ./bin/busybox -prune -o \( -type f -o -type d \) -print |
    cpio -pdm --quiet "$w/root")
  cp "$w/bb/bin/busybox" "$w/root/bin/busybox"
  "$w/root/bin/busybox" --list-full | while read -r a; do
    [ -e "$w/root/$a" ] || ln -s /bin/busybox "$w/root/$a"
  done
  ln -sf bin/busybox "$w/root/init"
  install -m 0755 "$AGENT" "$w/root/usr/bin/kiln-agent"
  # Module closure: depmod over the whole kernel, then modprobe --show-depends per module.
  depmod -b "$w/k" "$rel"
  for m in $modules; do
    modprobe -d "$w/k" -S "$rel" --show-depends "$m" 2>/dev/null | awk '$1 == "insmod" {print $2}'
  done | sort -u | while read -r ko; do
    mkdir -p "$w/root/$(dirname "${ko#"$w/k/"}")"
    cp "$ko" "$w/root/${ko#"$w/k/"}"
  done
  cp "$w/k/lib/modules/$rel"/modules.{order,builtin} "$w/root/lib/modules/$rel/"
  depmod -b "$w/root" "$rel"
  # initramfs: cpio + zstd.
  (cd "$w/root" && find . | LC_ALL=C sort | cpio -o -H newc --reproducible --quiet | zstd -q -3 > "$w/initrd")
  # UKI: objcopy, sections at the addresses the systemd docs use.
  printf '%s' "$cmdline" > "$w/cmdline"
  echo "$rel" > "$w/uname"
  objcopy \
    --add-section .osrel="$work/osrel" --change-section-vma .osrel=0x20000 \
    --add-section .cmdline="$w/cmdline" --change-section-vma .cmdline=0x30000 \
    --add-section .uname="$w/uname" --change-section-vma .uname=0x40000 \
    --add-section .linux="$w/k/boot/vmlinuz-$rel" --change-section-vma .linux=0x2000000 \
    --add-section .initrd="$w/initrd" --change-section-vma .initrd=0x3000000 \
    "$w/sb/usr/lib/systemd/boot/efi/linuxx64.efi.stub" "$w/uki.efi"
  # ESP and data partition: mkfs.vfat + mmd/mcopy.
  truncate -s 192M "$w/esp.img"
  mkfs.vfat -F 32 -n ESP -i 12345678 "$w/esp.img" >/dev/null
  mmd -i "$w/esp.img" ::/EFI ::/EFI/BOOT ::/EFI/systemd ::/EFI/Linux ::/loader ::/loader/entries
  local boot="$w/sb/usr/lib/systemd/boot/efi/systemd-bootx64.efi"
  mcopy -i "$w/esp.img" "$boot" ::/EFI/BOOT/BOOTX64.EFI
  mcopy -i "$w/esp.img" "$boot" ::/EFI/systemd/systemd-bootx64.efi
  mcopy -i "$w/esp.img" "$w/uki.efi" ::/EFI/Linux/kiln-tiny-1.0.0.efi
  printf 'timeout 0\neditor no\n' > "$w/loader.conf"
  mcopy -i "$w/esp.img" "$w/loader.conf" ::/loader/loader.conf
  # Disk: sgdisk, then the filesystems dd'ed into place (sparse).
  truncate -s 512M "$w/disk.img"
  sgdisk -n 1:2048:+192M -t 1:ef00 -c 1:ESP -n 2:0:0 -t 2:0700 -c 2:data "$w/disk.img" >/dev/null
  local s e
  s=$(sgdisk -i 2 "$w/disk.img" | awk '/^First sector/ {print $3}')
  e=$(sgdisk -i 2 "$w/disk.img" | awk '/^Last sector/ {print $3}')
  truncate -s $(((e - s + 1) * 512)) "$w/data.img"
  mkfs.vfat -F 32 -n KILN-DATA -i 87654321 "$w/data.img" >/dev/null
  dd if="$w/esp.img" of="$w/disk.img" bs=1M seek=1 conv=notrunc,sparse status=none
  dd if="$w/data.img" of="$w/disk.img" bs=512 seek="$s" conv=notrunc,sparse status=none
  # Block map and checksum.
  bmaptool -q create -o "$w/disk.img.bmap" "$w/disk.img"
  sha256sum "$w/disk.img" > "$w/disk.img.sha256"
}

kiln() { "$KILN" build --out "$work/kiln-out"; }
cold() { rm -rf "$work/cache/kmod" "$work/cache/kernels" "$work/cache/hashes"; }
nokernel() { rm -rf "$work/cache/kernels" "$work/cache/hashes"; }

# The peer's image holds the same modules (modprobe may add softdep alternatives Kiln leaves out).
peer
moddiff=$(diff <(find "$work/peer/root/lib/modules" -name '*.ko' -printf '%f\n' | sed 's/\.ko$//' | sort) \
  <(sort "$work/ref-modules") | grep '^[<>]' | tr '\n' ' ' || true)
[ -z "$moddiff" ] || echo "bench/build: module closures differ (< usual tools, > kiln): $moddiff" >&2
sgdisk -v "$work/peer/disk.img" | grep -q 'No problems found'

tp=$(timeit peer)
tw=$(timeit kiln)
ti=$(PREP=nokernel timeit kiln)
tc=$(PREP=cold timeit kiln)
# Scaling: the default image plus a data partition overlay of N files of 4 KiB.
scale_rows=()
for n in 1000 10000; do
  d="$work/scale-$n"
  python3 - "$d/files" "$n" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, "d%03d" % (i // 100))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%05d.bin" % i), "wb") as f:
        f.write(os.urandom(4096))
PY
  printf 'kiln = 1\nname = "scale"\nversion = "1.0.0"\n[data]\noverlays = ["files"]\n' > "$d/kiln.toml"
  scale() { "$KILN" build --recipe "$d/kiln.toml" --out "$d/out"; }
  ts=$(timeit scale)
  scale_rows+=("$(awk -v n="$n" -v t="$ts" -v base="$tw" 'BEGIN { printf "| %d | %.2f s | %+.2f s | %.0f files/s |", n, t, t - base, n / t }')")
done
size=$(stat -c %s "$work/kiln-out/kiln-tiny.img")
mapped=$(du -k "$work/kiln-out/kiln-tiny.img" | cut -f1)
pmapped=$(du -k "$work/peer/disk.img" | cut -f1)
row() { awk -v name="$1" -v t="$2" -v p="$tp" 'BEGIN { printf "| %s | %.2f s | %.2f× |\n", name, t, t / p }'; }
{
  echo "# Image build"
  echo
  echo "\`bash bench/build.sh\` (RUNS=$RUNS, median), $(date -u +%Y-%m-%d), $(nproc) cores shared with other work"
  echo "(load average $(cut -d' ' -f1 /proc/loadavg) at the end of the run)."
  echo "The default recipe (Kiln Tiny): a ${size} byte GPT image (ESP with systemd-boot and the UKI,"
  echo "FAT32 data partition), $(wc -l < "$work/ref-modules") kernel modules in a zstd initramfs."
  echo "The peer assembles the same image with the usual tools: dpkg-deb -x, depmod + modprobe"
  echo "--show-depends, cpio + zstd, objcopy, mkfs.vfat + mmd/mcopy, sgdisk, dd, bmaptool create, sha256sum."
  echo "Kiln also writes the manifest (every file's sha256) and the update bundle."
  echo
  echo "| build | time | vs. usual tools |"
  echo "|---|---|---|"
  row "usual tools" "$tp"
  row "kiln build, warm (kernel, modules and zero-run hashes cached)" "$tw"
  row "kiln build, module index cached (new kernel or module list)" "$ti"
  row "kiln build, cold (first build from a fresh cache)" "$tc"
  echo
  [ -z "$moddiff" ] || echo "Module closures differ (< usual tools, > kiln): $moddiff"
  echo
  echo "Scaling: the same build with a data partition overlay of N files of 4 KiB (warm), all of it timed:"
  echo "files/s is N over the whole build; \"vs. plain build\" is the overlay's cost (reading it, FAT32,"
  echo "hashing every file for the manifest), within the noise of the shared machine for small N."
  echo
  echo "| files | kiln build | vs. plain build | files/s (whole build) |"
  echo "|---|---|---|---|"
  printf '%s\n' "${scale_rows[@]}"
  echo
  echo "Data written: Kiln's image holds $((mapped / 1024)) MiB of data (sparse), the peer's $((pmapped / 1024)) MiB."
} | tee docs/bench-build.md
