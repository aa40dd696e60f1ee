#!/usr/bin/env bash
# ISO image: the "iso" phase of `kiln build --format iso` (from its --verbose phase log: GRUB's El
# Torito image, the FAT ESP image, the ISO 9660 layout, the hybrid MBR, its block map and checksum)
# against xorriso making the same layout from the same files in the same run (the file tree
# extracted from Kiln's ISO; -b/-boot-info-table/--grub2-boot-info/--grub2-mbr for BIOS, -e for
# the ESP image, -isohybrid-gpt-basdat for the partition, as grub-mkrescue and Debian's images
# use it). Writes docs/bench-iso.md.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
KILN=${KILN_BIN:-$PWD/bin/kiln}
AGENT=${KILN_AGENT:-$PWD/bin/kiln-agent}
CACHE=${KILN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kiln}
for f in "$KILN" "$AGENT"; do [ -x "$f" ] || { echo "bench/iso: $f missing: run make build" >&2; exit 1; }; done
command -v xorriso >/dev/null || { echo "bench/iso: xorriso missing: run make deps" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export SOURCE_DATE_EPOCH=1704067200 KILN_AGENT="$AGENT" KILN_KEYS="$work/keys" KILN_CACHE="$CACHE"

now() { date +%s.%N; }
median() { sort -g | sed -n "$(( (RUNS + 1) / 2 ))p"; }
"$KILN" build --out "$work/warm" --format iso >/dev/null 2>&1 # warm the kernel cache
iso=() peer=()
tree="$work/tree"
xorriso -osirrox on -indev "$work/warm/kiln-tiny.iso" -extract / "$tree" >/dev/null 2>&1
chmod -R u+w "$tree"
grubdeb=$(compgen -G "$CACHE/debs/grub-pc-bin_*.deb" | sort -V | tail -1)
dpkg-deb --fsys-tarfile "$grubdeb" | tar -xO ./usr/lib/grub/i386-pc/boot_hybrid.img > "$work/boot_hybrid.img"
for _ in $(seq "$RUNS"); do
  "$KILN" build --out "$work/i" --format iso --verbose > "$work/log" 2>&1
  iso+=("$(sed -n 's/.*msg="phase done" phase=iso .*seconds=\([0-9.]*\).*/\1/p' "$work/log")")
  t2=$(now)
  rm -f "$work/peer.iso"
  xorriso -as mkisofs -o "$work/peer.iso" -V KILN_TINY -b BOOT/GRUB/ELTORITO.IMG -no-emul-boot \
    -boot-load-size 4 -boot-info-table --grub2-boot-info --grub2-mbr "$work/boot_hybrid.img" \
    -eltorito-alt-boot -e EFI/EFIBOOT.IMG -no-emul-boot -isohybrid-gpt-basdat "$tree" >/dev/null 2>&1
  sha256sum "$work/peer.iso" >/dev/null # Kiln's figure includes the checksum (and a block map)
  t3=$(now)
  peer+=("$(awk -v a="$t2" -v b="$t3" 'BEGIN { print b - a }')")
done
i=$(printf '%s\n' "${iso[@]}" | median)
p=$(printf '%s\n' "${peer[@]}" | median)
ksize=$(stat -c %s "$work/i/kiln-tiny.iso")
psize=$(stat -c %s "$work/peer.iso")
same=no
cmp -s "$work/i/kiln-tiny.iso" "$work/warm/kiln-tiny.iso" && same=yes
load=$(cut -d' ' -f1-3 /proc/loadavg)
cat > docs/bench-iso.md <<MD
# ISO image

Command: \`bash bench/iso.sh\` (RUNS=$RUNS, medians; the default recipe, warm kernel cache). $(date -u +%F).

| Measure | Kiln | xorriso (same run) |
|---|---|---|
| time to write the ISO (Kiln: the build's "iso" phase; xorriso -as mkisofs + sha256sum) | $(printf '%.2f' "$i") s | $(printf '%.2f' "$p") s |
| ISO size | $((ksize / 1024)) KiB | $((psize / 1024)) KiB |
| byte-identical across builds | $same | |

Kiln's figure includes making what xorriso is handed ready-made: GRUB's El Torito core image
(LZMA), the 33 MiB FAT32 ESP image with systemd-boot and the UKI, plus the block map. go-diskfs
writes the ISO 9660 tree from a workspace copy, which xorriso does not need. Kiln's ISO is
padded by 300 KiB like xorriso's. Load average at the end: $load (2 shared cores).
MD
echo "wrote docs/bench-iso.md"
