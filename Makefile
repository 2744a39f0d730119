# parry — make targets. `make demo` and `make test` work on a fresh machine:
# both install the Debian packages first (scripts/deps, idempotent).

SWIFT   ?= swift
PREFIX  ?= /usr/local
DEBUG   := .build/debug/parry
RELEASE := .build/release/parry

.PHONY: all deps deps-rl build release demo test test-swift test-lua test-mpi test-fuzz fuzz sanitize bench bench-quick install uninstall clean

all: build

deps:
	@scripts/deps

# Gymnasium (with its MuJoCo model files) in a venv of its own, for the MuJoCo
# envs, the fixture and comparison scripts, and the RL rows of make bench.
deps-rl: deps
	@scripts/rl/venv --torch

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release

# The main job in about a minute: train, attack, table, plot and run record in demo-out/.
demo: release
	$(RELEASE) examples/demo.lua demo-out

test: deps
	$(SWIFT) build --build-tests
	$(MAKE) --no-print-directory test-swift test-lua test-mpi test-fuzz

test-swift:
	$(SWIFT) test --skip-build

test-lua:
	$(DEBUG) test Tests/lua

# Every fuzz corpus (Tests/fuzz/<target>/: seeds, inputs fuzzing found, past
# crashes) replayed through the readers: seconds, in the normal build.
test-fuzz:
	@for d in Tests/fuzz/*/; do t=$$(basename $$d); [ "$$t" = crashes ] && continue; \
	  .build/debug/parry-fuzz $$t $$d || exit 1; done

# make fuzz TARGET=json SECONDS=600: libFuzzer + ASan on one reader (scripts/fuzz/run).
FUZZ_FLAGS := -Xswiftc -sanitize=fuzzer,address -Xswiftc -DPARRY_FUZZ -Xswiftc -parse-as-library \
	-Xswiftc -Xclang-linker -Xswiftc -fuse-ld=lld
fuzz: deps
	$(SWIFT) build -c release --product parry-fuzz $(FUZZ_FLAGS) --scratch-path .build-fuzz
	@scripts/fuzz/run $(TARGET) $(or $(SECONDS),600)

# Tests/mpi under mpirun -np 1, 2 and 3 (skipped with a message without Open MPI).
test-mpi:
	@PARRY=$(DEBUG) scripts/test-mpi

# The Swift tests and the Lua specs under AddressSanitizer with LeakSanitizer
# (a build of its own in .build-asan): memory errors and leaks stop the run.
# scripts/sanitize/lsan.supp lists the only suppressions, each explained: the
# Swift runtime's weak-reference side tables and the test instances XCTest on
# Linux never frees; none names parry code. Then ThreadSanitizer
# (.build-tsan) on what runs on several threads: the parallel pool, the
# convolution and batch-norm kernels, federated clients training at once,
# parry.dist, and Ctrl-C reaching native work (the REPL and script interrupt
# specs). No suppressions: a report stops the run.
LSAN := ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=suppressions=$(CURDIR)/scripts/sanitize/lsan.supp
TSAN_SWIFT_TESTS := ParallelTests|NNTests|FedTests|DistTests|EncoderModuleTests
sanitize: deps
	$(SWIFT) build --build-tests --sanitize=address --scratch-path .build-asan
	$(LSAN) $(SWIFT) test --skip-build --sanitize=address --scratch-path .build-asan
	$(LSAN) PARRY_SANITIZE=1 .build-asan/debug/parry test Tests/lua
	$(SWIFT) build --build-tests --sanitize=thread --scratch-path .build-tsan
	TSAN_OPTIONS=halt_on_error=1 $(SWIFT) test --skip-build --sanitize=thread --scratch-path .build-tsan --filter '$(TSAN_SWIFT_TESTS)'
	TSAN_OPTIONS=halt_on_error=1 PARRY_SANITIZE=thread .build-tsan/debug/parry test Tests/lua/fl_spec.lua Tests/lua/nn_spec.lua Tests/lua/cli_spec.lua

# Every row, parry and its peer alternating in fresh processes, 3 repeats
# (scripts/bench/run --repeat N, --json to append to scripts/bench/history.jsonl).
bench: release
	@scripts/bench/run

# One repeat of small versions of the core rows, for use while developing.
bench-quick: release
	@scripts/bench/run --quick

# Also parry as a Lua 5.4 C module: parry/core.so on the stock lua5.4's cpath
# (PREFIX/lib/lua/5.4) and the stdlib on its path (PREFIX/share/lua/5.4).
install: release
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/parry/lua $(DESTDIR)$(PREFIX)/share/parry/docs
	install -m 755 $(RELEASE) $(DESTDIR)$(PREFIX)/bin/parry
	cp -R stdlib/parry $(DESTDIR)$(PREFIX)/share/parry/lua/
	cp docs/*.md $(DESTDIR)$(PREFIX)/share/parry/docs/
	install -d $(DESTDIR)$(PREFIX)/lib/lua/5.4/parry $(DESTDIR)$(PREFIX)/share/lua/5.4
	install -m 755 .build/release/libparry_core.so $(DESTDIR)$(PREFIX)/lib/lua/5.4/parry/core.so
	cp -R stdlib/parry $(DESTDIR)$(PREFIX)/share/lua/5.4/

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/parry
	rm -rf $(DESTDIR)$(PREFIX)/share/parry $(DESTDIR)$(PREFIX)/lib/lua/5.4/parry $(DESTDIR)$(PREFIX)/share/lua/5.4/parry

clean:
	rm -rf .build
