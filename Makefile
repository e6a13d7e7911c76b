# One entry point for what a developer (and CI) runs. Every target installs what it needs first.
#   make demo    run the demo on the embedded emulator
#   make test    run the test suite
#   make test-fast  the unit and program tests only (no emulator, no provider host)
#   make check   format check, lint, types, tests (what CI runs)
#   make bench   measure request counts and timings per provider operation, then the fleet part (prints figures)
#   make bench-fleet  the fleet part alone, writing docs/benchmarks.md and docs/benchmarks.svg from the run
PYTHON ?= python3
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
PYTEST_ARGS ?= -n auto

.PHONY: install demo test test-fast lint types fmt check bench bench-fleet clean emulator lock

$(UV):
	@$(PYTHON) -c 'import sys; sys.exit("adp-identity needs Python 3.11 or newer (found %s)" % sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# requirements.lock pins every package by version and hash (names only: no index or download address); the project
# itself is installed editable on top, so the provider host and the Pulumi program import it from the work tree.
$(VENV)/.installed: $(UV) pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(UV) venv --quiet --python "$$(command -v $(PYTHON))" $(VENV)
	$(UV) pip sync --quiet --require-hashes --python $(BIN)/python requirements.lock
	$(UV) pip install --quiet --no-deps --python $(BIN)/python -e .
	@touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/adp-identity demo

emulator: install
	$(BIN)/adp-identity emulator

test: install
	$(BIN)/pytest $(PYTEST_ARGS)

# The fast subset: unit and program tests, no emulator and no provider host (a test that starts one unmarked fails).
test-fast: install
	ADP_IDENTITY_TEST_FAST=1 $(BIN)/pytest $(PYTEST_ARGS) -m "not emulator and not grpc"

lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/lint-imports

types: install
	$(BIN)/mypy

fmt: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

check: lint types test

bench: install
	$(BIN)/python -m bench
	$(BIN)/python -m bench fleet

# The fleet part (docs/benchmarks.md says what it measures): 100, 500 and 1,500 users at 50 ms per request, the
# per-resource way at every size too (52 minutes on 2 cores, measured: its 1,500 users take 35 of them).
bench-fleet: install
	$(BIN)/python -m bench fleet --per-resource-max-users 1500 --write-docs

# The single re-pin entry: run it after changing pyproject.toml, and commit both files it writes.
#   uv.lock           the lock Pulumi's uv toolchain reads (Pulumi.yaml `toolchain: uv`; CI sets UV_FROZEN=1, so
#                     it must exist and be current: docs/adr/0009-uv-lock-for-the-pulumi-toolchain.md)
#   requirements.lock the same pins rendered with hashes for `uv pip sync --require-hashes` (make install)
# Versions already in uv.lock are kept where they still fit; `make lock LOCK_ARGS=--upgrade` moves everything on.
# tests/unit/test_pulumi_toolchain.py fails when the two disagree or uv.lock no longer matches pyproject.toml.
LOCK_ARGS ?=
lock: $(UV)
	$(UV) lock --quiet $(LOCK_ARGS)
	$(UV) export --quiet --frozen --format requirements-txt --no-emit-project --group dev -o requirements.lock

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache
