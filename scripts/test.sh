#!/usr/bin/env bash
# Runs every test verbosely, with the race detector, into a log, prints the package lines and a
# summary, and lists every skipped test with its reason. Under CI=true a skipped test fails the
# run: CI installs every tool.
set -uo pipefail
go=${GO:-go}
log=${TEST_LOG:-$(mktemp -t kiln-test.XXXXXX.log)}
# -race: the core packages and the GUI hand work between goroutines; a data race fails the run.
"$go" test -race -v -count=1 -timeout "${TEST_TIMEOUT:-20m}" ./... > "$log" 2>&1
rc=$?
grep -E '^(ok|FAIL|panic:|---)[ 	]' "$log" | grep -v -e '^--- PASS' -e '^--- SKIP' || true
pass=$(grep -cE '^\s*--- PASS' "$log")
fail=$(grep -cE '^\s*--- FAIL' "$log")
skip=$(grep -cE '^\s*--- SKIP' "$log")
if [ "$skip" -gt 0 ]; then
  echo "skipped tests:"
  grep -B1 -E '^\s*--- SKIP' "$log" | grep -v '^--$' | sed 's/^/  /'
fi
if [ "$rc" -ne 0 ]; then
  echo "failures (full log: $log):"
  grep -B2 -A20 -E '^\s*--- FAIL' "$log" | head -200
  grep -A40 'WARNING: DATA RACE' "$log" | head -120
  # A test binary that timed out names the tests still running; the goroutines in test code show
  # where each one waits.
  awk '/^panic: test timed out/ { dump = 1 }
       dump && /^$/ { if (block ~ /_test\.go:/ || block ~ /running tests:/) printf "%s\n", block; block = ""; next }
       dump { block = block $0 "\n" }' "$log" | head -300
fi
echo "tests: $pass passed, $fail failed, $skip skipped"
if [ "$rc" -eq 0 ] && [ "$skip" -gt 0 ] && [ "${CI:-}" = "true" ]; then
  echo "CI: $skip tests were skipped; CI must run them all (install what they need in scripts/install-deps.sh)"
  rc=1
fi
exit $rc
