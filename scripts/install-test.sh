#!/usr/bin/env bash
# install-test.sh - install into a staging DESTDIR and build/run the consumer
# project tests/install/ against it three ways: find_package(Keel), CMake
# pkg_check_modules, and a bare compiler command line from pkg-config.
# Env: PREFIX (default /usr/local), KEEL_INSTALL_STAGE (default: a new
# temporary directory, removed on success).
set -euo pipefail

prefix=${PREFIX:-/usr/local}
stage=${KEEL_INSTALL_STAGE:-$(mktemp -d "${TMPDIR:-/tmp}/keel-install.XXXXXX")}
root=$stage$prefix
make --no-print-directory install DESTDIR="$stage" PREFIX="$prefix"

echo "== installed files under DESTDIR=$stage"
(cd "$stage" && find . -type f -o -type l | sort | sed 's|^\./|  /|')
for f in lib/libkeel.a lib/libkeel.so lib/libkeel.so.0 include/keel/term.h \
  include/keel/version.h lib/pkgconfig/keel.pc \
  lib/cmake/Keel/KeelConfig.cmake lib/cmake/Keel/KeelConfigVersion.cmake \
  lib/cmake/Keel/KeelTargets.cmake; do
  [[ -e "$root/$f" ]] || {
    echo "install-test.sh: missing $prefix/$f" >&2
    exit 1
  }
done

export LD_LIBRARY_PATH=$root/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PKG_CONFIG_PATH=$root/lib/pkgconfig

check_shared() { # binary: must load libkeel.so.0 from the staging tree
  # ldd's output is captured first: with pipefail, grep -q closing the pipe
  # early could fail the pipeline with SIGPIPE.
  local deps
  deps=$(ldd "$1")
  grep -q "libkeel.so.0 => $root/lib/" <<<"$deps" || {
    echo "install-test.sh: $1 does not use $root/lib/libkeel.so.0" >&2
    exit 1
  }
}

check_static() { # binary: must not need libkeel.so at all
  local deps
  deps=$(ldd "$1")
  if grep -q "libkeel\.so" <<<"$deps"; then
    echo "install-test.sh: $1 should link libkeel.a statically" >&2
    exit 1
  fi
}

echo "== consumer via find_package(Keel)"
b=$stage/consumer-cmake
cmake -S tests/install -B "$b" -G Ninja --log-level=WARNING \
  -DCMAKE_PREFIX_PATH="$root"
ninja -C "$b"
ctest --test-dir "$b" --output-on-failure
check_shared "$b/keel_consumer"
check_static "$b/keel_consumer_static"

echo "== consumer via pkg-config (CMake)"
b=$stage/consumer-pc
cmake -S tests/install -B "$b" -G Ninja --log-level=WARNING \
  -DKEEL_USE_PKGCONFIG=ON
ninja -C "$b"
ctest --test-dir "$b" --output-on-failure
check_shared "$b/keel_consumer"
check_static "$b/keel_consumer_static"

echo "== consumer via pkg-config (cc command line)"
echo "   pkg-config --cflags --libs keel: $(pkg-config --cflags --libs keel)"
# shellcheck disable=SC2046
cc -std=c11 -Wall -Werror -o "$stage/consumer-cc" tests/install/main.c \
  $(pkg-config --cflags --libs keel)
"$stage/consumer-cc"
check_shared "$stage/consumer-cc"
# shellcheck disable=SC2046
cc -std=c11 -Wall -Werror -o "$stage/consumer-cc-static" \
  tests/install/main.c $(pkg-config --cflags keel) "$root/lib/libkeel.a" \
  $(pkg-config --static --libs-only-l keel | sed 's/-lkeel\b//')
"$stage/consumer-cc-static"
check_static "$stage/consumer-cc-static"

if [[ -z "${KEEL_INSTALL_STAGE:-}" ]]; then
  rm -rf "$stage"
fi
echo "install-test.sh: ok"
