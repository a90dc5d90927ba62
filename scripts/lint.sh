#!/usr/bin/env bash
# lint.sh [BUILD_DIR] - static analysis of src/: clang-tidy (.clang-tidy, using
# BUILD_DIR/compile_commands.json, default build/) and cppcheck (suppressions
# in .cppcheck), plus the 1500-line limit on source files. Exits non-zero
# when any of them reports a finding.
set -uo pipefail

dir=${1:-build}
jobs=${JOBS:-2}
db=$dir/compile_commands.json
if [[ ! -f "$db" ]]; then
  echo "lint.sh: $db missing; configure first (make build)" >&2
  exit 2
fi
tidy=$(command -v clang-tidy || command -v clang-tidy-14 || true)
if [[ -z "$tidy" ]] || ! command -v cppcheck >/dev/null; then
  echo "lint.sh: clang-tidy and cppcheck are required (scripts/deps.sh dev)" >&2
  exit 2
fi

mapfile -t files < <(find src -type f -name '*.c' | sort)
status=0

echo "== clang-tidy ($("$tidy" --version | grep -o 'version [0-9.]*'))" \
  "on ${#files[@]} files"
tidy_log=$dir/clang-tidy.log
printf '%s\0' "${files[@]}" |
  xargs -0 -r -n 4 -P "$jobs" "$tidy" -p "$dir" --quiet >"$tidy_log" 2>&1
tidy_rc=$?
# Keep the findings, drop clang-tidy's "N warnings generated" chatter.
grep -v -E '^[0-9]+ warnings? (and [0-9]+ errors? )?generated\.$|^Suppressed [0-9]+ warnings|^Use -header-filter|^Use -system-headers' \
  "$tidy_log" || true
if [[ $tidy_rc -ne 0 ]]; then
  echo "lint.sh: clang-tidy: $(grep -c -E ': (error|warning): ' "$tidy_log")" \
    "finding(s)" >&2
  status=1
fi

echo "== cppcheck $(cppcheck --version | grep -o '[0-9.]*$')"
cppcheck --quiet --std=c11 --language=c --error-exitcode=1 -j "$jobs" \
  --enable=warning,performance,portability --inline-suppr \
  --suppressions-list=.cppcheck --max-configs=1 \
  -D__GNUC__ -D__linux__ -D__x86_64__ -D__STDC_VERSION__=201112L \
  -I include -I src --template='{file}:{line}:{column}: {severity}: {message} [{id}]' \
  "${files[@]}" || status=1

echo "== file length (at most 1500 lines per source file)"
while IFS= read -r -d '' f; do
  n=$(wc -l <"$f")
  if [[ $n -gt 1500 ]]; then
    echo "$f: $n lines (limit 1500)"
    status=1
  fi
done < <(find include src tests tools bench fuzz examples -type f \
  \( -name '*.c' -o -name '*.h' \) -print0 2>/dev/null)

if [[ $status -eq 0 ]]; then
  echo "lint.sh: no findings"
fi
exit $status
