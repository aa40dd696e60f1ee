#!/usr/bin/env bash
# OTA: Kiln's update server against a plain net/http FileServer serving the same repository
# (one download of a 512 MiB payload, then 64 at once), the server's memory and /v1/check
# latency with 1,000 simulated agents, the agent's peak RSS while installing a 1 GiB update,
# and the size of a delta for a one-file change against `zstd --patch-from`. Writes
# docs/bench-ota.md.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
GO=$(bash scripts/go.sh)
RUNS=${RUNS:-3}
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
export KILN_KEYS=$work/keys
$GO build -o "$work/otabench" ./bench/otabench
B=$work/otabench

# start_server KIND DIR: starts a server, sets $url and $spid.
start_server() {
  local out=$work/server-$1.out
  "$B" serve -kind "$1" -repo "$2" >"$out" 2>&1 &
  spid=$!
  pids+=("$spid")
  for _ in $(seq 100); do
    url=$(sed -n 's/^url //p' "$out")
    [ -n "$url" ] && return 0
    sleep 0.1
  done
  echo "server $1 did not start:" >&2
  cat "$out" >&2
  return 1
}
stop_server() { kill "$spid"; wait "$spid" 2>/dev/null || true; }
median() { sort -g | sed -n "$(( (RUNS + 1) / 2 ))p"; }

echo "publishing a 512 MiB payload"
path=$("$B" publish -repo "$work/repo" -size $((512 << 20)) -version 1.0.0 | sed -n 's/^path //p')
start_server kiln "$work/repo"; kurl=$url; kpid=$spid
start_server fileserver "$work/repo"; furl=$url; fpid=$spid
cat "$work/repo$path" >/dev/null # both servers read from the page cache
tput() { # n → "kiln fileserver" medians, alternating runs
  local n=$1 ks=() fs=()
  for _ in $(seq "$RUNS"); do
    ks+=("$("$B" get -url "$kurl$path" -n "$n")")
    fs+=("$("$B" get -url "$furl$path" -n "$n")")
  done
  echo "$(printf '%s\n' "${ks[@]}" | median) $(printf '%s\n' "${fs[@]}" | median)"
}
read -r k1 f1 < <(tput 1)
echo "1 download: kiln $k1 MB/s, FileServer $f1 MB/s"
read -r k64 f64 < <(tput 64)
echo "64 downloads: kiln $k64 MB/s, FileServer $f64 MB/s"
kill "$kpid" "$fpid"; wait "$kpid" "$fpid" 2>/dev/null || true

echo "1,000 agents polling /v1/check for 30 s"
start_server kiln "$work/repo"
agents=$("$B" agents -url "$url" -n 1000 -d 30s)
rss_kib=$(awk '/^VmHWM:/ {print $2}' "/proc/$spid/status")
stop_server
echo "$agents; server peak RSS $((rss_kib / 1024)) MiB"
p99=$(sed 's/.* p99 \([0-9.]*\).*/\1/' <<<"$agents")
rate=$(sed 's/.* rate \([0-9.]*\)\/s.*/\1/' <<<"$agents")

echo "agent installing a 1 GiB update"
rm -rf "$work/repo"
"$B" publish -repo "$work/repo" -size $((1 << 30)) -version 1.0.0 >/dev/null
apply=$("$B" apply -repo "$work/repo")
agent_kib=$(sed 's/.*peak_rss_kib \([0-9]*\).*/\1/' <<<"$apply")
echo "$apply"
rm -rf "$work/repo"

echo "delta for a one-file change (default recipe 1.0.0 → 1.0.1 with /etc/motd added)"
delta_row="| delta | not measured: input packages missing (run \`make inputs\`) and KILN_AGENT unset | | |"
if [ -n "${KILN_AGENT:-}" ] && [ -x "${KILN_AGENT}" ] && ls "${KILN_CACHE:-$HOME/.cache/kiln}"/debs/linux-image-*.deb >/dev/null 2>&1; then
  export KILN_CACHE=${KILN_CACHE:-$HOME/.cache/kiln}
  printf 'kiln = 1\nname = "kiln-tiny"\nversion = "1.0.0"\n' >"$work/a.toml"
  printf 'kiln = 1\nname = "kiln-tiny"\nversion = "1.0.1"\n\n[[system.files]]\npath = "/etc/motd"\ncontent = "Welcome to Kiln Tiny 1.0.1\\n"\n' >"$work/b.toml"
  uki_a=$("$B" build -recipe "$work/a.toml" -out "$work/a" | sed -n 's/^uki //p')
  uki_b=$("$B" build -recipe "$work/b.toml" -out "$work/b" | sed -n 's/^uki //p')
  read -r _ full _ delta < <("$B" delta -repo "$work/drepo" -old "$work/a" -new "$work/b")
  zstd -q -19 --long=27 --patch-from="$uki_a" "$uki_b" -o "$work/peer.patch" 2>/dev/null
  zfull=$(stat -c %s "$work/peer.patch")
  zstd -q -19 "$uki_b" -o "$work/full.zst"
  zplain=$(stat -c %s "$work/full.zst")
  delta_row=$(awk -v f="$full" -v d="$delta" -v z="$zfull" -v p="$zplain" 'BEGIN {
    printf "| delta, 1.0.0 → 1.0.1 + one file | %.2f MiB (%.1f%% of the %.2f MiB UKI) | zstd -19 --patch-from: %.2f MiB; zstd -19 of the UKI alone: %.2f MiB | %.2f× zstd --patch-from |",
      d / 1048576, 100 * d / f, f / 1048576, z / 1048576, p / 1048576, d / z }')
  echo "$delta_row"
fi

{
  echo "# OTA server and agent"
  echo
  echo "Command: \`bash bench/ota.sh\` (RUNS=$RUNS, medians; loopback, both servers in their own process,"
  echo "payload in the page cache, clients in a third process). $(date -u +%Y-%m-%d)."
  echo
  echo "| Measure | Kiln | Peer (same run) | Ratio (goal) |"
  echo "|---|---|---|---|"
  awk -v k="$k1" -v f="$f1" 'BEGIN { printf "| 512 MiB download, 1 client | %.0f MB/s | net/http FileServer %.0f MB/s | %.2f× (≥ 0.9×) |\n", k, f, k / f }'
  awk -v k="$k64" -v f="$f64" 'BEGIN { printf "| 512 MiB × 64 concurrent downloads, aggregate | %.0f MB/s | net/http FileServer %.0f MB/s | %.2f× (≥ 0.8×) |\n", k, f, k / f }'
  awk -v r="$rss_kib" -v p="$p99" -v q="$rate" 'BEGIN { printf "| 1,000 agents polling /v1/check (~%.0f req/s, 30 s) | server peak RSS %.0f MiB, check p99 %.1f ms | | < 100 MB, p99 < 50 ms |\n", q, r / 1024, p }'
  awk -v a="$agent_kib" 'BEGIN { printf "| agent installing a 1 GiB update (verify, download, hash, fsync, rename) | peak RSS %.1f MiB | | < 64 MiB |\n", a / 1024 }'
  echo "$delta_row"
  echo
  echo "Agents: \`$agents\` (latencies in ms)."
  echo
  echo "Install: \`$apply\` — the real agent code (ota/agent: verification, resumable download,"
  echo "hash, fsync, rename) on a simulated ESP; the peak RSS also counts the update server, which runs"
  echo "in the same process. The delta is large for a one-file change because the UKI's initramfs is"
  echo "compressed as a whole: one changed file shifts the compressed stream after it."
} >docs/bench-ota.md
echo "wrote docs/bench-ota.md"
