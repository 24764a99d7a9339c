"""What a person reads in the Dagster UI for each materialization."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import pyarrow as pa

from scholar_pipeline.client.usage import Usage
from scholar_pipeline.landing import Manifest
from scholar_pipeline.schema import SCHEMA_VERSION, WORKS_SCHEMA
from scholar_pipeline.works import PartitionRows

WORKS_COLUMN_SCHEMA = dg.TableSchema(columns=[dg.TableColumn(f.name, str(f.type)) for f in WORKS_SCHEMA])


def raw_metadata(manifest: Manifest, manifest_path: Path) -> dict:
    pages = manifest.pages
    return {
        "records": dg.MetadataValue.int(manifest.records),
        "total_reported_by_provider": dg.MetadataValue.int(manifest.total_reported) if manifest.total_reported is not None else dg.MetadataValue.null(),
        "pages": dg.MetadataValue.int(len(pages)),
        "bytes": dg.MetadataValue.int(sum(p.bytes for p in pages)),
        "cache_hits": dg.MetadataValue.int(sum(p.from_cache for p in pages)),
        "request_urls": dg.MetadataValue.json([p.url for p in pages]),
        "page_sha256": dg.MetadataValue.json([p.sha256 for p in pages]),
        "input_hash": dg.MetadataValue.text(manifest.input_hash),
        "content_hash": dg.MetadataValue.text(manifest.content_hash),
        "manifest": dg.MetadataValue.path(str(manifest_path)),
        "retrieved_at": dg.MetadataValue.timestamp(dt.datetime.fromisoformat(manifest.retrieved_at)),
        "code_version": dg.MetadataValue.text(manifest.code_version),
    }


def usage_metadata(usage: Usage | None) -> dict:
    """What the fetch spent at the provider (its cache hits are the manifest's `cache_hits`); the quota as the
    provider last reported it, where it does."""
    if usage is None:
        return {}
    figures = {"requests_sent": dg.MetadataValue.int(usage.requests), "retries": dg.MetadataValue.int(usage.retries),
               "request_errors": dg.MetadataValue.int(usage.errors), "throttled_429": dg.MetadataValue.int(usage.throttled)}
    if usage.cost_usd:
        figures["cost_usd"] = dg.MetadataValue.float(usage.cost_usd)
    for name in ("quota_remaining", "quota_limit"):
        if getattr(usage, name) is not None:
            figures[name] = dg.MetadataValue.int(getattr(usage, name))
    if usage.remaining_usd is not None:
        figures["remaining_usd"] = dg.MetadataValue.float(usage.remaining_usd)
    return figures


def works_metadata(rows: PartitionRows, manifest: Manifest, manifest_path: Path, *, code_version: str) -> dict:
    return {
        "dagster/row_count": dg.MetadataValue.int(rows.row_count),
        "dagster/table_name": dg.MetadataValue.text("works"),
        "dagster/column_schema": WORKS_COLUMN_SCHEMA,
        "records_fetched": dg.MetadataValue.int(manifest.records),
        "duplicates_dropped": dg.MetadataValue.int(rows.duplicates_dropped),
        "input_hash": dg.MetadataValue.text(manifest.input_hash),
        "output_hash": dg.MetadataValue.text(rows.output_hash),
        "schema_version": dg.MetadataValue.text(SCHEMA_VERSION),
        "code_version": dg.MetadataValue.text(code_version),
        "manifest": dg.MetadataValue.path(str(manifest_path)),
        "retrieved_at": dg.MetadataValue.timestamp(dt.datetime.fromisoformat(manifest.retrieved_at)),
        "preview": dg.MetadataValue.md(markdown_preview(rows.preview)),
    }


def markdown_preview(table: pa.Table, rows: int = 5) -> str:
    if table.num_rows == 0:
        return "_no records for this partition_"
    lines = ["| title | doi | published | venue |", "|---|---|---|---|"]
    for r in table.slice(0, rows).select(["title", "doi", "publication_date", "venue"]).to_pylist():
        cells = [(str(r[c]) if r[c] is not None else "") for c in ("title", "doi", "publication_date", "venue")]
        lines.append("| " + " | ".join(markdown_cell(c[:100]) for c in cells) + " |")
    return "\n".join(lines)


def problems_table(problems, rows: int = 20) -> str:
    """The first values a check reports, as a markdown table."""
    lines = ["| record | field | value | action |", "|---|---|---|---|"]
    lines += [f"| {markdown_cell(p.record_id)} | {markdown_cell(p.field)} | {markdown_cell(p.value)} | {p.action} |" for p in problems[:rows]]
    return "\n".join(lines)


def drift_table(drifts, rows: int = 20) -> str:
    """The first fields a schema drift check reports, as a markdown table."""
    lines = ["| field | change | baseline types | seen types | records |", "|---|---|---|---|---|"]
    lines += [f"| {markdown_cell(d.path)} | {d.change} | {', '.join(d.baseline_types)} | {', '.join(d.seen_types)} | {d.records} |"
              for d in drifts[:rows]]
    return "\n".join(lines)


def markdown_cell(text: str) -> str:
    """Text shown literally in a markdown table cell."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("`", "\\`").replace("\n", " ")
