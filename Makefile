# One command each; every target sets up what is missing first (scripts/setup.sh is idempotent).
SHELL := /bin/bash
CANTOLAB_DATA ?= ../shared/data
# Absolute, so tests and tools that change directory still find the recordings.
override CANTOLAB_DATA := $(abspath $(CANTOLAB_DATA))
export CANTOLAB_DATA
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
PY := .venv/bin/python

.PHONY: setup lint test demo bench clean

setup:
	@bash scripts/setup.sh

# ruff (config in pyproject.toml): lint rules and the formatter's check; `make test` runs it first.
lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

test: setup lint
	$(PY) -m pytest

# Prefect's temporary server may take longer than its default 20 s to answer on a busy machine.
demo: setup
	PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=$${PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS:-120} $(PY) -m flows.demo

bench: setup
	$(PY) -m benchmarks

clean:
	rm -rf demo-output bench-results .pytest_cache
