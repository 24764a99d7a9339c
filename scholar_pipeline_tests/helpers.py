"""Helpers shared by the pipeline tests."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource

from scholar_pipeline.defs.resources import scholar_api_from_env
from scholar_pipeline.defs.saved_searches import build_saved_search_assets
from scholar_pipeline.queries import SavedSearch

SEARCH = SavedSearch(name="sim_search", text="large language model evaluation", providers=["openalex", "crossref"], start_date=dt.date(2024, 1, 1))


def home() -> Path:
    return Path(os.environ["SCHOLAR_PIPELINE_HOME"])


def materialize(day: str, provider: str, search: SavedSearch = SEARCH, instance=None, raise_on_error: bool = True):
    """Run `<search>/raw` and `<search>/works` for one partition, in process, with the resources the code location builds."""
    return dg.materialize(
        build_saved_search_assets(search),
        partition_key=dg.MultiPartitionKey({"date": day, "provider": provider}),
        resources={"scholar_api": scholar_api_from_env(), "duckdb": DuckDBResource(database=str(home() / "scholar.duckdb"))},
        instance=instance,
        raise_on_error=raise_on_error,
    )


def query_db(sql: str, params=None) -> list[tuple]:
    with duckdb.connect(str(home() / "scholar.duckdb"), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def max_in_any_window(times: list[float], seconds: float = 1.0) -> int:
    """The most events that fall in any window of `seconds` starting at an event."""
    times = sorted(times)
    return max(sum(1 for t in times[i:] if t - start < seconds) for i, start in enumerate(times))


def files_containing(root: Path, needle: bytes) -> list[Path]:
    return [p for p in Path(root).rglob("*") if p.is_file() and needle in p.read_bytes()]
