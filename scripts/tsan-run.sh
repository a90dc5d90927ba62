#!/usr/bin/env bash
# tsan-run.sh BUILD_DIR COMMAND... - run COMMAND (normally ctest) so that
# ThreadSanitizer binaries of BUILD_DIR can start.
#
# TSan maps its shadow memory at fixed addresses; with high ASLR entropy
# (vm.mmap_rnd_bits > 28, the default of recent kernels) binaries die at once
# with "FATAL: ThreadSanitizer: unexpected memory mapping". A probe binary
# (base_test_version) is run first; on that failure the command is re-run
# under `setarch -R` (ASLR off for it and its children), or, when setarch is
# not permitted (e.g. a container's seccomp policy) and we are root, with
# vm.mmap_rnd_bits lowered to 28.
set -euo pipefail

dir=$1
shift
probe=$dir/base_test_version
mapping_error() { grep -q "unexpected memory mapping" <<<"$1"; }

if [[ ! -x "$probe" ]]; then
  exec "$@"
fi
# --list only starts the binary (TSan initialises before main) and lists tests.
if out=$("$probe" --list 2>&1) || ! mapping_error "$out"; then
  exec "$@"
fi

arch=$(uname -m)
echo "tsan-run.sh: TSan cannot start with this ASLR setting" >&2
if out=$(setarch "$arch" -R "$probe" --list 2>&1) || ! mapping_error "$out"; then
  echo "tsan-run.sh: running under setarch $arch -R" >&2
  exec setarch "$arch" -R "$@"
fi
knob=/proc/sys/vm/mmap_rnd_bits
if [[ -w "$knob" ]]; then
  echo "tsan-run.sh: setarch -R not permitted; lowering vm.mmap_rnd_bits" \
    "from $(cat "$knob") to 28 (system-wide; restore with sysctl)" >&2
  echo 28 >"$knob"
  exec "$@"
fi
echo "tsan-run.sh: cannot disable ASLR; run as root or set" \
  "vm.mmap_rnd_bits=28 (sysctl -w vm.mmap_rnd_bits=28)" >&2
exit 1
