#!/usr/bin/env bash
# deps.sh - install the Debian/Ubuntu packages Keel needs, if missing.
#
# Usage: scripts/deps.sh [GROUP...]      (default: build)
#   build  compiler, CMake, Ninja, zlib, Criterion (everything `make build`,
#          `make test` and `make run` need)
#   test   build + oracles used by tests and benches (erl, elixir, python3,
#          prometheus_client)
#   san    build + clang runtime for sanitizers and libFuzzer
#   bench  build + the load tools and peers of `keel bench` (wrk, nginx)
#   dev    test + san + clang-format, clang-tidy, cppcheck, gcovr
#   browser  node, npm and chromium for the dashboard's browser test
#          (tests/dashboard/browser, which also runs diff.js under node)
#   all    every package above
#
# Only packages dpkg-query reports as not installed are installed; when
# nothing is missing, nothing runs (no network). Set KEEL_SKIP_DEPS=1 to skip
# entirely (e.g. on a non-Debian system with the tools already present), or
# KEEL_DEPS_DRY_RUN=1 to print the apt-get commands instead of running them.
set -euo pipefail

if [[ "${KEEL_SKIP_DEPS:-0}" == 1 ]]; then
  exit 0
fi

BUILD_PKGS=(build-essential cmake ninja-build pkg-config zlib1g-dev
  libcriterion-dev libssl-dev libhttp-parser-dev)
TEST_PKGS=(erlang-base elixir python3 python3-prometheus-client curl
  qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
BENCH_PKGS=(wrk nginx-light)
SAN_PKGS=(clang clang-14 libclang-rt-14-dev)
DEV_PKGS=(clang-format clang-tidy cppcheck gcovr)
# node and npm may come from elsewhere (NodeSource's nodejs bundles npm and
# conflicts with Debian's npm): ask Debian only for the missing commands.
BROWSER_PKGS=(chromium)
command -v node >/dev/null 2>&1 || BROWSER_PKGS+=(nodejs)
command -v npm >/dev/null 2>&1 || BROWSER_PKGS+=(npm)

want=()
groups=("$@")
[[ ${#groups[@]} -eq 0 ]] && groups=(build)
for g in "${groups[@]}"; do
  case "$g" in
  build) want+=("${BUILD_PKGS[@]}") ;;
  test) want+=("${BUILD_PKGS[@]}" "${TEST_PKGS[@]}") ;;
  san) want+=("${BUILD_PKGS[@]}" "${SAN_PKGS[@]}") ;;
  bench) want+=("${BUILD_PKGS[@]}" "${BENCH_PKGS[@]}") ;;
  dev)
    want+=("${BUILD_PKGS[@]}" "${TEST_PKGS[@]}" "${SAN_PKGS[@]}"
      "${DEV_PKGS[@]}")
    ;;
  browser) want+=("${BROWSER_PKGS[@]}") ;;
  all)
    want+=("${BUILD_PKGS[@]}" "${TEST_PKGS[@]}" "${SAN_PKGS[@]}"
      "${DEV_PKGS[@]}" "${BENCH_PKGS[@]}" "${BROWSER_PKGS[@]}")
    ;;
  *)
    echo "deps.sh: unknown group '$g' (build, test, san, bench, dev, browser," \
      "all)" >&2
    exit 2
    ;;
  esac
done

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "deps.sh: not a dpkg-based system; install these yourself:" \
    "${want[*]}" >&2
  exit 0
fi

missing=()
for p in $(printf '%s\n' "${want[@]}" | sort -u); do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [[ "$status" == installed ]] || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "deps.sh: installing ${missing[*]}"
SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "deps.sh: need root or sudo to install ${missing[*]}" >&2
    exit 1
  fi
  SUDO=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
RUN=()
[[ "${KEEL_DEPS_DRY_RUN:-0}" == 1 ]] && RUN=(echo)
"${RUN[@]}" "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
# Packages with a service (nginx) must not start it: the benchmarks run
# their own instance on loopback. policy-rc.d tells invoke-rc.d so.
policy=/usr/sbin/policy-rc.d
made_policy=0
if [[ -z "${RUN[*]}" && ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee $policy >/dev/null
  "${SUDO[@]}" chmod 755 $policy
  made_policy=1
fi
rc=0
"${RUN[@]}" "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -q --no-install-recommends "${missing[@]}" || rc=$?
[[ $made_policy == 1 ]] && "${SUDO[@]}" rm -f $policy
exit $rc
