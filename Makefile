# Two commands set everything up on a fresh machine (Python 3.11+):
#   make demo   run the proxy against the built-in simulated Gemini (no key, no network); PORT=8081 to move it
#   make test   install the dev toolchain and run the test suite (CI then runs make lint and make typecheck)
PY ?= python3
PORT ?= 8080
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUNTIME := $(VENV)/.runtime
PIP := $(BIN)/pip --quiet --disable-pip-version-check
# Errors only, for the demo's install: a first `make demo` prints its own lines, not pip's.
PIP_QUIETER := $(PIP) --quiet

.PHONY: demo test lint typecheck bench lock wheel-check clean

$(BIN)/python:
	@$(PY) -m venv $(VENV)

# What the demo needs: the package and its runtime dependencies, nothing from the dev toolchain.
$(RUNTIME): pyproject.toml | $(BIN)/python
	@echo "installing gemini-proxy into $(VENV) (first run only)..."
	@$(PIP_QUIETER) install -e .
	@touch $@

# Tests, lint and type checks: the runtime plus the dev extras (SDKs, pytest, ruff, mypy).
$(STAMP): pyproject.toml | $(BIN)/python
	$(PIP) install --upgrade pip
	$(PIP) install -e '.[dev]'
	touch $(STAMP) $(RUNTIME)

demo: $(RUNTIME)
	@$(BIN)/gemini-proxy demo --port $(PORT)

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider; rc=$$?; [ $$rc -eq 5 ] && echo "no tests collected" && exit 1; exit $$rc

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench.run

# Regenerate the image's hashed lock (requirements.lock) after changing dependencies in
# pyproject.toml (tests/test_lock.py fails until they agree again); pins that still fit are
# kept. `make lock LOCK_ARGS=--upgrade` takes the newest releases instead. The [otel] extra is
# locked too, so the image can send traces when an OTLP endpoint is configured.
lock: $(STAMP)
	$(BIN)/pip-compile --quiet $(LOCK_ARGS) --extra otel --generate-hashes --strip-extras --allow-unsafe \
	    --no-emit-index-url --no-emit-find-links --output-file=requirements.lock pyproject.toml

# Build the wheel, install it into a fresh venv outside the checkout, run the demo and one SDK call.
wheel-check: $(STAMP)
	$(BIN)/python .ci/wheel_check.py

clean:
	rm -rf $(VENV) build *.egg-info
