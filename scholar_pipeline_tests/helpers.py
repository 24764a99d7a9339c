"""Helpers shared by the pipeline tests."""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import os
import sqlite3
from pathlib import Path

import dagster as dg
import duckdb
import hishel

from scholar_pipeline.defs.resources import scholar_api_from_env, warehouse_from_env
from scholar_pipeline.defs.saved_searches import build_saved_search_assets, partition_range_tags
from scholar_pipeline.fetch import chain_cache_key
from scholar_pipeline.landing import LandingZone, Manifest
from scholar_pipeline.queries import SavedSearch

SEARCH = SavedSearch(name="sim_search", text="large language model evaluation", providers=["openalex", "crossref"], start_date=dt.date(2024, 1, 1))


def home() -> Path:
    return Path(os.environ["SCHOLAR_PIPELINE_HOME"])


def materialize(day: str, provider: str, search: SavedSearch = SEARCH, instance=None, raise_on_error: bool = True,
                tags: dict[str, str] | None = None, selection=None, partition_as_tag: bool = False):
    """Run `<search>/raw` and `<search>/works` (or `selection`) for one partition, in process, with the resources the
    code location builds. `partition_as_tag` names the partition in a run tag, as the UI does for checks run alone
    (Dagster 1.13 refuses a partition key for a selection of checks only)."""
    key = dg.MultiPartitionKey({"date": day, "provider": provider})
    return dg.materialize(
        build_saved_search_assets(search),
        selection=selection,
        partition_key=None if partition_as_tag else key,
        tags={**(tags or {}), **({"dagster/partition": str(key)} if partition_as_tag else {})},
        resources={"scholar_api": scholar_api_from_env(), "warehouse": warehouse_from_env()},
        instance=instance,
        raise_on_error=raise_on_error,
    )


def materialize_range(first_day: str, last_day: str, search: SavedSearch = SEARCH, instance=None, raise_on_error: bool = True,
                      selection=None, tags: dict[str, str] | None = None):
    """Run days `first_day`..`last_day` of every provider of `search` as one run, as a backfill or the daily schedule
    does (the partition range in the run's tags, with any `tags` given)."""
    tags = {**partition_range_tags(search, dt.date.fromisoformat(first_day), dt.date.fromisoformat(last_day)), **(tags or {})}
    return dg.materialize(
        build_saved_search_assets(search), selection=selection, tags=tags, instance=instance, raise_on_error=raise_on_error,
        resources={"scholar_api": scholar_api_from_env(), "warehouse": warehouse_from_env()},
    )


def materialization(result, search_name: str, asset: str) -> dg.AssetMaterialization:
    """The (first) materialization of `<search_name>/<asset>` a run recorded."""
    key = dg.AssetKey([search_name, asset])
    return next(m for m in (e.materialization for e in result.get_asset_materialization_events()) if m.asset_key == key)


def recorded_manifest(result) -> Manifest:
    """The manifest that a run's `<search>/raw` materialization recorded."""
    event = materialization(result, SEARCH.name, "raw")
    return LandingZone(home() / "landing").read_manifest(Path(event.metadata["manifest"].value))


def evict_cached_page(manifest: Manifest, number: int) -> None:
    """Drop one page of a fetched chain from the HTTP cache, as an expired entry would be."""
    storage = hishel.SqliteStorage(database_path=str(home() / "cache" / "http" / "responses.sqlite"))
    key = chain_cache_key(manifest.pages[0].url, number, manifest.pages[number - 2].sha256 if number > 1 else "")
    entries = storage.get_entries(key)
    assert entries, f"page {number} was not in the cache"
    for entry in entries:
        storage.remove_entry(entry.id)
    storage.close()


def step_failure(result) -> str:
    """The error a failed in-process run reports for its first failed step."""
    return result.get_step_failure_events()[0].event_specific_data.error.to_string()


def query_db(sql: str, params=None) -> list[tuple]:
    with duckdb.connect(str(home() / "scholar.duckdb"), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def nothing_landed() -> bool:
    """No row in `works` or `provenance` (a failed fetch still records what it spent in `provider_usage`)."""
    if not (home() / "scholar.duckdb").exists():
        return True
    return query_db("SELECT (SELECT count(*) FROM works) + (SELECT count(*) FROM provenance)")[0][0] == 0


def max_in_any_window(times: list[float], seconds: float = 1.0) -> int:
    """The most events that fall in any window of `seconds` starting at an event."""
    times = sorted(times)
    return max(sum(1 for t in times[i:] if t - start < seconds) for i, start in enumerate(times))


def files_containing(root: Path, needle: bytes) -> list[Path]:
    """Files under `root` whose content holds `needle`, read as stored data, not as raw bytes: gzip
    decompressed, SQLite and DuckDB databases row by row (DuckDB compresses strings, SQLite splits long
    ones across pages), so that a secret cannot hide from the scan behind an encoding."""
    return [p for p in Path(root).rglob("*") if p.is_file() and needle in _stored_content(p)]


def _stored_content(path: Path) -> bytes:
    data = path.read_bytes()
    if data.startswith(b"\x1f\x8b"):
        return gzip.decompress(data)
    if data.startswith(b"SQLite format 3\x00"):
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as con:
            return data + "\n".join(con.iterdump()).encode(errors="surrogateescape")
    if path.suffix == ".duckdb":
        with duckdb.connect(str(path), read_only=True) as con:
            tables = con.execute("SELECT table_schema, table_name FROM information_schema.tables").fetchall()
            return data + b"\n".join(str(con.execute(f'SELECT * FROM "{schema}"."{table}"').fetchall()).encode()
                                     for schema, table in tables)
    return data
