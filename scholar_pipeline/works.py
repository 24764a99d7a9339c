"""A partition's landed pages as `works` rows: normalized, deduplicated, hashed."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from scholar_pipeline.drift import Shape
from scholar_pipeline.landing import DamagedPage, LandingZone, Manifest
from scholar_pipeline.normalize import FieldProblem, RecordError, normalize_raw_records
from scholar_pipeline.providers import PROVIDERS
from scholar_pipeline.schema import SCHEMA_VERSION, WORKS_SCHEMA

# The version of what turns landed pages into rows (normalization, dedup): recorded in provenance, and a
# rebuild from the landing zone rewrites the partitions landed under another.
WORKS_CODE_VERSION = f"works-v2+{SCHEMA_VERSION}"


class PartitionRowsError(RuntimeError):
    """A landed page that cannot become rows; the message names the partition, the page and what to do."""


@dataclass(frozen=True)
class PartitionRows:
    table: pa.Table  # WORKS_SCHEMA
    records_parsed: int
    duplicates_dropped: int
    output_hash: str  # hash_of_records over the landed rows: same rows, same hash
    problems: tuple[FieldProblem, ...]  # values set to NULL or repaired, per record and field
    shape: Shape  # the fields of the raw records, for the schema drift check (drift.py)


def hash_of_records(record_hashes) -> str:
    """sha256 over the distinct record hashes, sorted: a function of what the records say, not of paging or order."""
    return hashlib.sha256("\n".join(sorted(set(record_hashes))).encode()).hexdigest()


def partition_rows(landing: LandingZone, manifest: Manifest) -> PartitionRows:
    """Normalize every record page of a fetch and add the run columns; describe the fields of its raw records."""
    day = dt.date.fromisoformat(manifest.partition_date)
    where = f"{manifest.provider} / saved search {manifest.query!r} / {manifest.partition_date}"
    provider = PROVIDERS[manifest.provider]
    tables, problems, shape = [], [], Shape()
    for page in manifest.pages:
        if not page.holds_records:
            continue
        try:
            raw_records = provider.raw_records(landing.read_page(page.sha256))
            normalized = normalize_raw_records(manifest.provider, raw_records)
        except (DamagedPage, FileNotFoundError) as error:
            raise PartitionRowsError(
                f"{where}: page {page.number}: {error}. Materialize {manifest.query}/raw for this partition again to "
                "fetch it anew (the landing zone heals damaged pages)."
            ) from None
        except RecordError as error:
            raise PartitionRowsError(f"{where}: page {page.number} ({page.url}): {error}") from None
        problems += normalized.problems
        shape.add(raw_records, provider.drift_opaque_fields)
        n = normalized.table.num_rows
        tables.append(
            normalized.table.append_column("query", pa.array([manifest.query] * n, pa.string()))
            .append_column("partition_date", pa.array([day] * n, pa.date32()))
            .append_column("raw_page_sha256", pa.array([page.sha256] * n, pa.string()))
            .append_column("retrieved_at", pa.array([dt.datetime.fromisoformat(page.fetched_at)] * n, pa.timestamp("us", tz="UTC")))
            .select(WORKS_SCHEMA.names)
        )
    table = pa.concat_tables(tables).cast(WORKS_SCHEMA) if tables else WORKS_SCHEMA.empty_table()
    unique = _first_of_each_record(table)
    ids = table.column("provider_id")
    return PartitionRows(
        table=unique,
        records_parsed=table.num_rows,
        # Counted from the ids, not from what the dedup kept, so that `no_records_lost` can catch a dedup that drops too much.
        duplicates_dropped=ids.length() - ids.null_count - pc.count_distinct(ids).as_py(),
        output_hash=hash_of_records(unique.column("record_hash").to_pylist()),
        problems=tuple(problems),
        shape=shape,
    )


def _first_of_each_record(table: pa.Table) -> pa.Table:
    """Keep the first row of each provider record: paging can repeat a record across pages."""
    seen: set[str] = set()
    keep = []
    for index, provider_id in enumerate(table.column("provider_id").to_pylist()):
        if provider_id is None or provider_id not in seen:
            keep.append(index)
            if provider_id is not None:
                seen.add(provider_id)
    return table if len(keep) == table.num_rows else table.take(keep)
