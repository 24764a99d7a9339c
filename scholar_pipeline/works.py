"""A partition's landed pages as `works` rows: normalized, deduplicated, hashed."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

import pyarrow as pa

from scholar_pipeline.landing import LandingZone, Manifest
from scholar_pipeline.normalize import normalize_page
from scholar_pipeline.schema import WORKS_SCHEMA


@dataclass(frozen=True)
class PartitionRows:
    table: pa.Table  # WORKS_SCHEMA
    records_parsed: int
    duplicates_dropped: int
    output_hash: str  # sha256 over the sorted record hashes: same rows, same hash


def partition_rows(landing: LandingZone, manifest: Manifest) -> PartitionRows:
    """Normalize every record page of a fetch and add the run columns."""
    retrieved_at = dt.datetime.fromisoformat(manifest.retrieved_at)
    day = dt.date.fromisoformat(manifest.partition_date)
    tables = []
    for page in manifest.pages:
        if not page.holds_records:
            continue
        records = normalize_page(manifest.provider, landing.read_page(page.sha256))
        n = records.num_rows
        tables.append(
            records.append_column("query", pa.array([manifest.query] * n, pa.string()))
            .append_column("partition_date", pa.array([day] * n, pa.date32()))
            .append_column("raw_page_sha256", pa.array([page.sha256] * n, pa.string()))
            .append_column("retrieved_at", pa.array([retrieved_at] * n, pa.timestamp("us", tz="UTC")))
            .select(WORKS_SCHEMA.names)
        )
    table = pa.concat_tables(tables).cast(WORKS_SCHEMA) if tables else WORKS_SCHEMA.empty_table()
    unique = _first_of_each_record(table)
    hashes = sorted(unique.column("record_hash").to_pylist())
    return PartitionRows(
        table=unique,
        records_parsed=table.num_rows,
        duplicates_dropped=table.num_rows - unique.num_rows,
        output_hash=hashlib.sha256("\n".join(hashes).encode()).hexdigest(),
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
