"""Shared fixtures: recorded responses, a running provider simulator, an isolated pipeline home; and the
session-wide secret scan (`secret_scan.py`)."""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.defs_state.base import set_defs_state_storage

from scholar_pipeline.simulator import Corpus, ProviderSimulator
from scholar_pipeline.simulator.server import PLACEHOLDER_KEYS
from scholar_pipeline_tests.helpers import SEARCH
from scholar_pipeline_tests.postgres import DEPLOY_DAGSTER_YAML, PG, fresh_database
from scholar_pipeline_tests.secret_scan import MARKER, SecretScan

DATA = Path(__file__).parent / "data"
REAL_RESPONSES = DATA / "real_responses"
REPO_ROOT = Path(__file__).resolve().parent.parent
SECRET_ENV = ("OPENALEX_API_KEY", "PUBMED_API_KEY", "SPRINGER_NATURE_API_KEY", "CORE_API_KEY", "CROSSREF_PLUS_TOKEN",
              "SCHOLAR_PIPELINE_CACHE_KEY", "DAGSTER_PG_PASSWORD", "PGPASSWORD",
              "AWS_SECRET_ACCESS_KEY",
              # test_alerts.py: the webhook URLs, the token in their paths and the SMTP password.
              "ALERTS_SLACK_WEBHOOK", "ALERTS_WEBHOOK_URL", "ALERTS_WEBHOOK_TOKEN", "ALERTS_SMTP_PASSWORD")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARKER}(*globs, output=False): this test leaves a key in the files under "
                            "its tmp_path matching a glob (all without one; with output=True in its output too), on "
                            "purpose; the secret scan leaves those out")
    placeholders = {f"{name} (the simulator's placeholder)": key for name, key in PLACEHOLDER_KEYS.items()}
    config.pluginmanager.register(SecretScan(config, SECRET_ENV, placeholders), "secret_scan")
    _keep_test_instances(config)


def _keep_test_instances(config: pytest.Config) -> None:
    """`dg.instance_for_test()` keeps its DAGSTER_HOME (event log, run storage) under the session's base temp
    directory instead of a temporary directory removed when the test ends, so that the secret scan reads it."""
    original = dg.instance_for_test

    @functools.wraps(original)
    def kept(*args, temp_dir=None, **kwargs):
        if temp_dir is None and len(args) < 3:  # (overrides, set_dagster_home, temp_dir, ...)
            temp_dir = str(config._tmp_path_factory.mktemp("dagster_instance"))
        return original(*args, temp_dir=temp_dir, **kwargs)

    dg.instance_for_test = kept
    config.add_cleanup(functools.partial(setattr, dg, "instance_for_test", original))


def real_response(relative: str) -> bytes:
    return (REAL_RESPONSES / relative).read_bytes()


@pytest.fixture(autouse=True)
def _no_dagster_state_storage_left_behind():
    """Dagster 1.13's `with DagsterInstance` sets the current defs-state storage and never resets it, so a
    later test that loads definitions reaches a disposed instance ("undefined DagsterInstance weakref")."""
    with set_defs_state_storage(None):
        yield


@pytest.fixture
def simulator():
    with ProviderSimulator(corpus=Corpus(seed=11, min_per_day=120, max_per_day=240)) as sim:
        yield sim


@pytest.fixture
def pipeline_env(tmp_path, monkeypatch, simulator):
    """An isolated home and saved-search file, every provider pointed at the simulator.

    Returns the environment as a dict too, for tests that start subprocesses.
    """
    home = tmp_path / "home"
    queries = tmp_path / "queries.yaml"
    queries.write_text(
        "queries:\n"
        "  - name: sim_search\n"
        f"    text: {SEARCH.text}\n"  # as helpers.SEARCH, whose text tests ask record_ids for
        "    providers: [openalex, crossref]\n"
        "    start_date: 2024-01-01\n"
    )
    env = {
        "SCHOLAR_PIPELINE_HOME": str(home),
        "SCHOLAR_PIPELINE_QUERIES": str(queries),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        **simulator.environ(),
        "SCHOLAR_PIPELINE_OPENALEX_RATE_LIMIT": "50",
        "SCHOLAR_PIPELINE_CROSSREF_RATE_LIMIT": "4",
        # Small pages so that every partition crosses page boundaries.
        "SCHOLAR_PIPELINE_OPENALEX_PAGE_SIZE": "25",
        "SCHOLAR_PIPELINE_CROSSREF_PAGE_SIZE": "20",
    }
    (tmp_path / "dagster_home").mkdir()
    for name in SECRET_ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def pg_database():
    """A fresh PostgreSQL database for one instance."""
    with fresh_database("scholar_instance") as name:
        yield name


@pytest.fixture
def lake_database():
    """A fresh PostgreSQL database for a DuckLake catalog."""
    with fresh_database("scholar_lake") as name:
        yield name


@pytest.fixture
def production_env(pipeline_env, pg_database, monkeypatch):
    """The pipeline's environment (providers simulated) with DAGSTER_HOME holding deploy/dagster.yaml and the
    DAGSTER_PG_* settings it reads, in this process too (DagsterInstance resolves `env:` when it loads)."""
    shutil.copyfile(DEPLOY_DAGSTER_YAML, Path(pipeline_env["DAGSTER_HOME"]) / "dagster.yaml")
    settings = PG | {"DAGSTER_PG_DB": pg_database}
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    return dict(os.environ)
