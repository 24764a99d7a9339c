"""Figure 6: a warm rerun of unchanged partitions: requests made (target 0) and time, beside the cold run.

One day of one saved search on OpenAlex and Crossref, landed from the simulator into a
fresh home, then materialized again: the HTTP cache answers every page, so the provider
sees nothing and the rerun costs only normalization and the DuckDB swap.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from unittest import mock

import dagster as dg

from scholar_pipeline.defs.resources import scholar_api_from_env, warehouse_from_env
from scholar_pipeline.defs.saved_searches import build_saved_search_assets
from scholar_pipeline.queries import SavedSearch
from scholar_pipeline.simulator import Corpus, ProviderSimulator

SEARCH = SavedSearch(name="bench", text="large language model evaluation", providers=["openalex", "crossref"],
                     start_date="2024-01-01")
DAY = "2024-03-01"


def _materialize(home: Path, provider: str) -> None:
    result = dg.materialize(
        build_saved_search_assets(SEARCH), partition_key=dg.MultiPartitionKey({"date": DAY, "provider": provider}),
        resources={"scholar_api": scholar_api_from_env(), "warehouse": warehouse_from_env()},
    )
    assert result.success


def run() -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp, ProviderSimulator(corpus=Corpus(seed=11, min_per_day=400, max_per_day=400),
                                                                 rate_limits={"openalex": 1000, "crossref": 1000}) as sim:
        environ = {**sim.environ(), "SCHOLAR_PIPELINE_HOME": tmp, "SCHOLAR_PIPELINE_OPENALEX_RATE_LIMIT": "500",
                   "SCHOLAR_PIPELINE_CROSSREF_RATE_LIMIT": "500", "SCHOLAR_PIPELINE_OPENALEX_PAGE_SIZE": "50",
                   "SCHOLAR_PIPELINE_CROSSREF_PAGE_SIZE": "50"}
        with mock.patch.dict(os.environ, environ):
            for provider in SEARCH.providers:
                timings = []
                for _ in ("cold", "warm"):
                    before = len(sim.requests_for(provider))
                    started = time.perf_counter()
                    _materialize(Path(tmp), provider)
                    timings.append((time.perf_counter() - started, len(sim.requests_for(provider)) - before))
                (cold_s, cold_requests), (warm_s, warm_requests) = timings
                rows.append({"provider": provider, "cold_requests": cold_requests, "cold_s": round(cold_s, 2),
                             "warm_requests": warm_requests, "warm_s": round(warm_s, 2)})
    return rows
