"""The asset checks on each `<name>/works`, evaluated per partition right after the partition lands.

Each builder turns what landed (the manifest, the rows, the count in DuckDB, the audit's
findings) into one `dg.AssetCheckResult`; `partition_runs.py` records it for its partition.
"""

from __future__ import annotations

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import AssetCheckEvaluationTargetMaterializationData

from scholar_pipeline.audit import Finding
from scholar_pipeline.defs.works_table_checks import TABLE_CHECK_DESCRIPTIONS
from scholar_pipeline.drift import MISSING, NEW, RETYPED, baseline, compare
from scholar_pipeline.landing import Manifest
from scholar_pipeline.metadata import drift_table, markdown_cell, problems_table
from scholar_pipeline.works import PartitionRows

NO_RECORDS_LOST = "no_records_lost"
DATES_IN_WINDOW = "publication_dates_in_window"
MATCHES_PROVIDER_TOTAL = "matches_provider_total"
VALUES_WELL_TYPED = "values_well_typed"
SCHEMA_DRIFT = "schema_drift"
LANDING_AUDIT = "landing_audit"

CHECK_DESCRIPTIONS = {
    NO_RECORDS_LOST: "The partition's rows in DuckDB, counted after the commit, equal the records fetched less the duplicates.",
    DATES_IN_WINDOW: "Records whose publication date falls outside the partition's day (reported, never dropped).",
    MATCHES_PROVIDER_TOTAL: "Every page reported the same total, it equals the records fetched, and no record came twice "
                            "(which with offset paging hides a missing one).",
    VALUES_WELL_TYPED: "No value had to be set to NULL or repaired because the provider sent it with the wrong type.",
    SCHEMA_DRIFT: "The raw records hold no field that is new, missing or of another type against the provider's recorded "
                  "baseline (WARN; SCHOLAR_PIPELINE_DRIFT_SEVERITY=error makes it ERROR).",
    LANDING_AUDIT: "Every page of the partition still hashes to its name, its manifest to its input hash, and its rows to "
                   "the output hash its provenance recorded (executed alone: `scholar-pipeline audit` for one partition).",
}
ALL_CHECKS = {**CHECK_DESCRIPTIONS, **TABLE_CHECK_DESCRIPTIONS}  # every check of `<name>/works`
LANDING_CHECKS = [NO_RECORDS_LOST, DATES_IN_WINDOW, MATCHES_PROVIDER_TOTAL, VALUES_WELL_TYPED, SCHEMA_DRIFT]
SHOWN_FINDINGS = 20


def check_specs(works_key: dg.AssetKey, partitions: dg.PartitionsDefinition) -> list[dg.AssetCheckSpec]:
    """Partitioned checks: Dagster keeps a result per partition, so a run of many partitions records each one's."""
    return [dg.AssetCheckSpec(name, asset=works_key, description=description, partitions_def=partitions)
            for name, description in ALL_CHECKS.items()]


def landing_results(manifest: Manifest, rows: PartitionRows, rows_in_duckdb: int, provider: str,
                    drift_severity: dg.AssetCheckSeverity) -> list[dg.AssetCheckResult]:
    return [
        no_records_lost(manifest.records, rows, rows_in_duckdb), dates_in_window(rows),
        matches_provider_total(manifest, rows.duplicates_dropped), values_well_typed(rows),
        schema_drift(provider, rows, drift_severity),
    ]


def no_records_lost(fetched: int, rows: PartitionRows, rows_in_duckdb: int) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=NO_RECORDS_LOST,
        passed=rows.records_parsed == fetched and rows_in_duckdb == fetched - rows.duplicates_dropped,
        metadata={"records_fetched": fetched, "records_parsed": rows.records_parsed, "duplicates": rows.duplicates_dropped,
                  "rows_in_duckdb": rows_in_duckdb},
    )


def matches_provider_total(manifest: Manifest, repeated: int) -> dg.AssetCheckResult:
    """Totals that differ between pages mean the answer changed while paging (or pages of two answers were mixed);
    a shortfall against the total means paging stopped early, an excess that records were added while paging. A record
    that came twice (`repeated`) is a warning too: with offset paging, a record that moved back across a page boundary
    comes again and pushes another out of the answer, so the count matches while a record is missing. Fewer records
    than the provider's last word on its total is an error: records of the day are missing from `works`."""
    totals = sorted({p.total_reported for p in manifest.pages if p.total_reported is not None})
    if not totals and manifest.total_reported is not None:  # a manifest written before per-page totals
        totals = [manifest.total_reported]
    short = manifest.total_reported is not None and manifest.records < manifest.total_reported
    return dg.AssetCheckResult(
        check_name=MATCHES_PROVIDER_TOTAL,
        passed=len(totals) <= 1 and (not totals or totals[0] == manifest.records) and repeated == 0,
        severity=dg.AssetCheckSeverity.ERROR if short else dg.AssetCheckSeverity.WARN,
        metadata={"records_fetched": manifest.records, "totals_reported": totals, "records_repeated": repeated},
    )


def values_well_typed(rows: PartitionRows) -> dg.AssetCheckResult:
    problems = rows.problems
    return dg.AssetCheckResult(
        check_name=VALUES_WELL_TYPED,
        passed=not problems,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "values_repaired": len(problems),
            "records_affected": len({p.record_id for p in problems}),
            **({"first_problems": dg.MetadataValue.md(problems_table(problems))} if problems else {}),
        },
    )


def schema_drift(provider: str, rows: PartitionRows, severity: dg.AssetCheckSeverity) -> dg.AssetCheckResult:
    """The fields of the partition's raw records against the provider's baseline (drift.py): the rows are whole either
    way, so it warns unless the setting asks for more."""
    recorded = baseline(provider)
    drifts = compare(recorded, rows.shape)
    fields = {change: [d.path for d in drifts if d.change == change] for change in (NEW, MISSING, RETYPED)}
    return dg.AssetCheckResult(
        check_name=SCHEMA_DRIFT,
        passed=not drifts,
        severity=severity,
        metadata={
            "new_fields": len(fields[NEW]),
            "missing_fields": len(fields[MISSING]),
            "retyped_fields": len(fields[RETYPED]),
            "records_compared": rows.shape.records,
            "baseline_records": recorded.records,
            **({"first_drifts": dg.MetadataValue.md(drift_table(drifts)), "drifted_fields": dg.MetadataValue.json(fields)} if drifts else {}),
        },
    )


def dates_in_window(rows: PartitionRows) -> dg.AssetCheckResult:
    """A partial date (year or month) is in the window when its period contains the day (`works.dates_outside_window`)."""
    return dg.AssetCheckResult(
        check_name=DATES_IN_WINDOW,
        passed=rows.dated_outside_window == 0,  # undated records cannot be placed, so they are reported but do not fail it
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"outside_window": rows.dated_outside_window, "undated": rows.undated, "rows": rows.row_count},
    )


def landing_audit(findings: list[Finding], audited: str) -> dg.AssetCheckResult:
    """What `scholar-pipeline audit` finds for the partition: a page, manifest or row that no longer matches its hash."""
    return dg.AssetCheckResult(
        check_name=LANDING_AUDIT,
        passed=not findings,
        metadata={"audited": audited, "findings": len(findings),
                  **({"first_findings": dg.MetadataValue.md(_findings_table(findings))} if findings else {})},
    )


def _findings_table(findings: list[Finding]) -> str:
    rows = [f"| {f.what} | `{f.where}` | {markdown_cell(f.detail)} |" for f in findings[:SHOWN_FINDINGS]]
    more = [f"\n{len(findings) - SHOWN_FINDINGS} more: run `scholar-pipeline audit` for all"] if len(findings) > SHOWN_FINDINGS else []
    return "\n".join(["| finding | where | detail |", "|---|---|---|", *rows, *more])


def evaluation(result: dg.AssetCheckResult, works_key: dg.AssetKey, partition: str,
               target: dg.EventLogRecord | None) -> dg.AssetCheckEvaluation:
    """A check's result for one partition of a run of many, tied to the materialization it looked at."""
    return dg.AssetCheckEvaluation(
        asset_key=works_key, check_name=result.check_name, passed=result.passed, metadata=result.metadata,
        severity=result.severity, description=result.description, partition=partition,
        target_materialization_data=AssetCheckEvaluationTargetMaterializationData(
            storage_id=target.storage_id, run_id=target.run_id, timestamp=target.timestamp) if target else None,
    )
