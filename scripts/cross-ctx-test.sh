#!/usr/bin/env bash
# The fiber context switch on aarch64: builds tests/runtime/ctx_cross.c with
# src/runtime/fiber_ctx.c for aarch64 (Debian's gcc-aarch64-linux-gnu,
# static) and runs it under user-mode emulation (qemu-user). Both come with
# `scripts/deps.sh test`. Usage: cross-ctx-test.sh [OUTDIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/build}/ctx-cross
cc=aarch64-linux-gnu-gcc
run=qemu-aarch64
for t in "$cc" "$run"; do
  if ! command -v "$t" >/dev/null; then
    echo "cross-ctx-test: $t is missing (bash scripts/deps.sh test)" >&2
    exit 1
  fi
done
mkdir -p "$out"
"$cc" -std=gnu11 -O2 -static -Wall -Wextra -Werror \
  -I"$root/include" -I"$root/src" \
  "$root/src/runtime/fiber_ctx.c" "$root/tests/runtime/ctx_cross.c" \
  -o "$out/ctx_aarch64" -lm
"$run" "$out/ctx_aarch64"
