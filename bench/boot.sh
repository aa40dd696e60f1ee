#!/usr/bin/env bash
# Boot side: Kiln's initramfs writer (newc cpio + zstd/gzip, assembler/cpio + assembler/initramfs)
# and UKI builder (assembler/uki) against the usual tools on the same inputs, in the same run:
# `find | sort | cpio -o -H newc --reproducible | zstd` (and gzip, pigz) over the Kiln Tiny root
# filesystem unpacked to a directory, and `objcopy --add-section --change-section-vma` (ukify's
# predecessor) with the Debian kernel and systemd 252's stub. Writes docs/bench-boot.md.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
GO=$(bash scripts/go.sh)
RUNS=${RUNS:-5}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
$GO build -o "$work/bootfs" ./bench/bootfs
"$work/bootfs" prepare "$work"
mkdir "$work/root"
zstd -dc "$work/initrd.zst" | (cd "$work/root" && cpio -idm --quiet --no-absolute-filenames)
files=$(cd "$work/root" && find . -mindepth 1 | wc -l)
bytes=$(du -sb "$work/root" | cut -f1)

now() { date +%s.%N; }
timeit() { # median of RUNS wall-clock timings of a command, in seconds
  local ts=()
  for _ in $(seq "$RUNS"); do
    local t0 t1
    t0=$(now); "$@" >/dev/null; t1=$(now)
    ts+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')")
  done
  printf '%s\n' "${ts[@]}" | sort -g | sed -n "$(( (RUNS + 1) / 2 ))p"
}
peer_cpio() { (cd "$work/root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet --reproducible); }
peer_zstd() { peer_cpio | zstd -3 -T1 -q >"$work/peer.zst"; }
peer_gzip() { peer_cpio | gzip -6 >"$work/peer.gz"; }
peer_pigz() { peer_cpio | pigz -6 >"$work/peer.pigz"; }
kiln_zstd() { "$work/bootfs" initramfs "$work/root" "$work/kiln.zst" zstd; }
kiln_gzip() { "$work/bootfs" initramfs "$work/root" "$work/kiln.gz" gzip; }
kiln_uki() { "$work/bootfs" uki "$work/stub.efi" "$work/vmlinuz" "$work/kiln.zst" "$work/kiln.efi"; }
peer_uki() {
  objcopy --add-section .osrel=<(printf 'ID=kiln\n') --change-section-vma .osrel=0x20000 \
    --add-section .cmdline=<(printf 'console=ttyS0') --change-section-vma .cmdline=0x30000 \
    --add-section .initrd="$work/kiln.zst" --change-section-vma .initrd=0x40000 \
    --add-section .linux="$work/vmlinuz" --change-section-vma .linux=0x2000000 \
    "$work/stub.efi" "$work/objcopy.efi"
}

declare -A t
for f in kiln_zstd peer_zstd kiln_gzip peer_gzip peer_pigz kiln_uki peer_uki; do
  t[$f]=$(timeit "$f")
done
size() { stat -c %s "$1"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
ms() { awk -v a="$1" 'BEGIN { printf "%.0f ms", a * 1000 }'; }

cat >docs/bench-boot.md <<MD
# Boot side: initramfs and UKI

Command: \`bash bench/boot.sh\` (median of $RUNS runs each, wall clock, same machine and run).
Input: the Kiln Tiny root filesystem ($files entries, $((bytes / 1024)) KiB: static busybox with its
applet links, the default recipe's kernel modules, init scripts), unpacked to a directory; the Debian
kernel ($(( $(size "$work/vmlinuz") / 1024 )) KiB) and systemd 252's linuxx64.efi.stub.

| task | Kiln | peer tool | time Kiln / peer | size Kiln / peer |
|---|---|---|---|---|
| newc cpio + zstd | $(ms "${t[kiln_zstd]}") | $(ms "${t[peer_zstd]}") \`find\|sort\|cpio -o -H newc --reproducible\|zstd -3 -T1\` | $(ratio "${t[kiln_zstd]}" "${t[peer_zstd]}")× | $(size "$work/kiln.zst") / $(size "$work/peer.zst") B |
| newc cpio + gzip | $(ms "${t[kiln_gzip]}") | $(ms "${t[peer_gzip]}") \`…\|gzip -6\` | $(ratio "${t[kiln_gzip]}" "${t[peer_gzip]}")× | $(size "$work/kiln.gz") / $(size "$work/peer.gz") B |
| newc cpio + gzip | $(ms "${t[kiln_gzip]}") | $(ms "${t[peer_pigz]}") \`…\|pigz -6\` | $(ratio "${t[kiln_gzip]}" "${t[peer_pigz]}")× | $(size "$work/kiln.gz") / $(size "$work/peer.pigz") B |
| UKI (stub + kernel + initrd) | $(ms "${t[kiln_uki]}") | $(ms "${t[peer_uki]}") \`objcopy --add-section --change-section-vma\` | $(ratio "${t[kiln_uki]}" "${t[peer_uki]}")× | $(size "$work/kiln.efi") / $(size "$work/objcopy.efi") B |

Kiln's times include reading the directory tree (or the three input files) and writing the output.
Both archives hold the same entries; Kiln's are byte-identical from run to run (fixed mtimes,
sequential inode numbers), GNU cpio's \`--reproducible\` ones too. The UKI section contents are
the same as objcopy's for the same addresses (checked by assembler/uki's TestMatchesObjcopy).
MD
cat docs/bench-boot.md
