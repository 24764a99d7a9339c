"""The warehouse's tables: `works`, the append-only `provenance` and `provider_usage`, and the partition swap.

They are the same on either backend (`warehouse_backends`): these functions take a DuckDB
connection on which the tables answer to their bare names.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TypeVar

import duckdb
import pyarrow as pa

from scholar_pipeline.client.usage import Usage
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
    content_hash VARCHAR,
    output_hash VARCHAR NOT NULL,
    schema_version VARCHAR NOT NULL,
    code_version VARCHAR NOT NULL,
    retrieved_at TIMESTAMPTZ NOT NULL,
    landed_at TIMESTAMPTZ NOT NULL,
    raw_run_id VARCHAR
)
"""
# What each fetch spent, landed or failed: `scholar-pipeline usage` reports it per provider and day.
USAGE_DDL = """
CREATE TABLE IF NOT EXISTS provider_usage (
    query VARCHAR NOT NULL,
    provider VARCHAR NOT NULL,
    partition_date DATE NOT NULL,
    run_id VARCHAR,
    outcome VARCHAR NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL,
    requests INTEGER NOT NULL,
    cache_hits INTEGER NOT NULL,
    retries INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    throttled INTEGER NOT NULL,
    cost_usd DOUBLE NOT NULL,
    quota_remaining BIGINT,
    quota_limit BIGINT,
    remaining_usd DOUBLE
)
"""
# Columns added after the first release; older files gain them on the next write.
PROVENANCE_ADDED_COLUMNS = {"content_hash": "VARCHAR", "raw_run_id": "VARCHAR"}


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
    content_hash: str
    output_hash: str
    schema_version: str
    code_version: str
    retrieved_at: dt.datetime
    landed_at: dt.datetime
    raw_run_id: str | None

    @classmethod
    def of(
        cls, manifest: Manifest, manifest_path: Path, rows: PartitionRows, *, run_id: str | None, raw_run_id: str | None,
        code_version: str,
    ) -> ProvenanceRow:
        """What one landing of a fetch produced, from what the manifest recorded of the fetch."""
        pages = manifest.pages
        return cls(
            query=manifest.query, provider=manifest.provider, partition_date=dt.date.fromisoformat(manifest.partition_date),
            run_id=run_id, manifest_path=str(manifest_path), request_urls=[p.url for p in pages],
            page_sha256=[p.sha256 for p in pages], pages=len(pages), bytes=sum(p.bytes for p in pages),
            cache_hits=sum(p.from_cache for p in pages), total_reported=manifest.total_reported,
            records_fetched=manifest.records, rows_landed=rows.row_count, duplicates_dropped=rows.duplicates_dropped,
            input_hash=manifest.input_hash, content_hash=manifest.content_hash, output_hash=rows.output_hash,
            schema_version=SCHEMA_VERSION, code_version=code_version,
            retrieved_at=dt.datetime.fromisoformat(manifest.retrieved_at), landed_at=dt.datetime.now(dt.timezone.utc),
            raw_run_id=raw_run_id,
        )


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    """The tables as this version writes them: a `works` table made by an older version gains the columns added since
    (`pmid`, `pmcid`, `arxiv_id` in works-v2), NULL until `scholar-pipeline rebuild` rewrites its partitions (their
    code version moved with SCHEMA_VERSION), so that an existing DuckDB file keeps working. Rows are inserted by
    column name, so the added columns coming last in such a table does not matter."""
    con.register("empty_works", WORKS_SCHEMA.empty_table())
    try:
        con.execute("CREATE TABLE IF NOT EXISTS works AS SELECT * FROM empty_works")
        present = {name for name, *_ in con.execute("DESCRIBE works").fetchall()}
        for name, sql_type, *_ in con.execute("DESCRIBE empty_works").fetchall():  # each Arrow type as DuckDB reads it
            if name not in present:
                con.execute(f'ALTER TABLE works ADD COLUMN IF NOT EXISTS "{name}" {sql_type}')
    finally:
        con.unregister("empty_works")
    con.execute(PROVENANCE_DDL)
    for column, sql_type in PROVENANCE_ADDED_COLUMNS.items():
        con.execute(f"ALTER TABLE provenance ADD COLUMN IF NOT EXISTS {column} {sql_type}")
    con.execute(USAGE_DDL)


def has_table(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    return con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]).fetchone()[0] > 0


@dataclass(frozen=True)
class UsageRow:
    """One fetch's spending, as `provider_usage` holds it."""

    query: str
    provider: str
    partition_date: dt.date
    run_id: str | None
    outcome: str  # "fetched" or "failed"
    usage: Usage
    recorded_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc))

    def values(self) -> dict:
        return {"query": self.query, "provider": self.provider, "partition_date": self.partition_date,
                "run_id": self.run_id, "outcome": self.outcome, "recorded_at": self.recorded_at, **self.usage.as_dict()}


def record_usage(con: duckdb.DuckDBPyConnection, rows: list[UsageRow]) -> None:
    """Append fetches' spending to `provider_usage`: one statement, so all of it or none (and one DuckLake snapshot)."""
    if not rows:
        return
    ensure_tables(con)
    con.register("usage_rows", pa.Table.from_pylist([row.values() for row in rows]))
    try:
        con.execute("INSERT INTO provider_usage BY NAME SELECT * FROM usage_rows")
    finally:
        con.unregister("usage_rows")


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """BEGIN ... COMMIT, or ROLLBACK on an exception, which is the one raised: a COMMIT that failed (a DuckLake
    conflict) has rolled back already, and DuckDB would answer the ROLLBACK with "no transaction is active"."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
        con.execute("COMMIT")
    except BaseException:
        with suppress(duckdb.Error):
            con.execute("ROLLBACK")
        raise


class _LandedMeanwhile(Exception):
    """The partition was landed again since the caller looked: its swap is rolled back."""


@contextmanager
def snapshot(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """Reads that must agree, from one snapshot: in DuckLake, landings commit between statements (a DuckDB file's
    reader holds the file, so none does). Nothing is written: it ends in a ROLLBACK."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    finally:
        with suppress(duckdb.Error):
            con.execute("ROLLBACK")


T = TypeVar("T")
ANY_LANDING = object()  # replace_partition's `only_if_last_landed_at` when any earlier landing may be replaced
CONFLICT_ATTEMPTS = 5  # DuckLake: another landing deleted from a file this one deletes from (the same partition)


def replace_partition(con: duckdb.DuckDBPyConnection, rows: PartitionRows, provenance: ProvenanceRow, *,
                      only_if_last_landed_at=ANY_LANDING, log=None) -> int | None:
    """Swap one (query, provider, date) slice of `works` for the staged rows and log it, in one transaction.

    DuckDB streams the staging file (`works.staged_rows`) into the table, so no table of the
    partition's rows is ever in Python's memory. Returns how many rows the slice holds at the
    commit, counted in the transaction, for checks that must look at what landed rather than at
    what was meant to. `only_if_last_landed_at` (a time, or None for never): the swap is made
    only if the partition's last landing is still that one, checked in the same transaction;
    None is returned when it is not. A DuckLake commit that conflicts with another landing
    of the same partition is tried again (`retry_conflicts`)."""
    ensure_tables(con)
    key = [provenance.query, provenance.provider, provenance.partition_date]

    def swap() -> int:
        with transaction(con):
            if only_if_last_landed_at is not ANY_LANDING:
                last = con.execute("SELECT max(landed_at) FROM provenance WHERE query = ? AND provider = ? "
                                   "AND partition_date = ?", key).fetchone()[0]
                if last != only_if_last_landed_at:
                    raise _LandedMeanwhile
            # Stamped in each try: the newest provenance row must be the landing whose rows `works` holds.
            return _swap(con, rows, replace(provenance, landed_at=dt.datetime.now(dt.timezone.utc)), key)

    try:
        return retry_conflicts(swap, " / ".join(map(str, key)), log=log)
    except _LandedMeanwhile:
        return None


def retry_conflicts(commit: Callable[[], T], what: str, *, log=None) -> T:
    """`commit()`, one transaction, run again when it meets another (a DuckLake commit touching the files another
    commit changed raises `duckdb.TransactionException`), up to CONFLICT_ATTEMPTS times with a growing random wait,
    saying so to `log`."""
    for attempt in range(1, CONFLICT_ATTEMPTS + 1):
        try:
            return commit()
        except duckdb.TransactionException as error:
            if attempt == CONFLICT_ATTEMPTS:
                raise
            wait = random.uniform(0.5, 1.0) * 2 ** (attempt - 1)
            if log is not None:
                log(f"{what}: the commit met another transaction ({error}); trying again in {wait:.1f} s "
                    f"({attempt} of {CONFLICT_ATTEMPTS})")
            time.sleep(wait)
    raise AssertionError("unreachable")


def _swap(con: duckdb.DuckDBPyConnection, rows: PartitionRows, provenance: ProvenanceRow, key: list) -> int:
    columns = ", ".join(f'"{name}"' for name in WORKS_SCHEMA.names)
    record = asdict(provenance)
    con.execute("DELETE FROM works WHERE query = ? AND provider = ? AND partition_date = ?", key)
    con.execute(f"INSERT INTO works ({columns}) SELECT {columns} FROM read_parquet(?)", [str(rows.path)])
    con.execute(f"INSERT INTO provenance ({', '.join(record)}) VALUES ({', '.join('?' for _ in record)})",
                list(record.values()))
    return con.execute("SELECT count(*) FROM works WHERE query = ? AND provider = ? AND partition_date = ?", key).fetchone()[0]


def latest_provenance(con: duckdb.DuckDBPyConnection, partition: tuple[str, str, dt.date] | None = None) -> dict[tuple[str, str, dt.date], dict]:
    """The provenance row of each partition's last landing (or of one), by (query, provider, partition date)."""
    where = "WHERE query = ? AND provider = ? AND partition_date = ?" if partition else ""
    cursor = con.execute(
        f"SELECT * FROM provenance {where} "
        "QUALIFY row_number() OVER (PARTITION BY query, provider, partition_date ORDER BY landed_at DESC) = 1",
        list(partition or ()),
    )
    names = [column[0] for column in cursor.description]
    rows = (dict(zip(names, row)) for row in cursor.fetchall())
    return {(row["query"], row["provider"], row["partition_date"]): row for row in rows}
