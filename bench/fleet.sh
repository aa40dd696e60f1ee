#!/usr/bin/env bash
# Fleet: how far one `kiln serve` process and one device database go. 10,000 simulated devices
# (their own keys, signed requests, their own addresses through X-Real-IP as behind a load
# balancer) register, then check every 30 s and report every fifth check, against one process
# on SQLite, one on PostgreSQL (Debian's, started here with its default settings) and two
# processes sharing that PostgreSQL. Writes docs/bench-fleet.md.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
GO=$(bash scripts/go.sh)
KILN=${KILN_BIN:-$PWD/bin/kiln}
DEVICES=${DEVICES:-10000}
EVERY=${EVERY:-30s}
DURATION=${DURATION:-60s}
[ -x "$KILN" ] || { echo "fleet: $KILN missing: run make build" >&2; exit 1; }
work=$(mktemp -d)
chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
export KILN_KEYS=$work/keys
$GO build -o "$work/fleetbench" ./bench/fleetbench
B=$work/fleetbench
"$B" publish -repo "$work/repo"

# PostgreSQL in $work, on a unix socket; as the postgres user when running as root.
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
mkdir "$work/pg" "$work/pgrun"
[ "$(id -u)" -ne 0 ] || chown postgres: "$work/pg" "$work/pgrun"
as_pg "$pgbin/initdb" -D "$work/pg" -U kiln -A trust -E UTF8 >/dev/null
as_pg "$pgbin/postgres" -D "$work/pg" -k "$work/pgrun" -c listen_addresses= -p 5432 -c max_connections=200 \
  >"$work/pg.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do "$pgbin/pg_isready" -q -h "$work/pgrun" -p 5432 && break; sleep 0.1; done
pgdb() { # NAME → a new database's URL
  as_pg "$pgbin/createdb" -h "$work/pgrun" -p 5432 -U kiln "$1"
  echo "postgres://kiln@/$1?host=$work/pgrun&port=5432&sslmode=disable"
}

# serve DB: starts kiln serve; sets $url and $spid.
serve() {
  local out=$work/serve-${#pids[@]}.out
  "$KILN" serve --json --no-mdns --addr 127.0.0.1:0 --repo "$work/repo" --db "$1" --proxy 127.0.0.1 --max-devices 20000 \
    >"$out" 2>"$out.log" &
  spid=$!
  pids+=("$spid")
  for _ in $(seq 100); do
    url=$(sed -n 's/.*"url":"\([^"]*\)".*/\1/p' "$out")
    [ -n "$url" ] && return 0
    sleep 0.1
  done
  echo "kiln serve did not start:" >&2
  cat "$out.log" >&2
  return 1
}
rss() { awk '/^VmHWM:/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }
# run NAME URLS PIDS…: one scenario; appends a table row.
rows=()
run() {
  local name=$1 urls=$2
  shift 2
  echo "== $name: $DEVICES devices, a check every $EVERY, $DURATION"
  local res
  res=$("$B" agents -url "$urls" -n "$DEVICES" -every "$EVERY" -d "$DURATION")
  echo "$res"
  local mem=""
  for p in "$@"; do mem+="${mem:+ + }$(rss "$p") MiB"; done
  for p in "$@"; do kill "$p"; wait "$p" 2>/dev/null || true; done
  rows+=("$(awk -v name="$name" -v mem="$mem" -v res="$res" 'BEGIN {
    gsub(/\]/, "", res)
    n = split(res, f, " ")
    # fields: register Xs [ok … rate R/s p50 a p99 b] checks [ok … ] reports [ok … ]
    c = 0
    for (i = 1; i <= n; i++) {
      if (f[i] == "[ok") { c++; ok[c] = f[i+1]; fail[c] = f[i+3]; rate[c] = f[i+5]; p50[c] = f[i+7]; p99[c] = f[i+9] }
      if (f[i] == "register") { reg = f[i+1]; sub(/s$/, "", reg) }
      if (f[i] == "retries_429") retr = f[i+1]
    }
    printf "| %s | %s (p99 %s ms; %d turned away at first) | %s | %s / %s ms | %s | %d | %s |", name, reg, p99[1], retr, rate[2], p50[2], p99[2], rate[3], fail[1] + fail[2] + fail[3], mem
  }')")
}

serve "$work/devices.db"
run "SQLite, 1 process" "$url" "$spid"
serve "$(pgdb kiln1)"
run "PostgreSQL, 1 process" "$url" "$spid"
db=$(pgdb kiln2)
serve "$db"; u1=$url; p1=$spid
serve "$db"; u2=$url; p2=$spid
run "PostgreSQL, 2 processes" "$u1,$u2" "$p1" "$p2"

{
  echo "# Fleet: devices per server and database"
  echo
  echo "Command: \`bash bench/fleet.sh\` (bench/fleetbench; DEVICES=$DEVICES, EVERY=$EVERY, DURATION=$DURATION)."
  echo "$(date -u +%Y-%m-%d). Simulated devices with their own ed25519 keys sign every request and name"
  echo "their own address in X-Real-IP (the servers run with \`--proxy 127.0.0.1\`, as behind nginx); they"
  echo "first register (one check each, 64 at a time), then each checks every $EVERY (±10%) and reports"
  echo "every fifth check — about $(awk -v n="$DEVICES" -v e="${EVERY%s}" 'BEGIN { printf "%.0f", n / e }') checks/s offered. Every check and report is a"
  echo "write (the device's row, its history when something changed, the request's nonce). Servers,"
  echo "PostgreSQL $(basename "$(dirname "$pgbin")") (Debian defaults: fsync on) and the devices share the machine:"
  echo "$(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end."
  echo
  echo "| Setup | registering $DEVICES devices, s | checks/s sustained | check p50 / p99 | reports/s | failed requests | server peak RSS |"
  echo "|---|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
  echo
  echo "At most 128 requests are in flight per server; a server the devices outrun shows as a"
  echo "longer p99 and fewer checks per second than offered. A new device the server turns away"
  echo "(429: more new devices at once than its flood limit lets in) retries a second later, as the"
  echo "agent does. Two processes on one database share its work, not the"
  echo "machine's: on these 2 cores they compete with each other, PostgreSQL and the devices."
  echo "Reports/s counts each device's first report (one per device in the run). At the agent's"
  echo "default check interval (5 min), a sustained R checks/s serves about 300·R devices."
} >docs/bench-fleet.md
echo "wrote docs/bench-fleet.md"
