#!/usr/bin/env bash
# Runs every native Go fuzz target in the module, one at a time, for FUZZTIME each (default 10s):
# `make fuzz FUZZTIME=10m` for a long run. A failing input is kept by Go under the package's
# testdata/fuzz/<Target>/ and printed; the run goes on with the next target and fails at the end.
set -uo pipefail
go=${GO:-go}
fuzztime=${FUZZTIME:-10s}
cd "$(dirname "$0")/.."
passed=0 failed=0 failures=()
# Every "func FuzzXxx(f *testing.F)" in a _test.go file, as "dir name".
targets=$(grep -rE --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*\(f \*testing\.F\)' . |
  sed -E 's#^\./(.*)/[^/]*_test\.go:func (Fuzz[A-Za-z0-9_]*)\(.*#\1 \2#' | sort)
if [ -z "$targets" ]; then
  echo "fuzz: no fuzz targets found"
  exit 1
fi
# -fuzzminimizetime: shrinking each new input for up to a minute (Go's default) would take a
# short run's whole time on a large seed.
while read -r dir name; do
  start=$SECONDS
  out=$("$go" test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" -fuzzminimizetime 100x "./$dir" 2>&1)
  rc=$?
  # Go 1.26's fuzz coordinator can fail a run with a bare "context deadline exceeded" as its time
  # runs out (go.dev/issue/75804, fixed in Go 1.27): no input failed, so that is not a finding.
  if [ $rc -ne 0 ] && ! grep -q 'Failing input written' <<< "$out" &&
     [ "$(grep -A1 -- "^--- FAIL: $name " <<< "$out" | tail -1 | tr -d '[:space:]')" = "contextdeadlineexceeded" ]; then
    echo "fuzz: $name: the coordinator's end-of-run deadline race (go.dev/issue/75804), no failing input"
    rc=0
  fi
  if [ $rc -eq 0 ]; then
    passed=$((passed + 1))
    printf 'fuzz ok   %-45s %3ds\n' "./$dir $name" $((SECONDS - start))
  else
    failed=$((failed + 1))
    failures+=("./$dir $name")
    printf 'fuzz FAIL %-45s %3ds\n' "./$dir $name" $((SECONDS - start))
    printf '%s\n' "$out" | tail -40 | sed 's/^/    /'
  fi
done <<< "$targets"
echo "fuzz: $passed targets passed, $failed failed (each for $fuzztime)"
[ "$failed" -eq 0 ] || { printf 'failed: %s\n' "${failures[@]}"; exit 1; }
