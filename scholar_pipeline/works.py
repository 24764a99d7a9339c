"""A partition's landed pages as `works` rows: normalized, deduplicated, hashed, staged on disk page by page.

Why staged: normalizing all of a partition's pages into one table before landing it took
a 100k-record partition to 850 MB at the peak (the pages' tables, their concatenation, and
DuckDB inserting it from Arrow), growing with every page. So pages are normalized one
at a time and their rows appended to a Parquet file beside the landing zone, a duplicate of
an earlier page's record left out as the page is read (the provider ids seen so far are a
set). What stays in memory is the partition's summary: its counts, the record hashes its
output hash is made of, the values that had to be repaired, the shape of its raw records,
its dates against the day, and its first rows for the preview. DuckDB then reads the file
into `works` a row group at a time (`warehouse.replace_partition`; what it holds is the
rows it has not committed yet: 85 MB for 100k), so the machine-wide writer lock is held
for the swap alone, not while pages are normalized. Pages are written in row groups of
about `ROW_GROUP_ROWS` rows, not one per page: DuckDB inserts a Parquet file a row group
per batch, and a thousand 100-row batches took it four times longer and 400 MB more than
ten 10k-row ones.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from scholar_pipeline.drift import Shape
from scholar_pipeline.landing import DamagedPage, LandingZone, Manifest, PageEntry
from scholar_pipeline.normalize import FieldProblem, RecordError, normalize_raw_records
from scholar_pipeline.providers import PROVIDERS
from scholar_pipeline.schema import SCHEMA_VERSION, WORKS_SCHEMA

# The version of what turns landed pages into rows (normalization, dedup): recorded in provenance, and a
# rebuild from the landing zone rewrites the partitions landed under another.
WORKS_CODE_VERSION = f"works-v5+{SCHEMA_VERSION}"  # v4: licences of the work alone, venues that are names, bare &, formulas once; v5: no empty Crossref author
ROW_GROUP_ROWS = 10_000  # rows of consecutive pages gathered into one row group of the staging file
PREVIEW_ROWS = 5
PREVIEW_COLUMNS = ["title", "doi", "publication_date", "venue"]


class PartitionRowsError(RuntimeError):
    """A landed page that cannot become rows; the message names the partition, the page and what to do."""


@dataclass(frozen=True)
class PartitionRows:
    """A fetch's rows, staged in a Parquet file of WORKS_SCHEMA (in page order, each provider record once), and what
    provenance, the checks and the metadata need to know of them."""

    path: Path  # the staging file; gone once the `staged_rows` block ends
    row_count: int  # rows in the file: what lands in `works`
    records_parsed: int
    duplicates_dropped: int
    output_hash: str  # hash_of_records over the landed rows: same rows, same hash
    problems: tuple[FieldProblem, ...]  # values set to NULL or repaired, per record and field
    shape: Shape  # the fields of the raw records, for the schema drift check (drift.py)
    dated_outside_window: int  # rows with a publication date whose period does not hold the partition's day
    undated: int  # rows without a publication date
    preview: pa.Table  # the first PREVIEW_ROWS rows, PREVIEW_COLUMNS only


def hash_of_records(record_hashes) -> str:
    """sha256 over the distinct record hashes, sorted: a function of what the records say, not of paging or order."""
    return hashlib.sha256("\n".join(sorted(set(record_hashes))).encode()).hexdigest()


@contextmanager
def staged_rows(landing: LandingZone, manifest: Manifest, staging_dir: Path | None = None) -> Iterator[PartitionRows]:
    """Normalize every record page of a fetch into a staging file, add the run columns, describe the fields of its raw
    records; the file is deleted when the block ends, however it ends.

    The file lives under `staging_dir` (default `<home>/staging`, beside the landing zone), under a name of its own,
    so that two runs landing the same partition never share one."""
    staging = Path(staging_dir) if staging_dir is not None else landing.root.parent / "staging"
    staging.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(
        dir=staging, prefix=f"{manifest.query}.{manifest.provider}.{manifest.partition_date}.", suffix=".parquet")
    os.close(handle)
    path = Path(name)
    try:
        yield _stage(landing, manifest, path)
    finally:
        path.unlink(missing_ok=True)


def _stage(landing: LandingZone, manifest: Manifest, path: Path) -> PartitionRows:
    day = dt.date.fromisoformat(manifest.partition_date)
    provider = PROVIDERS[manifest.provider]
    seen_ids: set[str] = set()
    record_hashes: set[str] = set()
    problems: list[FieldProblem] = []
    shape = Shape()
    preview: list[pa.Table] = []
    parsed = ids_parsed = rows = dated_outside = undated = 0
    with _RowGroups(path) as staging:
        for page in manifest.pages:
            if not page.holds_records:
                continue
            raw_records, normalized = _read(landing, manifest, page, provider)
            problems += normalized.problems
            shape.add(raw_records, provider.drift_opaque_fields)
            table = _with_run_columns(normalized.table, manifest.query, day, page)
            ids = table.column("provider_id")
            parsed += table.num_rows
            ids_parsed += len(ids) - ids.null_count
            keep = _first_of_each_record(ids.to_pylist(), seen_ids)
            if len(keep) != table.num_rows:
                table = table.take(pa.array(keep, pa.int64()))
            record_hashes.update(table.column("record_hash").to_pylist())
            outside, missing = dates_outside_window(table, day)
            dated_outside, undated = dated_outside + outside, undated + missing
            if rows < PREVIEW_ROWS and table.num_rows:  # a copy (`take`): a slice would keep the page's buffers
                first = pa.array(range(min(PREVIEW_ROWS - rows, table.num_rows)), pa.int64())
                preview.append(table.select(PREVIEW_COLUMNS).take(first))
            rows += table.num_rows
            staging.append(table)
    return PartitionRows(
        path=path,
        row_count=rows,
        records_parsed=parsed,
        # Counted from the ids, not from what the dedup kept, so that `no_records_lost` can catch a dedup that drops too much.
        duplicates_dropped=ids_parsed - len(seen_ids),
        output_hash=hash_of_records(record_hashes),
        problems=tuple(problems),
        shape=shape,
        dated_outside_window=dated_outside,
        undated=undated,
        preview=pa.concat_tables(preview) if preview else WORKS_SCHEMA.empty_table().select(PREVIEW_COLUMNS),
    )


class _RowGroups:
    """A Parquet file written a row group of about ROW_GROUP_ROWS rows at a time, from the pages' tables in order."""

    def __init__(self, path: Path):
        self.writer = pq.ParquetWriter(path, WORKS_SCHEMA)
        self.pending: list[pa.Table] = []
        self.pending_rows = 0

    def append(self, table: pa.Table) -> None:
        if table.num_rows:
            self.pending.append(table)
            self.pending_rows += table.num_rows
        if self.pending_rows >= ROW_GROUP_ROWS:
            self._write()

    def _write(self) -> None:
        if self.pending:
            self.writer.write_table(pa.concat_tables(self.pending), row_group_size=self.pending_rows)
        self.pending, self.pending_rows = [], 0

    def __enter__(self) -> _RowGroups:
        return self

    def __exit__(self, error_type, *_) -> None:
        if error_type is None:
            self._write()
        self.pending = []
        self.writer.close()
        # Arrow's allocator keeps what the row groups took (about 30 MB): give it back before DuckDB inserts the file.
        pa.default_memory_pool().release_unused()


def _read(landing: LandingZone, manifest: Manifest, page: PageEntry, provider):
    """A landed page's raw records and their rows."""
    where = f"{manifest.provider} / saved search {manifest.query!r} / {manifest.partition_date}"
    try:
        raw_records = provider.raw_records(landing.read_page(page.sha256))
        return raw_records, normalize_raw_records(manifest.provider, raw_records)
    except (DamagedPage, FileNotFoundError) as error:
        raise PartitionRowsError(
            f"{where}: page {page.number}: {error}. Materialize {manifest.query}/raw for this partition again to "
            "fetch it anew (the landing zone heals damaged pages)."
        ) from None
    except RecordError as error:
        raise PartitionRowsError(f"{where}: page {page.number} ({page.url}): {error}") from None


def _with_run_columns(table: pa.Table, query: str, day: dt.date, page: PageEntry) -> pa.Table:
    n = table.num_rows
    return (
        table.append_column("query", pa.array([query] * n, pa.string()))
        .append_column("partition_date", pa.array([day] * n, pa.date32()))
        .append_column("raw_page_sha256", pa.array([page.sha256] * n, pa.string()))
        .append_column("retrieved_at", pa.array([dt.datetime.fromisoformat(page.fetched_at)] * n, pa.timestamp("us", tz="UTC")))
        .select(WORKS_SCHEMA.names)
        .cast(WORKS_SCHEMA)
    )


def _first_of_each_record(ids: list[str | None], seen: set[str]) -> list[int]:
    """The rows of a page to keep: the first of each provider record, which paging can repeat within a page and across
    pages (`seen` holds the ids of the pages before, and gains this page's). A row without an id is kept."""
    keep = []
    for index, provider_id in enumerate(ids):
        if provider_id is None:
            keep.append(index)
        elif provider_id not in seen:
            keep.append(index)
            seen.add(provider_id)
    return keep


def dates_outside_window(table: pa.Table, day: dt.date) -> tuple[int, int]:
    """Rows whose publication date is outside the partition's day, and rows without one. A partial date (year or month)
    is in the window when its period contains the day."""
    dates, precision = table.column("publication_date"), table.column("publication_date_precision")
    same_day = pc.equal(dates, day)
    same_month = pc.and_(pc.equal(precision, "month"), pc.equal(dates, day.replace(day=1)))
    same_year = pc.and_(pc.equal(precision, "year"), pc.equal(dates, day.replace(month=1, day=1)))
    inside = pc.or_kleene(pc.or_kleene(same_day, same_month), same_year)
    outside = int(pc.sum(pc.invert(pc.fill_null(inside, False))).as_py() or 0)
    undated = int(dates.null_count)
    return outside - undated, undated
