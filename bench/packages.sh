#!/usr/bin/env bash
# Packages: Kiln fetching its own inputs and installing packages from the Debian archive of the
# host's apt sources. Times, in the same run:
#  - the default image's inputs: `kiln packages download` against `apt-get download` (+ apt-cache
#    for the versioned kernel), the same three packages and the kernel metapackage;
#  - `kiln build` of Kiln Tiny from an empty cache (resolve, download, lock, build) and again warm
#    (the lock and packages cached: no network);
#  - an image with packages = ["hello"] (GNU hello, its C library and Debian's Essential base,
#    configured by their maintainer scripts): first build, warm rebuild;
#  - a device image (python3, mosquitto, an SSH key: dropbear added): a build that configures
#    the packages (lock and packages cached), and a warm rebuild (configured tree cached).
# Writes docs/bench-packages.md.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
KILN=${KILN_BIN:-$PWD/bin/kiln}
AGENT=${KILN_AGENT:-$PWD/bin/kiln-agent}
for f in "$KILN" "$AGENT"; do [ -x "$f" ] || { echo "bench/packages: $f missing: run make build" >&2; exit 1; }; done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export SOURCE_DATE_EPOCH=1704067200 KILN_AGENT="$AGENT" KILN_KEYS="$work/keys"
now() { date +%s.%N; }
timeit() { # median of RUNS timings; PREP runs untimed before each
  local ts=()
  for _ in $(seq "$RUNS"); do
    [ -z "${PREP:-}" ] || $PREP
    local t0 t1
    t0=$(now); "$@" >/dev/null 2>&1; t1=$(now)
    ts+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')")
  done
  printf '%s\n' "${ts[@]}" | sort -g | sed -n "$(( (RUNS + 1) / 2 ))p"
}
inputs=(linux-image-amd64 busybox-static systemd-boot-efi)
apt_dl() {
  rm -rf "$work/apt"; mkdir -p "$work/apt"; chmod 0777 "$work/apt"
  local k
  k=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
  (cd "$work/apt" && apt-get download "${inputs[@]}" "$k" 2>/dev/null)
}
kiln_dl() { rm -rf "$work/dl"; KILN_CACHE="$work/dl/cache" "$KILN" packages download --dir "$work/dl/debs" "${inputs[@]}"; }
fresh() { rm -rf "$work/cache" "$work/out"; }
tiny() { KILN_CACHE="$work/cache" "$KILN" build --out "$work/out"; }
mkdir -p "$work/hello"
printf 'kiln = 1\nname = "hello"\nversion = "1.0.0"\n[system]\npackages = ["hello"]\n' > "$work/hello/kiln.toml"
hfresh() { rm -rf "$work/hello/kiln.lock" "$work/hello/out"; }
hello() { KILN_CACHE="$work/cache" "$KILN" build --recipe "$work/hello/kiln.toml" --out "$work/hello/out"; }
mkdir -p "$work/garden"
printf 'kiln = 1\nname = "garden"\nversion = "1.0.0"\n[system]\npackages = ["python3", "mosquitto"]\n[[system.users]]\nname = "pi"\nssh_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKqf0Qf5r9Y1v7fWmmDq2cY4rXb7hJqS8kq3vJfZ0mJx bench"]\n' > "$work/garden/kiln.toml"
gcold() { rm -rf "$work/cache/configured" "$work/garden/out"; }
garden() { KILN_CACHE="$work/cache" "$KILN" build --recipe "$work/garden/kiln.toml" --out "$work/garden/out"; }

ta=$(timeit apt_dl)
tk=$(timeit kiln_dl)
tc=$(PREP=fresh timeit tiny)
tw=$(timeit tiny)
hfresh; th=$(PREP=hfresh timeit hello)
hello >/dev/null 2>&1
thw=$(timeit hello)
garden >/dev/null 2>&1
tgc=$(PREP=gcold timeit garden)
garden >/dev/null 2>&1
tgw=$(timeit garden)
gn=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["packages"]))' "$work/garden/out/manifest.json")
n=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["packages"]))' "$work/hello/out/manifest.json")
# The device image's root filesystem (EROFS on root-a) and its UKI, and the EROFS writers on the
# same tree: Kiln's (bench/erofsdir) against mkfs.erofs, when installed.
read -r groot guki < <(python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(m["root"]["size"], m["uki"]["size"])' "$work/garden/out/manifest.json")
mkdir -p "$work/tree"
fsck.erofs --extract="$work/tree/root" "$work/garden/out/update/garden-1.0.0.root" >/dev/null 2>&1 || true
"$(bash scripts/go.sh)" build -o "$work/erofsdir" ./bench/erofsdir
terofs=$(timeit "$work/erofsdir" "$work/tree/root" "$work/tree/kiln.erofs")
tmkfs=
if command -v mkfs.erofs >/dev/null; then tmkfs=$(timeit mkfs.erofs -T1704067200 "$work/tree/mk.erofs" "$work/tree/root"); fi
{
  echo "# Packages"
  echo
  echo "\`bash bench/packages.sh\` (RUNS=$RUNS, median), $(date -u +%Y-%m-%d), $(nproc) cores shared with other work"
  echo "(load average $(cut -d' ' -f1 /proc/loadavg) at the end of the run), from the host's apt sources"
  echo "(the mirror's speed dominates the downloads)."
  echo
  echo "| what | time |"
  echo "|---|---|"
  printf '| the default inputs: apt-get download (+ apt-cache for the kernel) | %.2f s |\n' "$ta"
  printf '| the default inputs: kiln packages download | %.2f s |\n' "$tk"
  printf '| kiln build of Kiln Tiny from an empty cache (resolve, download, lock, build) | %.2f s |\n' "$tc"
  printf '| kiln build of Kiln Tiny, warm (lock and packages cached, no network) | %.2f s |\n' "$tw"
  printf '| kiln build with packages = ["hello"] (%d packages), resolved again, packages cached | %.2f s |\n' "$n" "$th"
  printf '| kiln build with packages = ["hello"], warm (from kiln.lock) | %.2f s |\n' "$thw"
  printf '| kiln build of python3 mosquitto + SSH key (%d packages), maintainer scripts run (lock and packages cached) | %.2f s |\n' "$gn" "$tgc"
  printf '| the same, warm (configured packages cached) | %.2f s |\n' "$tgw"
  printf '| its root filesystem (EROFS on root-a) / UKI | %d MiB / %d MiB |\n' "$((groot >> 20))" "$((guki >> 20))"
  printf '| that root tree written as EROFS: Kiln (bench/erofsdir, reading the tree included) | %.2f s |\n' "$terofs"
  [ -z "$tmkfs" ] || printf '| the same tree: mkfs.erofs, uncompressed | %.2f s |\n' "$tmkfs"
} | tee docs/bench-packages.md
