"""`landing_audit` on each `<name>/works`: is what landed still provable from the bytes it came from?

The same audit as `scholar-pipeline audit` (audit.py), scoped to what the check runs for:
in a partition's run, that partition (its pages, manifests and rows, re-hashed right after
the write); executed alone from the UI ("Execute check") or a job, every partition of the
saved search. Dagster keeps one result per check, not per partition, so the metadata says
what was audited.
"""

import datetime as dt
from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource

from scholar_pipeline.audit import AuditScope, Finding, audit
from scholar_pipeline.defs.resources import ScholarApiResource
from scholar_pipeline.defs.saved_searches import SAVED_SEARCHES
from scholar_pipeline.queries import SavedSearch

LANDING_AUDIT = "landing_audit"
_SHOWN_FINDINGS = 20


def build_landing_audit(search: SavedSearch) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=dg.AssetKey([search.name, "works"]),
        name=LANDING_AUDIT,
        description="Every landed page still hashes to its name, every manifest to its input hash, and every partition's "
                    "rows to the output hash its provenance recorded (in a partition's run: that partition; alone: all).",
    )
    def landing_audit(context: dg.AssetCheckExecutionContext, scholar_api: ScholarApiResource,
                      duckdb: DuckDBResource) -> dg.AssetCheckResult:
        scope = _scope(context.op_execution_context, search.name)
        findings = audit(scholar_api.home_path, Path(duckdb.database), log=context.log.info, scope=scope)
        for finding in findings[:_SHOWN_FINDINGS]:
            context.log.warning(str(finding))
        return dg.AssetCheckResult(
            passed=not findings,
            metadata={"audited": str(scope), "findings": len(findings),
                      **({"first_findings": dg.MetadataValue.md(_findings_table(findings))} if findings else {})},
        )

    return landing_audit


def _scope(context: dg.OpExecutionContext, query: str) -> AuditScope:
    if not context.has_partition_key:
        return AuditScope(query=query)
    keys = context.partition_key.keys_by_dimension
    return AuditScope(query=query, provider=keys["provider"], day=dt.date.fromisoformat(keys["date"]))


def _findings_table(findings: list[Finding]) -> str:
    rows = [f"| {f.what} | `{f.where}` | {f.detail.replace('|', '/')} |" for f in findings[:_SHOWN_FINDINGS]]
    more = [f"\n{len(findings) - _SHOWN_FINDINGS} more: run `scholar-pipeline audit` for all"] if len(findings) > _SHOWN_FINDINGS else []
    return "\n".join(["| finding | where | detail |", "|---|---|---|", *rows, *more])


landing_audits = [build_landing_audit(search) for search in SAVED_SEARCHES]
