#!/usr/bin/env bash
# Runs one kiln test file, or the tests a vitest name pattern selects, several times in a row, to
# tell a flaky test from a regression (docs/ci-failures.md). Each run is `npx vitest run ...`; a
# file in the slow tier (vitest.config.ts) runs with that tier's timeouts.
#
#   tools/rerun-test.sh <test file> [times=10]
#   tools/rerun-test.sh -t <pattern> [test file or folder ...] [times=10]
#
# Run it from the repository root. Prints PASS or FAIL per run with its duration and the run's
# test counts, then the summary line "N passed, N failed", and exits 1 if any run failed. A run
# that selects no test counts as a failure (a pattern that matches nothing proves nothing). The
# output of failed runs is kept and its path printed.
set -euo pipefail

usage() {
  echo "usage: tools/rerun-test.sh <test file> [times=10]" >&2
  echo "       tools/rerun-test.sh -t <pattern> [test file or folder ...] [times=10]" >&2
}

case "${1:-}" in
  -h | --help) usage; exit 0 ;;
esac

pattern=""
files=()
times=10
if [ "${1:-}" = "-t" ]; then
  if [ "$#" -lt 2 ] || [ -z "$2" ]; then usage; exit 2; fi
  pattern=$2
  shift 2
  files=("$@")
else
  if [ "$#" -lt 1 ] || [ "$#" -gt 2 ]; then usage; exit 2; fi
  files=("$@")
fi
# A trailing whole number is the count of runs.
if [ "${#files[@]}" -gt 0 ]; then
  last=${files[${#files[@]}-1]}
  if [[ "$last" =~ ^[0-9]+$ ]]; then
    times=$last
    unset 'files[${#files[@]}-1]'
  fi
fi
if [ -z "$pattern" ] && [ "${#files[@]}" -ne 1 ]; then usage; exit 2; fi
if ! [[ "$times" =~ ^[0-9]+$ ]] || [ "$times" -lt 1 ]; then
  echo "tools/rerun-test.sh: times must be a whole number of at least 1" >&2
  usage
  exit 2
fi
for f in ${files[@]+"${files[@]}"}; do
  if [ ! -e "$f" ]; then
    echo "tools/rerun-test.sh: no such test file or folder: $f" >&2
    exit 2
  fi
done

args=(run)
if [ -n "$pattern" ]; then args+=(-t "$pattern"); fi
args+=(${files[@]+"${files[@]}"})

now_ms() {
  if [ -n "${EPOCHREALTIME:-}" ]; then
    local t=${EPOCHREALTIME/[.,]/}
    echo $((t / 1000))
  else
    node -e 'process.stdout.write(String(Date.now()))'
  fi
}

logs=$(mktemp -d "${TMPDIR:-/tmp}/kiln-rerun.XXXXXX")
printf "npx vitest"; printf " %q" "${args[@]}"; printf "  (%s runs)\n" "$times"
passed=0
failed=0
for ((i = 1; i <= times; i++)); do
  log="$logs/run-$i.log"
  start=$(now_ms)
  rc=0
  NO_COLOR=1 npx vitest "${args[@]}" > "$log" 2>&1 || rc=$?
  end=$(now_ms)
  ms=$((end - start))
  secs=$(printf '%d.%01d' $((ms / 1000)) $(((ms % 1000) / 100)))
  # vitest's summary line, e.g. "Tests  12 passed | 3 skipped (15)", without colour codes
  counts=$(sed -E "s/$(printf '\033')\\[[0-9;]*m//g" "$log" | sed -n -E 's/^ *Tests +(.*)$/\1/p' | tail -n 1)
  if [ "$rc" -eq 0 ] && [[ "$counts" == *" passed"* ]]; then
    passed=$((passed + 1))
    echo "run $i/$times: PASS  ${secs}s  (tests: $counts)"
    rm -f "$log"
  else
    failed=$((failed + 1))
    why="exit $rc"
    if [ "$rc" -eq 0 ]; then why="no test selected"; fi
    echo "run $i/$times: FAIL  ${secs}s  ($why; tests: ${counts:-none}; output: $log)"
  fi
done
echo "$passed passed, $failed failed"
if [ "$failed" -eq 0 ]; then rmdir "$logs" 2>/dev/null || true; fi
[ "$failed" -eq 0 ]
