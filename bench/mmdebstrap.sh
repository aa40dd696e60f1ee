#!/usr/bin/env bash
# Package images against mmdebstrap, in the same run, from the host's apt sources (bookworm):
#  - resolve + download (warm: Kiln's input cache and apt's archive cache both filled by an untimed
#    run; the package indices are fetched each time by both) + assemble the test set (python3
#    dropbear wpasupplicant mosquitto, an SSH key): `kiln build` with no lock and no cache of
#    configured trees or root images (so it resolves and runs the maintainer scripts), against
#    `mmdebstrap --variant=essential --include=…` into a directory plus the usual image tools:
#    mksquashfs (zstd) of the tree, mkfs.vfat + mcopy of an ESP with the same kernel and
#    systemd-boot, sgdisk and dd for the GPT disk;
#  - boot under TCG to the SSH server's banner (the package image) and to Kiln Tiny's ready line;
#  - the size of the test set against a Raspberry Pi OS Lite-like set (listed below).
# Needs root (mmdebstrap's root mode, Kiln's maintainer scripts), mmdebstrap, squashfs-tools,
# dosfstools, mtools, gdisk, qemu-system-x86, ovmf. Writes docs/bench-mmdebstrap.md.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
KILN=${KILN_BIN:-$PWD/bin/kiln}
AGENT=${KILN_AGENT:-$PWD/bin/kiln-agent}
CACHE=${KILN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kiln}
SUITE=${SUITE:-bookworm}
for f in "$KILN" "$AGENT"; do [ -x "$f" ] || { echo "bench/mmdebstrap: $f missing: run make build" >&2; exit 1; }; done
for t in mmdebstrap mksquashfs mkfs.vfat mcopy sgdisk qemu-system-x86_64 apt-cache python3; do
  command -v "$t" >/dev/null || { echo "bench/mmdebstrap: $t missing (scripts/install-deps.sh)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "bench/mmdebstrap: needs root (mmdebstrap and the maintainer scripts)" >&2; exit 1; }
work=$(mktemp -d)
qpid=
cleanup() { [ -z "$qpid" ] || kill "$qpid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
# Kiln's cache: the shared package files, kernel and hash caches; its own locks and configured trees.
mkdir -p "$work/cache"
for d in sha256 kmod kernels hashes debs; do mkdir -p "$CACHE/$d"; ln -s "$CACHE/$d" "$work/cache/$d"; done
export SOURCE_DATE_EPOCH=1704067200 KILN_AGENT="$AGENT" KILN_KEYS="$work/keys" KILN_CACHE="$work/cache"

now() { date +%s.%N; }
timeit() { # median of RUNS timings; PREP runs untimed before each
  local ts=()
  for _ in $(seq "$RUNS"); do
    [ -z "${PREP:-}" ] || $PREP
    local t0 t1
    t0=$(now); "$@" >"$work/last.log" 2>&1 || { cat "$work/last.log" >&2; return 1; }; t1=$(now)
    ts+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')")
  done
  printf '%s\n' "${ts[@]}" | sort -g | sed -n "$(( (RUNS + 1) / 2 ))p"
}

pkgs=(python3 dropbear wpasupplicant mosquitto)
key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKqf0Qf5r9Y1v7fWmmDq2cY4rXb7hJqS8kq3vJfZ0mJx bench"
mkdir -p "$work/garden"
{
  printf 'kiln = 1\nname = "garden"\nversion = "1.0.0"\n[archive]\nsuites = ["%s"]\n[system]\npackages = [' "$SUITE"
  printf '"%s", ' "${pkgs[@]}" | sed 's/, $//'
  printf ']\n[[system.users]]\nname = "pi"\nssh_keys = ["%s"]\n' "$key"
} > "$work/garden/kiln.toml"
kfresh() { rm -rf "$work/garden/kiln.lock" "$work/garden/out" "$work/cache/configured" "$work/cache/roots"; }
kbuild() { "$KILN" build --recipe "$work/garden/kiln.toml" --out "$work/garden/out"; }

# The peer. The kernel and systemd-boot come from the same packages Kiln's build used, unpacked
# once (the peer's cache of them).
mkdir -p "$work/apt-cache" "$work/peer"
included=$(IFS=,; echo "${pkgs[*]}")
mm() { # FILL: keep the downloaded packages in the peer's cache (the untimed run)
  rm -rf "$work/peer/root"
  local out=()
  [ -z "${FILL:-}" ] || out=(--customize-hook="cp -al \"\$1/var/cache/apt/archives/.\" $work/apt-cache/")
  mmdebstrap --quiet --mode=root --variant=essential --include="$included" \
    --setup-hook='mkdir -p "$1/var/cache/apt/archives"' \
    --setup-hook="cp -al $work/apt-cache/. \"\$1/var/cache/apt/archives/\"" \
    "${out[@]}" "$SUITE" "$work/peer/root"
}
image() {
  local p=$work/peer
  rm -f "$p/root.sqfs" "$p/esp.img" "$p/disk.img"
  mksquashfs "$p/root" "$p/root.sqfs" -comp zstd -noappend -quiet -no-progress
  mkfs.vfat -C -F 32 -n ESP "$p/esp.img" $((192 * 1024)) >/dev/null
  mmd -i "$p/esp.img" ::/EFI ::/EFI/BOOT ::/loader ::/loader/entries
  mcopy -i "$p/esp.img" "$p/boot/systemd-bootx64.efi" ::/EFI/BOOT/BOOTX64.EFI
  mcopy -i "$p/esp.img" "$p/boot/vmlinuz" ::/vmlinuz
  printf 'title garden\nlinux /vmlinuz\noptions root=/dev/vda2 ro console=ttyS0\n' > "$p/entry.conf"
  mcopy -i "$p/esp.img" "$p/entry.conf" ::/loader/entries/garden.conf
  local sq=$(( ($(stat -c %s "$p/root.sqfs") + 1048575) / 1048576 ))
  truncate -s $(( (194 + sq + 1) * 1048576 )) "$p/disk.img"
  sgdisk -q -n 1:2048:+192M -t 1:ef00 -c 1:ESP -n "2:0:+${sq}M" -t 2:8304 -c 2:root "$p/disk.img"
  dd if="$p/esp.img" of="$p/disk.img" bs=1M seek=1 conv=notrunc,sparse status=none
  dd if="$p/root.sqfs" of="$p/disk.img" bs=1M seek=193 conv=notrunc,sparse status=none
}
peer() { mm && image; }

echo "== untimed: fill Kiln's cache and apt's archive cache"
kfresh; kbuild >/dev/null
FILL=1 mm >/dev/null
mkdir -p "$work/peer/boot"
debof() { # a role in the manifest → the .deb in the cache (by its sha256)
  python3 - "$work/garden/out/manifest.json" "$1" "$work/cache/sha256" <<'EOF'
import json, os, sys
m = json.load(open(sys.argv[1]))
i = next(i for i in m["inputs"] if i.get("role") == sys.argv[2])
p = os.path.join(sys.argv[3], i["sha256"])
print(p if os.path.exists(p) else i["path"])
EOF
}
dpkg-deb -x "$(debof kernel)" "$work/peer/kx"
dpkg-deb -x "$(debof bootloader)" "$work/peer/sbx"
cp "$(ls "$work"/peer/kx/boot/vmlinuz-* | head -1)" "$work/peer/boot/vmlinuz"
cp "$work/peer/sbx/usr/lib/systemd/boot/efi/systemd-bootx64.efi" "$work/peer/boot/"
image

echo "== timed: kiln build (resolve, download, configure, image) and mmdebstrap + image tools"
tk=$(PREP=kfresh timeit kbuild)
tp=$(timeit peer)
tm=$(timeit mm)
kn=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["packages"]))' "$work/garden/out/manifest.json")
kdata=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["image"]["mapped_bytes"])' "$work/garden/out/manifest.json")
pn=$(dpkg-query --admindir="$work/peer/root/var/lib/dpkg" -W -f '${Package}\n' | wc -l)
ptree=$(du -sb "$work/peer/root" | cut -f1)
psq=$(stat -c %s "$work/peer/root.sqfs")
kimg=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["image"]["file"])' "$work/garden/out/manifest.json")

echo "== boot under TCG: the package image to its SSH banner, Kiln Tiny to its ready line"
"$KILN" build --out "$work/tiny" >/dev/null 2>&1
OVMF_CODE=/usr/share/OVMF/OVMF_CODE_4M.fd
OVMF_VARS=/usr/share/OVMF/OVMF_VARS_4M.fd
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# boot IMAGE WHAT: seconds from QEMU's start to WHAT ("ssh": an SSH banner on the forwarded port;
# else a regular expression on the serial console), at most 300 s.
boot() {
  local img=$1 what=$2 port log=$work/serial.log t0 t1
  port=$(freeport)
  cp "$OVMF_VARS" "$work/vars.fd"
  : > "$log"
  t0=$(now)
  qemu-system-x86_64 -machine q35 -accel tcg -cpu max -m 1024 -display none -serial "file:$log" \
    -drive if=pflash,format=raw,unit=0,readonly=on,file="$OVMF_CODE" \
    -drive if=pflash,format=raw,unit=1,file="$work/vars.fd" \
    -drive if=virtio,format=raw,snapshot=on,file="$img" \
    -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$port-:22" -device virtio-net-pci,netdev=n0 &
  qpid=$!
  local ok=
  while [ -z "$ok" ] && kill -0 "$qpid" 2>/dev/null; do
    if [ "$(awk -v a="$t0" -v b="$(now)" 'BEGIN { print (b - a > 300) }')" = 1 ]; then break; fi
    if [ "$what" = ssh ]; then
      if timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port && head -c 7 <&3" 2>/dev/null | grep -q '^SSH-2.0'; then ok=1; fi
    elif grep -Eq "$what" "$log"; then ok=1
    fi
    [ -n "$ok" ] || sleep 0.5
  done
  t1=$(now)
  kill "$qpid" 2>/dev/null || true; wait "$qpid" 2>/dev/null || true; qpid=
  [ -n "$ok" ] || { echo "bench/mmdebstrap: $img did not reach $what in 300 s" >&2; tail -20 "$log" >&2; return 1; }
  awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }'
}
median() { sort -g | sed -n "$(( (RUNS + 1) / 2 ))p"; }
bssh=$(for _ in $(seq "$RUNS"); do boot "$work/garden/out/$kimg" ssh; done | median)
tready=$(for _ in $(seq "$RUNS"); do boot "$work/tiny/kiln-tiny.img" 'kiln: ready'; done | median)
bready=$(for _ in $(seq "$RUNS"); do boot "$work/garden/out/$kimg" 'kiln: ready'; done | median)

echo "== size: the test set against a Raspberry Pi OS Lite-like set"
# Raspberry Pi OS Lite (bookworm) without the Pi-only packages (raspi-config, firmware, rpi-eeprom):
# systemd as init with udev, OpenSSH, NetworkManager with wpa_supplicant, avahi, Bluetooth, sudo,
# Python, editors and the usual tools.
lite=(systemd-sysv udev openssh-server network-manager wpasupplicant avahi-daemon bluez sudo python3
  nano less wget curl rsync ca-certificates cron logrotate iputils-ping locales console-setup
  keyboard-configuration dosfstools parted usbutils fake-hwclock ntfs-3g man-db htop)
sizes() { # packages… → "count download-bytes installed-KiB" of the set Kiln resolves with its base
  "$KILN" packages resolve --suite "$SUITE" --base --json "$@" 2>/dev/null | python3 -c '
import json, subprocess, sys
lines = [json.loads(l) for l in sys.stdin if l.strip()]
res = next(l for l in lines if "result" in l)["result"]
pk = res["packages"]
out = subprocess.run(["apt-cache", "show"] + [p["name"] + ":" + p["arch"] + "=" + p["version"] for p in pk],
                     capture_output=True, text=True).stdout
inst, seen = 0, set()
for para in out.split("\n\n"):
    f = dict(l.split(": ", 1) for l in para.splitlines() if ": " in l and not l.startswith(" "))
    k = (f.get("Package"), f.get("Version"), f.get("Architecture"))
    if f.get("Installed-Size") and k not in seen:
        seen.add(k); inst += int(f["Installed-Size"])
print(len(pk), sum(p["size"] for p in pk), inst)'
}
read -r gn gdl ginst < <(sizes "${pkgs[@]}")
read -r ln ldl linst < <(sizes "${lite[@]}")

mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f×", a / b }'; }
{
  echo "# Package images against mmdebstrap"
  echo
  echo "\`bash bench/mmdebstrap.sh\` (RUNS=$RUNS, medians), $(date -u +%F), $(nproc) cores shared with other work"
  echo "(load average $(cut -d' ' -f1 /proc/loadavg) at the end), $SUITE amd64 from the host's apt sources."
  echo "The set: \`${pkgs[*]}\` and an SSH key (Kiln: $kn packages; mmdebstrap: $pn)."
  echo
  echo "| | Kiln | peer (same run) | Kiln / peer |"
  echo "|---|---|---|---|"
  printf '| resolve + download (warm) + assemble a bootable image | %.1f s `kiln build` | %.1f s mmdebstrap + mksquashfs + mkfs.vfat/mcopy + sgdisk/dd | %s |\n' "$tk" "$tp" "$(ratio "$tk" "$tp")"
  printf '| of which mmdebstrap alone (resolve, unpack, maintainer scripts) | | %.1f s | %s |\n' "$tm" "$(ratio "$tk" "$tm")"
  printf '| packages installed | %d | %d | |\n' "$kn" "$pn"
  printf '| data in the image | %s (`mapped_bytes`) | %s squashfs of a %s tree, + ESP | |\n' "$(mib "$kdata")" "$(mib "$psq")" "$(mib "$ptree")"
  echo
  echo "Warm means both package caches are filled by an untimed run: Kiln's input cache (\`sha256/\`)"
  echo "and apt's \`/var/cache/apt/archives\` (synced in and out by hooks); both fetch the package"
  echo "indices every time. Kiln builds without a lock and without its cache of configured trees and root images, so"
  echo "it resolves and runs the maintainer scripts each time, as mmdebstrap does. The peer's disk has"
  echo "the same kernel and systemd-boot, unpacked once untimed, but no initramfs to mount its root:"
  echo "a lower bound for the peer. mmdebstrap installs usrmerge and perl where Kiln, building merged"
  echo "/usr from the start as debootstrap does, installs usr-is-merged ([archive.md](archive.md#how-packages-are-chosen))."
  echo "Kiln's root is an uncompressed EROFS image (quick to write and to read, and updates of it as"
  echo "small deltas), so it maps more bytes than the peer's zstd-compressed squashfs."
  echo
  echo "Boot under TCG (QEMU q35, OVMF, 1 GiB, no KVM), from QEMU's start:"
  echo
  echo "| image | to | time |"
  echo "|---|---|---|"
  printf '| the package image above | the SSH server'"'"'s banner on the forwarded port | %.1f s |\n' "$bssh"
  printf '| the package image above | `kiln: ready` on the serial console | %.1f s |\n' "$bready"
  printf '| Kiln Tiny | `kiln: ready` on the serial console | %.1f s |\n' "$tready"
  echo
  echo "Size against a Raspberry Pi OS Lite-like set: Debian's Essential base and"
  echo "\`${lite[*]}\`"
  echo "(Lite's own packages for the Pi — raspi-config, firmware, rpi-eeprom — left out), resolved by"
  echo "\`kiln packages resolve --base\`; installed size is the sum of the packages' \`Installed-Size\`."
  echo
  echo "| set | packages | download | installed |"
  echo "|---|---|---|---|"
  printf '| the test set (Kiln'"'"'s package image) | %d | %s | %s |\n' "$gn" "$(mib "$gdl")" "$(mib $((ginst * 1024)))"
  printf '| Raspberry Pi OS Lite-like | %d | %s | %s |\n' "$ln" "$(mib "$ldl")" "$(mib $((linst * 1024)))"
} | tee docs/bench-mmdebstrap.md
