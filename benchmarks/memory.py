"""Figure 7: peak memory (RSS) while fetching and landing one partition of 10k, 30k and 100k records (target < 500 MB,
flat in page count).

Each size runs in a fresh process (its peak is its own): the pipeline's fetch of one
OpenAlex day from the simulator in pages of 100, then `staged_rows` (pages normalized one by
one into a staging Parquet file) and the DuckDB swap from that file through the pipeline's
`write_connection`, as the two assets do.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import tempfile
import time
from pathlib import Path
from unittest import mock

from scholar_pipeline.defs.resources import ScholarApiResource
from scholar_pipeline.fetch import fetch_partition
from scholar_pipeline.providers import PROVIDERS
from scholar_pipeline.simulator import Corpus, ProviderSimulator
from scholar_pipeline.warehouse import ProvenanceRow, replace_partition
from scholar_pipeline.warehouse_backends import DuckDBFile
from scholar_pipeline.works import staged_rows

SIZES = (10_000, 30_000, 100_000)
DAY = dt.date(2024, 3, 1)
TEXT = "evaluation"


def _fetch_and_land(home: str, base_url: str) -> dict:
    with mock.patch.dict(os.environ, {"SCHOLAR_PIPELINE_OPENALEX_BASE_URL": base_url, "SCHOLAR_PIPELINE_OPENALEX_RATE_LIMIT": "1000",
                                      "SCHOLAR_PIPELINE_OPENALEX_PAGE_SIZE": "100", "SCHOLAR_PIPELINE_OPENALEX_MAX_RECORDS": "1000000"}):
        api, provider = ScholarApiResource(home=home), PROVIDERS["openalex"]
        started = time.perf_counter()
        with api.client(provider) as client:
            fetched = fetch_partition(client, provider, api.settings_for(provider), api.landing, query="bench", text=TEXT, day=DAY,
                                      mailto=None, live=True)
        manifest, path = api.landing.write_manifest(query="bench", query_text=TEXT, provider="openalex", day=DAY, pages=fetched.pages,
                                                    total_reported=fetched.total_reported, content_hash=fetched.content_hash,
                                                    code_version="bench")
        fetched_s = time.perf_counter() - started
        with staged_rows(api.landing, manifest) as rows, DuckDBFile(Path(home) / "scholar.duckdb", Path(home)).write_connection() as con:
            landed = replace_partition(con, rows, ProvenanceRow.of(manifest, path, rows, run_id=None, raw_run_id=None, code_version="bench"))
    return {"records": landed, "pages": len(manifest.pages), "fetch_s": round(fetched_s, 1),
            "land_s": round(time.perf_counter() - started - fetched_s, 1),
            "peak_rss_mb": round(_peak_rss_kb() / 1024)}


def _peak_rss_kb() -> int:
    """This process's own peak RSS. Not `ru_maxrss`: Linux keeps it across fork and exec, so a child spawned by a
    process that had grown (the other figures of `make benchmark`) would report its parent's peak."""
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))


def run() -> list[dict]:
    rows = []
    context = multiprocessing.get_context("spawn")
    for size in SIZES:
        per_day = round(size / 0.6)  # about 60 % of a day's works match a search word (simulator/corpus.py)
        with tempfile.TemporaryDirectory() as home, ProviderSimulator(corpus=Corpus(seed=3, min_per_day=per_day, max_per_day=per_day),
                                                                      rate_limits={"openalex": 1000}) as sim:
            with context.Pool(1) as pool:
                rows.append(pool.apply(_fetch_and_land, (home, sim.base_url("openalex"))))
    return rows
