# The farm's commands. `make up` runs it; `make test` installs what the tests need and runs them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install up test test-tools bench lint format clean

install: $(STAMP)

# torch is pinned to 2.13.0 (the worker extra) so CPU machines take the local CPU build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[worker,embedded,dev]'
	touch $(STAMP)

up: install
	$(BIN)/python infra/local_stack.py

# The compose-file tests validate with Debian's docker-compose (no Docker engine needed).
test-tools:
	@command -v docker-compose >/dev/null 2>&1 || { \
	  echo "installing docker-compose (validates compose files without an engine)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose >/dev/null; }

test: install test-tools
	$(BIN)/pytest

# Farm overhead per job vs a bare Celery round trip (docs/benchmarks.md). Not a test: numbers only.
bench: install
	$(BIN)/python infra/bench/overhead.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
