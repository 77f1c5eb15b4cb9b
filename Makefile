# Two commands do all the set-up: `make run` and `make test` (see README.md).
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
UV := $(BIN)/uv
STAMP := $(VENV)/.installed
# the dashboard's front-end packages (MapLibre GL JS), served by the app from node_modules/
NODE_STAMP := node_modules/.package-lock.json

.PHONY: run test lint setup system-deps format lock clean

setup: system-deps $(STAMP) $(NODE_STAMP)

system-deps:
	@bash scripts/install-system-deps.sh

# uv into the venv (pinned and hashed), then every Python package exactly as uv.lock pins and
# hashes it, with the dev extra; the project itself editable. A changed uv.lock re-installs;
# a pyproject.toml that uv.lock no longer matches stops here (run `make lock`).
$(UV): scripts/uv-requirements.txt
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --require-hashes -r scripts/uv-requirements.txt
	touch $(UV)

# --compile-bytecode: the processes run with PYTHONDONTWRITEBYTECODE (as in the image), so
# without it every start compiles the modules it imports again (WeasyPrint alone: ~1 s)
$(STAMP): pyproject.toml uv.lock $(UV)
	$(UV) sync --quiet --locked --extra dev --compile-bytecode
	touch $(STAMP)

# after changing dependencies in pyproject.toml: re-resolve uv.lock (and commit it)
lock: $(UV)
	$(UV) lock

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error

run: setup
	$(BIN)/borderwatch serve

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: setup lint
	$(BIN)/pytest

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
