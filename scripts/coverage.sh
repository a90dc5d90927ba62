#!/usr/bin/env bash
# coverage.sh BUILD_DIR [MIN_LINE_PERCENT] - line and branch coverage of src/
# from the .gcda files of an instrumented build (KEEL_COVERAGE=ON) whose tests
# have just run. Prints a per-file table and the line/branch totals, writes an
# HTML report to BUILD_DIR/coverage/index.html and fails when line coverage
# is below MIN_LINE_PERCENT (default 80).
set -euo pipefail

dir=$1
min=${2:-80}
root=$(pwd)
mkdir -p "$dir/coverage"
status=0
# Serial on purpose: gcovr 5.2 with -j can hang after a gcov parse error.
summary=$(timeout 600 gcovr --root "$root" --filter "$root/src/" \
  --object-directory "$dir" --exclude-unreachable-branches \
  --txt "$dir/coverage/summary.txt" \
  --html-details "$dir/coverage/index.html" \
  --print-summary --fail-under-line "$min" "$dir") || status=$?
[[ -f "$dir/coverage/summary.txt" ]] && cat "$dir/coverage/summary.txt"
echo "Coverage of src/ (details: $dir/coverage/index.html):"
echo "$summary"
if [[ $status -ne 0 ]]; then
  echo "coverage.sh: line coverage of src/ below ${min}% (or gcovr failed)" >&2
  exit "$status"
fi
