"""DuckDB: the `works` table, the append-only `provenance` table, and the partition swap.

A DuckDB write connection locks the whole file against every other process, so writes
are serialized twice over: Dagster's `duckdb_writer` pool keeps writers apart in the UI
and the run queue, and a file lock here holds for any way a run is launched (CLI, tests,
an instance without pools), so concurrent runs queue instead of failing on the lock.
"""

from __future__ import annotations

import datetime as dt
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import duckdb
import filelock

from scholar_pipeline.landing import Manifest
from scholar_pipeline.schema import SCHEMA_VERSION, WORKS_SCHEMA
from scholar_pipeline.works import PartitionRows

PROVENANCE_DDL = """
CREATE TABLE IF NOT EXISTS provenance (
    query VARCHAR NOT NULL,
    provider VARCHAR NOT NULL,
    partition_date DATE NOT NULL,
    run_id VARCHAR,
    manifest_path VARCHAR NOT NULL,
    request_urls VARCHAR[],
    page_sha256 VARCHAR[],
    pages INTEGER,
    bytes BIGINT,
    cache_hits INTEGER,
    total_reported BIGINT,
    records_fetched BIGINT,
    rows_landed BIGINT,
    duplicates_dropped BIGINT,
    input_hash VARCHAR NOT NULL,
    output_hash VARCHAR NOT NULL,
    schema_version VARCHAR NOT NULL,
    code_version VARCHAR NOT NULL,
    retrieved_at TIMESTAMPTZ NOT NULL,
    landed_at TIMESTAMPTZ NOT NULL
)
"""


@dataclass(frozen=True)
class ProvenanceRow:
    query: str
    provider: str
    partition_date: dt.date
    run_id: str | None
    manifest_path: str
    request_urls: list[str]
    page_sha256: list[str]
    pages: int
    bytes: int
    cache_hits: int
    total_reported: int | None
    records_fetched: int
    rows_landed: int
    duplicates_dropped: int
    input_hash: str
    output_hash: str
    schema_version: str
    code_version: str
    retrieved_at: dt.datetime
    landed_at: dt.datetime

    @classmethod
    def of(cls, manifest: Manifest, manifest_path: Path, rows: PartitionRows, *, run_id: str | None, code_version: str) -> ProvenanceRow:
        """What one landing of a fetch produced, from what the manifest recorded of the fetch."""
        pages = manifest.pages
        return cls(
            query=manifest.query, provider=manifest.provider, partition_date=dt.date.fromisoformat(manifest.partition_date),
            run_id=run_id, manifest_path=str(manifest_path), request_urls=[p.url for p in pages],
            page_sha256=[p.sha256 for p in pages], pages=len(pages), bytes=sum(p.bytes for p in pages),
            cache_hits=sum(p.from_cache for p in pages), total_reported=manifest.total_reported,
            records_fetched=manifest.records, rows_landed=rows.table.num_rows, duplicates_dropped=rows.duplicates_dropped,
            input_hash=manifest.input_hash, output_hash=rows.output_hash, schema_version=SCHEMA_VERSION,
            code_version=code_version, retrieved_at=dt.datetime.fromisoformat(manifest.retrieved_at),
            landed_at=dt.datetime.now(dt.timezone.utc),
        )


@contextmanager
def writer_lock(home: Path, timeout_seconds: float = 1800) -> Iterator[None]:
    """Hold the machine-wide DuckDB writer lock (waits, never fails fast)."""
    path = home / "locks" / "duckdb_writer.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(str(path), timeout=timeout_seconds):
        yield


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    empty_works = WORKS_SCHEMA.empty_table()
    con.register("empty_works", empty_works)
    con.execute("CREATE TABLE IF NOT EXISTS works AS SELECT * FROM empty_works")
    con.unregister("empty_works")
    con.execute(PROVENANCE_DDL)


def replace_partition(con: duckdb.DuckDBPyConnection, rows: PartitionRows, provenance: ProvenanceRow) -> None:
    """Swap one (query, provider, date) slice of `works` and log it, in one transaction."""
    ensure_tables(con)
    columns = ", ".join(f'"{name}"' for name in WORKS_SCHEMA.names)
    record = asdict(provenance)
    con.register("incoming_works", rows.table)
    try:
        con.execute("BEGIN TRANSACTION")
        con.execute(
            "DELETE FROM works WHERE query = ? AND provider = ? AND partition_date = ?",
            [provenance.query, provenance.provider, provenance.partition_date],
        )
        con.execute(f"INSERT INTO works ({columns}) SELECT {columns} FROM incoming_works")
        con.execute(
            f"INSERT INTO provenance ({', '.join(record)}) VALUES ({', '.join('?' for _ in record)})", list(record.values())
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        con.unregister("incoming_works")
