# Makefile - convenience wrapper around CMake + Ninja. See docs/BUILDING.md.
#
# Build directories (each a separate CMake configuration):
#   build/          Debug, tests on          (build, test, run, lint)
#   build-asan/     Debug, ASan+UBSan        (test-asan)
#   build-tsan/     Debug, TSan              (test-tsan)
#   build-cov/      Debug, --coverage        (coverage)
#   build-fuzz/     clang, libFuzzer+ASan    (fuzz, fuzz-smoke)
#   build-release/  Release, no tests        (bench, install)

SHELL := /bin/bash

JOBS ?= 2
BUILD_TYPE ?= Debug
PREFIX ?= /usr/local
DESTDIR ?=
TESTS ?=
TESTS_EXCLUDE ?=
ARGS ?=
FUZZ_TIME ?= 300
FUZZ_SMOKE_TIME ?= 20
COVERAGE_MIN ?= 80
DEPS ?= scripts/deps.sh
FUZZ_CC ?= $(shell command -v clang 2>/dev/null || command -v clang-14 2>/dev/null || echo clang)

FORMAT_DIRS := include src tests bench tools examples fuzz cmake
FORMAT_FILES = $(shell find $(wildcard $(FORMAT_DIRS)) -type f \
                 \( -name '*.c' -o -name '*.h' \) -not -path 'fuzz/corpus/*' \
                 2>/dev/null | sort)

# ctest arguments shared by every test target.
CTEST_ARGS = --output-on-failure --no-tests=error -j$(JOBS) $(if $(TESTS),-R '$(TESTS)') \
             $(if $(TESTS_EXCLUDE),-E '$(TESTS_EXCLUDE)')

export ASAN_OPTIONS ?= detect_leaks=1:detect_stack_use_after_return=1
export UBSAN_OPTIONS ?= print_stacktrace=1:halt_on_error=1
export TSAN_OPTIONS ?= halt_on_error=1:second_deadlock_stack=1:suppressions=$(CURDIR)/cmake/tsan.supp
ifneq ($(KEEL_TEST_SCALE),)
export KEEL_TEST_SCALE
endif

# $(call configure,DIR,EXTRA_CMAKE_ARGS): (re)configure DIR with Ninja.
configure = cmake -S . -B $(1) -G Ninja --log-level=WARNING $(2)

.PHONY: all build deps deps-dev run test test-guarantees test-asan test-tsan format \
        format-check lint coverage install release fuzz fuzz-smoke \
        fuzz-build bench clean ci

all: build

deps:
	@bash $(DEPS) build

deps-dev:
	@bash $(DEPS) all

build: deps
	$(call configure,build,-DCMAKE_BUILD_TYPE=$(BUILD_TYPE))
	ninja -C build -j$(JOBS)

# The demo node runs the Release build: the dashboard then shows what the
# runtime costs, not what -O0 costs.
run: release
	@test -x build-release/keel || { echo "build-release/keel was not built (tools/keel missing)" >&2; exit 1; }
	build-release/keel run $(ARGS)

test: build
	@bash $(DEPS) test browser
	ctest --test-dir build $(CTEST_ARGS)

# The G-suite alone: the signal guarantees and the simulation mode, over
# SEEDS seeded simulations (KEEL_SEED=<n> replays one) and on 1, 2 and 8
# scheduler threads; then the same on TSan threads (fewer seeds).
SEEDS ?= 500
GUARANTEES := runtime_test_(signals|signals_lazy|signals_remote|sim|sim_props)$$
test-guarantees: build
	KEEL_SIM_SEEDS=$(SEEDS) ctest --test-dir build --output-on-failure -R '$(GUARANTEES)'
	$(call configure,build-tsan,-DCMAKE_BUILD_TYPE=Debug -DKEEL_SANITIZE=thread)
	ninja -C build-tsan -j$(JOBS) runtime_test_signals runtime_test_signals_lazy runtime_test_signals_remote runtime_test_sim runtime_test_sim_props base_test_version
	KEEL_SIM_SEEDS=20 bash scripts/tsan-run.sh build-tsan ctest --test-dir build-tsan \
	  --output-on-failure -R '$(GUARANTEES)'

test-asan: deps
	@bash $(DEPS) test san
	$(call configure,build-asan,-DCMAKE_BUILD_TYPE=Debug -DKEEL_SANITIZE=address)
	ninja -C build-asan -j$(JOBS)
	ctest --test-dir build-asan $(CTEST_ARGS)

test-tsan: deps
	@bash $(DEPS) test san
	$(call configure,build-tsan,-DCMAKE_BUILD_TYPE=Debug -DKEEL_SANITIZE=thread)
	ninja -C build-tsan -j$(JOBS)
	bash scripts/tsan-run.sh build-tsan ctest --test-dir build-tsan $(CTEST_ARGS)

format:
	clang-format -i $(FORMAT_FILES)

format-check:
	clang-format --dry-run -Werror $(FORMAT_FILES)

lint: deps
	@bash $(DEPS) dev
	$(call configure,build,-DCMAKE_BUILD_TYPE=$(BUILD_TYPE))
	bash scripts/lint.sh build

coverage: deps
	@bash $(DEPS) dev
	$(call configure,build-cov,-DCMAKE_BUILD_TYPE=Debug -DKEEL_COVERAGE=ON)
	ninja -C build-cov -j$(JOBS)
	find build-cov -name '*.gcda' -delete
	ctest --test-dir build-cov $(CTEST_ARGS)
	bash scripts/coverage.sh build-cov $(COVERAGE_MIN)

release: deps
	$(call configure,build-release,-DCMAKE_BUILD_TYPE=Release -DKEEL_BUILD_TESTS=OFF -DCMAKE_INSTALL_PREFIX=$(PREFIX))
	ninja -C build-release -j$(JOBS)

install: release
	DESTDIR="$(DESTDIR)" cmake --install build-release --prefix "$(PREFIX)"

bench: release
	@test -x build-release/keel || { echo "build-release/keel was not built (tools/keel missing)" >&2; exit 1; }
	@bash $(DEPS) test bench
	build-release/keel bench terms $(ARGS)
	build-release/keel bench runtime $(ARGS)
	build-release/keel bench telemetry $(ARGS)
	build-release/keel bench tables $(ARGS)
	build-release/keel bench otp $(ARGS)
	build-release/keel bench http $(ARGS)
	build-release/keel bench ws $(ARGS)
	build-release/keel bench pubsub $(ARGS)
	build-release/keel bench net $(ARGS)
	build-release/keel bench tls $(ARGS)

fuzz-build: deps
	@bash $(DEPS) san
	$(call configure,build-fuzz,-DCMAKE_C_COMPILER=$(FUZZ_CC) -DCMAKE_BUILD_TYPE=Debug -DKEEL_FUZZ=ON -DKEEL_BUILD_TESTS=OFF)
	ninja -C build-fuzz -j$(JOBS) keel_fuzzers

fuzz: fuzz-build
	bash scripts/fuzz.sh build-fuzz $(FUZZ_TIME)

fuzz-smoke: fuzz-build
	bash scripts/fuzz.sh build-fuzz $(FUZZ_SMOKE_TIME)

ci:
	bash .ci/run

clean:
	rm -rf build build-asan build-tsan build-cov build-fuzz build-release
