# Two commands do everything from a fresh clone: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.nofx-installed
PIP := $(BIN)/python -m pip
UV := $(BIN)/uv

.PHONY: help install demo test test-fast up lint typecheck bench bench-quick clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

# uv resolves and installs the pinned set in seconds where pip took two minutes (the same
# versions: constraints.txt pins every package); it is installed into the venv by pip itself.
# --compile-bytecode as pip does: where PYTHONDONTWRITEBYTECODE is set, every process (dbt,
# Dagster, each CLI call) would otherwise compile every module it imports, every time
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt uv
	$(UV) pip install -q --compile-bytecode --python $(BIN)/python -c constraints.txt -e '.[test,dev]'
	@touch $(STAMP)

install: $(STAMP)  ## create .venv and install nofx with test and dev extras

demo: $(STAMP)  ## register a simulated fleet, run sessions, materialize every asset, print a summary
	$(BIN)/nofx demo

# two workers: the suite waits on servers and subprocesses as much as it computes
TEST_WORKERS ?= 2

test: $(STAMP)  ## run the whole test suite with coverage (fails under 90%), TEST_WORKERS=2 in parallel
	@bash scripts/ensure-chromium.sh
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup --cov --cov-report=term-missing:skip-covered --cov-report=xml --durations=40

test-fast: $(STAMP)  ## the suite without the browser and slow tests
	$(BIN)/python -m pytest -m "not browser and not slow" -q

up: $(STAMP)  ## serve API :8000, Dagster :3000, Streamlit :8501, MLflow :5000
	$(BIN)/nofx up

lint: $(STAMP)  ## ruff, mypy and the import contracts (lint-imports, pyproject.toml)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

bench: $(STAMP)  ## every benchmark, full size, JSON under bench/results/
	$(UV) pip install -q --compile-bytecode --python $(BIN)/python -c constraints.txt -e '.[test,dev,bench]'
	for b in routing orchestration chaos api cluster workflows security; do \
	  test -f bench/$$b.py && $(BIN)/python -m bench.$$b --json bench/results/$$b.json || true; done

bench-quick: $(STAMP)  ## every benchmark in --quick mode (under a minute each)
	for b in routing orchestration chaos api cluster workflows security; do \
	  test -f bench/$$b.py && $(BIN)/python -m bench.$$b --quick --json bench/scratch/$$b.json || true; done

clean:  ## remove local state (.nofx) and build artefacts, keep .venv
	rm -rf .nofx dbt/target dbt/logs .pytest_cache .coverage coverage.xml
