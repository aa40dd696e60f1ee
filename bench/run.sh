#!/usr/bin/env bash
# Runs every benchmark script in bench/ (each compares Kiln with the tool a user would otherwise use,
# in the same run, and writes its figures to docs/bench-<area>.md), then gathers them into
# docs/benchmarks.md. Run through `make bench`; one area: `bash bench/run.sh flash`; only gather the
# recorded figures: `bash bench/run.sh --gather`.
set -euo pipefail
cd "$(dirname "$0")/.."
areas=("$@")
if [ "${1:-}" = "--gather" ]; then
  areas=()
elif [ ${#areas[@]} -eq 0 ]; then
  for s in bench/*.sh; do
    [ "$(basename "$s")" = run.sh ] || areas+=("$(basename "$s" .sh)")
  done
fi
for a in ${areas[@]+"${areas[@]}"}; do
  echo "== bench: $a"
  bash "bench/$a.sh"
done
{
  echo "# Benchmarks"
  echo
  echo "Produced by \`make bench\` (bench/run.sh) on the project's reference machine: 2 cores, 24 GiB,"
  echo "Debian 12, no KVM (QEMU under TCG). Each figure is measured against the peer tool in the same run."
  for f in docs/bench-*.md; do
    echo
    sed 's/^# /## /' "$f"
  done
} > docs/benchmarks.md
echo "wrote docs/benchmarks.md"
