# Everything a user or CI runs goes through here; .ci/run calls `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.deps-installed
export CARGO_TERM_COLOR ?= never

.PHONY: setup build demo test test-rust test-python lint fmt bench bench-rust bench-targets clean loom asan memcheck

# numpy: the vLLM compat test's payloads; faster-fifo: the side-by-side run of
# tests/compat/test_faster_fifo.py (its binary wheel only: nothing to compile).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "maturin>=1.5,<2" "pytest>=7" "pytest-timeout>=2" "mypy>=1.8" "msgpack>=1.0" "rich>=13" "pyzmq>=25" "cloudpickle>=2" "numpy>=1.22" "uvloop>=0.19"
	$(PIP) install --quiet --only-binary faster-fifo "faster-fifo>=1.4"
	touch $(STAMP)

## setup: virtualenv with the dependencies, and shmq built in release mode into it
setup: $(STAMP) build

build: $(STAMP)
	VIRTUAL_ENV=$(abspath $(VENV)) $(VENV)/bin/maturin develop --release --quiet

## demo: set everything up, then run the multi-process demo
demo: setup
	$(PY) examples/python/demo.py

## test: set everything up, then run every check and test (Rust and Python)
test: setup lint test-rust loom asan test-python

lint: $(STAMP)
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --quiet -- -D warnings
	$(PY) -m mypy
	$(PY) -m mypy.stubtest shmq._shmq --allowlist .mypy-stubtest-allowlist

test-rust:
	cargo test --workspace --quiet

test-python: build
	$(PY) tests/leak_check.py -- $(PY) -m pytest tests examples/python -q

fmt:
	cargo fmt --all

## bench: the cross-library benchmark (shmq vs multiprocessing.Queue vs faster-fifo)
bench: setup
	$(PIP) install --quiet "faster-fifo>=1.4"
	$(PY) benchmarks/bench.py

bench-rust:
	cargo bench -p shmq --bench ring

## bench-targets: issue 13's performance targets in one run (peers and bounds beside them)
bench-targets: build
	$(PY) -m pip install --quiet iceoryx2 || echo "iceoryx2 not installed: its row is left out"
	$(PY) benchmarks/targets.py

clean:
	rm -rf $(VENV) target

## loom: model-check the ring protocol (threads for processes), in its own target dir
loom:
	RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 LOOM_MAX_BRANCHES=100000 CARGO_TARGET_DIR=target/loom \
		cargo test -p shmq-core --test loom --release --quiet

## asan: the heap-backed core tests (not loom: its models run under `--cfg loom`) under
## AddressSanitizer and LeakSanitizer, with the nightly toolchain, in their own target dir;
## `--target` keeps build scripts and proc-macros uninstrumented. Without a nightly toolchain
## (-Zsanitizer needs one), the same tests under valgrind memcheck instead.
MEMORY_TESTS := --lib --test ring --test broadcast --test repair --test hostile --test hostile_broadcast
asan:
	@if cargo +nightly --version >/dev/null 2>&1; then \
		echo "asan: AddressSanitizer, $$(rustc +nightly --version)"; \
		RUSTFLAGS="-Zsanitizer=address" ASAN_OPTIONS="detect_leaks=1" \
			cargo +nightly test -p shmq-core --target x86_64-unknown-linux-gnu \
			--target-dir target/asan $(MEMORY_TESTS) --quiet; \
	else \
		echo "asan: no nightly toolchain for -Zsanitizer=address: valgrind memcheck instead"; \
		$(MAKE) --no-print-directory memcheck; \
	fi

## memcheck: the same tests under valgrind memcheck (fewer property cases: ~20x slower)
memcheck:
	PROPTEST_CASES=64 CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite" \
		cargo test -p shmq-core $(MEMORY_TESTS) --quiet
