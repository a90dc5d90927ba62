#!/usr/bin/env bash
# fuzz.sh BUILD_DIR SECONDS - run every libFuzzer target of BUILD_DIR
# (built from fuzz/fuzz_<name>.c by `make fuzz-build`) for SECONDS each.
#
# Target fuzz_<name> starts from the committed seed corpus fuzz/corpus/<name>/
# (read-only) plus a working corpus BUILD_DIR/corpus/<name>/ that keeps what
# earlier runs found. A dictionary fuzz/<name>.dict is used when present.
# Crashing inputs land in fuzz/artifacts/<name>-crash-*; reproduce one with
# BUILD_DIR/fuzz_<name> fuzz/artifacts/<file>. Fails if any target failed.
set -euo pipefail

dir=$1
secs=$2
shopt -s nullglob

targets=()
for t in "$dir"/fuzz_*; do
  [[ -f "$t" && -x "$t" ]] && targets+=("$t")
done
if [[ ${#targets[@]} -eq 0 ]]; then
  echo "fuzz.sh: no fuzz targets in $dir (none in fuzz/fuzz_*.c yet)"
  exit 0
fi

mkdir -p fuzz/artifacts
failed=()
for t in "${targets[@]}"; do
  name=$(basename "$t")
  name=${name#fuzz_}
  work=$dir/corpus/$name
  mkdir -p "$work"
  args=(-max_total_time="$secs" -timeout=10 -rss_limit_mb=2048
    -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$name-")
  [[ -f "fuzz/$name.dict" ]] && args+=(-dict="fuzz/$name.dict")
  corpora=("$work")
  if [[ -d "fuzz/corpus/$name" ]]; then
    corpora+=("fuzz/corpus/$name")
  else
    echo "fuzz.sh: warning: no seed corpus fuzz/corpus/$name/" >&2
  fi
  log=$dir/fuzz-$name.log
  echo "== fuzz_$name: ${secs}s, corpus ${corpora[*]}"
  if "$t" "${args[@]}" "${corpora[@]}" >"$log" 2>&1; then
    grep -E '^(#[0-9]+.*DONE|stat::number_of_executed_units|stat::peak_rss_mb)' \
      "$log" || tail -n 3 "$log"
    echo "   corpus now $(find "$work" -type f | wc -l) files"
  else
    echo "!! fuzz_$name FAILED; log $log:" >&2
    grep -A 40 -E '^==[0-9]+==ERROR|runtime error|deadly signal|Test unit written' \
      "$log" | head -n 60 >&2 || tail -n 40 "$log" >&2
    failed+=("fuzz_$name")
  fi
done
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzz.sh: failing targets: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz.sh: ${#targets[@]} target(s) ran ${secs}s each without findings"
