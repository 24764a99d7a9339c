"""One asset group per saved search in queries.yaml: `<name>/raw` -> `<name>/works`, and a daily schedule."""

import datetime as dt
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pyarrow.compute as pc
from dagster_duckdb import DuckDBResource

from scholar_pipeline.defs.partitions import date_provider_partitions
from scholar_pipeline.defs.resources import ScholarApiResource
from scholar_pipeline.drift import MISSING, NEW, RETYPED, baseline, compare
from scholar_pipeline.fetch import fetch_partition
from scholar_pipeline.landing import Manifest
from scholar_pipeline.metadata import drift_table, problems_table, raw_metadata, works_metadata
from scholar_pipeline.providers import PROVIDERS
from scholar_pipeline.providers.base import MissingCredential
from scholar_pipeline.queries import SavedSearch, load_saved_searches
from scholar_pipeline.settings import drift_severity, monitor_days, queries_file
from scholar_pipeline.warehouse import ProvenanceRow, replace_partition, write_connection
from scholar_pipeline.works import WORKS_CODE_VERSION, PartitionRows, partition_rows

# backfill_policy is still marked beta in Dagster 1.13; the warning would fill every CLI run's output.
warnings.filterwarnings("ignore", message=".*backfill_policy.*", category=dg.BetaWarning)
# Dagster 1.13 adds its own `dagster/partition/<dimension>` tags to every multi-partition run request, then warns
# that such keys are deprecated, on every schedule tick; nothing in this code can avoid it.
warnings.filterwarnings("ignore", message=r"Non-compliant tag keys like \['dagster/partition/", category=DeprecationWarning)

RAW_CODE_VERSION = "raw-v2"
NO_RECORDS_LOST = "no_records_lost"
DATES_IN_WINDOW = "publication_dates_in_window"
MATCHES_PROVIDER_TOTAL = "matches_provider_total"
VALUES_WELL_TYPED = "values_well_typed"
SCHEMA_DRIFT = "schema_drift"
# Run tag that makes `<name>/raw` skip the HTTP cache: monitoring re-fetches must see today's answer.
FETCH_TAG, FETCH_LIVE = "scholar_pipeline/fetch", "live"


def _partition(context: dg.AssetExecutionContext) -> tuple[str, dt.date]:
    keys = context.partition_key.keys_by_dimension
    return keys["provider"], dt.date.fromisoformat(keys["date"])


def build_saved_search_assets(search: SavedSearch) -> list[dg.AssetsDefinition]:
    partitions = date_provider_partitions(search)
    raw_key, works_key = dg.AssetKey([search.name, "raw"]), dg.AssetKey([search.name, "works"])
    one_partition_per_run = dg.BackfillPolicy.multi_run(max_partitions_per_run=1)

    @dg.asset(
        key=raw_key,
        group_name=search.name,
        partitions_def=partitions,
        backfill_policy=one_partition_per_run,
        code_version=RAW_CODE_VERSION,
        kinds={"python", "json"},
        metadata={"query_text": search.text, "providers": ", ".join(search.providers)},
        description=f"Every page the provider returns for “{search.text}”, one day at a time, stored byte-exact in the landing zone.",
    )
    def raw(context: dg.AssetExecutionContext, scholar_api: ScholarApiResource) -> dg.MaterializeResult:
        provider_name, day = _partition(context)
        provider = PROVIDERS[provider_name]
        settings = scholar_api.settings_for(provider)
        where = f"{provider_name} / saved search {search.name!r} / {day}"
        with _configuration_failure(where), scholar_api.client(provider, log=context.log) as client:
            fetched = fetch_partition(
                client, provider, settings, scholar_api.landing, query=search.name, text=search.text, day=day,
                mailto=scholar_api.mailto, live=context.run.tags.get(FETCH_TAG) == FETCH_LIVE, log=context.log,
            )
        manifest, path = scholar_api.landing.write_manifest(
            query=search.name, query_text=search.text, provider=provider_name, day=day, pages=fetched.pages,
            total_reported=fetched.total_reported, content_hash=fetched.content_hash, code_version=RAW_CODE_VERSION,
        )
        context.log.info(f"{provider_name} / {search.name} / {day}: {manifest.records} records in {len(manifest.pages)} pages landed")
        # The data version is what the records say, not the bytes: providers send fields that change on every call.
        return dg.MaterializeResult(metadata=raw_metadata(manifest, path), data_version=dg.DataVersion(manifest.content_hash))

    @dg.asset(
        key=works_key,
        deps=[raw_key],
        group_name=search.name,
        partitions_def=partitions,
        backfill_policy=one_partition_per_run,
        code_version=WORKS_CODE_VERSION,
        kinds={"duckdb"},
        check_specs=[
            dg.AssetCheckSpec(NO_RECORDS_LOST, asset=works_key, description="The partition's rows in DuckDB, counted after the commit, equal the records fetched less the duplicates."),
            dg.AssetCheckSpec(DATES_IN_WINDOW, asset=works_key, description="Records whose publication date falls outside the partition's day (reported, never dropped)."),
            dg.AssetCheckSpec(MATCHES_PROVIDER_TOTAL, asset=works_key, description="Every page reported the same total, it equals the records fetched, and no record came twice (which with offset paging hides a missing one)."),
            dg.AssetCheckSpec(VALUES_WELL_TYPED, asset=works_key, description="No value had to be set to NULL or repaired because the provider sent it with the wrong type."),
            dg.AssetCheckSpec(SCHEMA_DRIFT, asset=works_key, description="The raw records hold no field that is new, missing or of another type against the provider's recorded baseline (WARN; SCHOLAR_PIPELINE_DRIFT_SEVERITY=error makes it ERROR)."),
        ],
        description=f"Normalized works for “{search.text}”: rows of DuckDB table `works`, replaced per partition in one transaction.",
    )
    def works(context: dg.AssetExecutionContext, scholar_api: ScholarApiResource, duckdb: DuckDBResource) -> dg.MaterializeResult:
        provider_name, day = _partition(context)
        drift_fails_as = dg.AssetCheckSeverity[drift_severity().upper()]  # a bad setting fails the step before DuckDB is touched
        raw_materialization = _recorded_raw_materialization(context, raw_key)
        manifest_path = Path(raw_materialization.asset_materialization.metadata["manifest"].value)
        manifest = scholar_api.landing.read_manifest(manifest_path)
        rows = partition_rows(scholar_api.landing, manifest)
        provenance = ProvenanceRow.of(manifest, manifest_path, rows, run_id=context.run.run_id,
                                      raw_run_id=raw_materialization.run_id, code_version=WORKS_CODE_VERSION)
        with write_connection(Path(duckdb.database), scholar_api.home_path, log=context.log) as con:
            rows_in_duckdb = replace_partition(con, rows, provenance)
        context.log.info(f"{provider_name} / {search.name} / {day}: {rows_in_duckdb} rows in `works` ({rows.duplicates_dropped} duplicates dropped)")
        return dg.MaterializeResult(
            metadata=works_metadata(rows, manifest, manifest_path, code_version=WORKS_CODE_VERSION),
            check_results=[
                _no_records_lost(manifest.records, rows, rows_in_duckdb), _dates_in_window(rows.table, day),
                _matches_provider_total(manifest, rows.duplicates_dropped), _values_well_typed(rows),
                _schema_drift(provider_name, rows, drift_fails_as),
            ],
        )

    return [raw, works]


@contextmanager
def _configuration_failure(where: str) -> Iterator[None]:
    """A missing API key as a Dagster Failure naming the partition, not retried: only the user can fix it."""
    try:
        yield
    except MissingCredential as error:
        raise dg.Failure(description=f"{where}: {error}", allow_retries=False) from None


def _recorded_raw_materialization(context: dg.AssetExecutionContext, raw_key: dg.AssetKey) -> dg.EventLogRecord:
    """The fetch this run made of the partition, else the newest one recorded: never just the newest file on disk."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=raw_key, asset_partitions=[context.partition_key]), limit=50
    ).records
    if not records:
        raise dg.Failure(f"{raw_key.to_user_string()} has no materialization for partition {context.partition_key}; "
                         "materialize it (or the whole group) for this partition first")
    return next((r for r in records if r.run_id == context.run.run_id), records[0])


def _no_records_lost(fetched: int, rows: PartitionRows, rows_in_duckdb: int) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=NO_RECORDS_LOST,
        passed=rows.records_parsed == fetched and rows_in_duckdb == fetched - rows.duplicates_dropped,
        metadata={"records_fetched": fetched, "records_parsed": rows.records_parsed, "duplicates": rows.duplicates_dropped,
                  "rows_in_duckdb": rows_in_duckdb},
    )


def _matches_provider_total(manifest: Manifest, repeated: int) -> dg.AssetCheckResult:
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


def _values_well_typed(rows: PartitionRows) -> dg.AssetCheckResult:
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


def _schema_drift(provider: str, rows: PartitionRows, severity: dg.AssetCheckSeverity) -> dg.AssetCheckResult:
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


def _dates_in_window(table, day: dt.date) -> dg.AssetCheckResult:
    """A partial date (year or month) is in the window when its period contains the day."""
    dates, precision = table.column("publication_date"), table.column("publication_date_precision")
    same_day = pc.equal(dates, day)
    same_month = pc.and_(pc.equal(precision, "month"), pc.equal(dates, day.replace(day=1)))
    same_year = pc.and_(pc.equal(precision, "year"), pc.equal(dates, day.replace(month=1, day=1)))
    inside = pc.or_kleene(pc.or_kleene(same_day, same_month), same_year)
    outside = int(pc.sum(pc.invert(pc.fill_null(inside, False))).as_py() or 0)
    undated = int(dates.null_count)
    return dg.AssetCheckResult(
        check_name=DATES_IN_WINDOW,
        passed=outside == undated,  # undated records cannot be placed, so they are reported but do not fail it
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"outside_window": outside - undated, "undated": undated, "rows": table.num_rows},
    )


def build_daily_schedule(search: SavedSearch) -> dg.ScheduleDefinition:
    """Each morning (UTC), re-fetch a trailing window of publication dates for every provider of the search.

    Providers index most works days to months after their publication date, so fetching
    yesterday alone would miss them for good. Each tick asks again, live, for the last
    `SCHOLAR_PIPELINE_MONITOR_DAYS` days (default 30); a partition whose records did not
    change keeps its data version, so nothing downstream turns stale.
    """
    job = dg.define_asset_job(f"{search.name}_daily", selection=dg.AssetSelection.groups(search.name))

    @dg.schedule(name=f"{search.name}_daily_schedule", job=job, cron_schedule="0 4 * * *", execution_timezone="UTC",
                 description=f"Re-fetch the last {monitor_days()} days of “{search.text}” for every provider, live.")
    def daily(context: dg.ScheduleEvaluationContext):
        today = (context.scheduled_execution_time or dt.datetime.now(dt.timezone.utc)).date()
        first = max(search.start_date, today - dt.timedelta(days=monitor_days()))
        for offset in range((today - first).days):
            day = (first + dt.timedelta(days=offset)).isoformat()
            for provider in search.providers:
                key = dg.MultiPartitionKey({"date": day, "provider": provider})
                yield dg.RunRequest(partition_key=key, run_key=f"{key}@{today}", tags={FETCH_TAG: FETCH_LIVE})

    return daily


SAVED_SEARCHES = load_saved_searches(queries_file())
saved_search_assets = [asset for search in SAVED_SEARCHES for asset in build_saved_search_assets(search)]
daily_schedules = [build_daily_schedule(search) for search in SAVED_SEARCHES]
