#!/usr/bin/env bash
# browser-test.sh KEEL_BINARY [ARTIFACTS_DIR] - the dashboard in real
# Chromium: starts `keel run` on a free loopback port, waits for its
# dashboard line, runs tests/dashboard/browser/dashboard.test.mjs against
# it (Playwright's playwright-core driving Debian's /usr/bin/chromium),
# then stops the node with SIGTERM and checks it stopped cleanly.
# Screenshots land in ARTIFACTS_DIR (default: build/artifacts/dashboard).
# Needs node, npm and chromium (scripts/deps.sh browser); installs the
# pinned playwright-core from the npm registry on first use.
set -euo pipefail

keel=$1
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
art=${2:-$here/build/artifacts/dashboard}
dir=$here/tests/dashboard/browser
mkdir -p "$art"

if [[ ! -d $dir/node_modules/playwright-core ]]; then
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
fi

log=$(mktemp)
"$keel" run --port 0 --crash-every 3 --rate 300 >"$log" 2>&1 &
pid=$!
cleanup() {
  kill "$pid" 2>/dev/null || true
  rm -f "$log"
}
trap cleanup EXIT

url=
for _ in $(seq 1 300); do # the node prints its address at once
  url=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$log" | head -n1 || true)
  [[ -n $url ]] && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
if [[ -z $url ]]; then
  echo "browser-test.sh: keel run printed no dashboard address:" >&2
  cat "$log" >&2
  exit 1
fi

rc=0
ARTIFACTS=$art node "$dir/dashboard.test.mjs" --url "$url" || rc=$?
kill -TERM "$pid"
wait "$pid" || { echo "browser-test.sh: keel run did not stop cleanly" >&2; rc=1; }
grep -q '^keel: stopped$' "$log" || { cat "$log" >&2; rc=1; }
exit $rc
