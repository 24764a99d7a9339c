# The two commands of the README: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test test-fast acceptance benchmark

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

## Offline demo: the real pipeline against the provider simulator, then dagster dev.
demo: setup
	$(BIN)/python -m scholar_pipeline.demo

## Every test, the slow scenario tests included (what CI runs).
test: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest

## The quick tests only.
test-fast: setup
	$(BIN)/python -m pytest -m "not slow"

## The shared acceptance run on real recorded responses (needs ../shared).
acceptance: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" PROVIDERS="openalex crossref" bash ../shared/acceptance/run.sh
