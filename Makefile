# One entry point for what a developer (and CI) runs. Every target installs what it needs first.
#   make demo    run the demo on the embedded emulator
#   make test    run the test suite
#   make check   format check, lint, types, tests (what CI runs)
#   make bench   measure request counts and timings per provider operation (prints figures)
PYTHON ?= python3
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
PYTEST_ARGS ?= -n auto

.PHONY: install demo test lint types fmt check bench clean emulator

$(UV):
	@$(PYTHON) -c 'import sys; sys.exit("adp-identity needs Python 3.11 or newer (found %s)" % sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.installed: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --quiet --python "$$(command -v $(PYTHON))"
	@touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/adp-identity demo

emulator: install
	$(BIN)/adp-identity emulator

test: install
	$(BIN)/pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

types: install
	$(BIN)/mypy

fmt: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

check: lint types test

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache
