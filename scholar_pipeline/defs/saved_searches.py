"""One asset group per saved search in queries.yaml: `<name>/raw` -> `<name>/works`, and a daily schedule."""

import datetime as dt
import warnings

import dagster as dg
import pyarrow.compute as pc
from dagster_duckdb import DuckDBResource

from scholar_pipeline.defs.partitions import date_provider_partitions
from scholar_pipeline.defs.resources import ScholarApiResource
from scholar_pipeline.fetch import fetch_partition
from scholar_pipeline.landing import Manifest
from scholar_pipeline.metadata import raw_metadata, works_metadata
from scholar_pipeline.providers import PROVIDERS
from scholar_pipeline.queries import SavedSearch, load_saved_searches
from scholar_pipeline.schema import SCHEMA_VERSION
from scholar_pipeline.settings import queries_file
from scholar_pipeline.warehouse import ProvenanceRow, replace_partition, writer_lock
from scholar_pipeline.works import PartitionRows, partition_rows

# backfill_policy is still marked beta in Dagster 1.13; the warning would fill every CLI run's output.
warnings.filterwarnings("ignore", message=".*backfill_policy.*", category=dg.BetaWarning)

RAW_CODE_VERSION = "raw-v1"
WORKS_CODE_VERSION = f"works-v1+{SCHEMA_VERSION}"
NO_RECORDS_LOST = "no_records_lost"
DATES_IN_WINDOW = "publication_dates_in_window"
MATCHES_PROVIDER_TOTAL = "matches_provider_total"


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
        with scholar_api.client(provider, log=context.log) as client:
            fetched = fetch_partition(
                client, provider, settings, scholar_api.landing, query=search.name, text=search.text, day=day,
                mailto=scholar_api.mailto, log=context.log,
            )
        manifest, path = scholar_api.landing.write_manifest(
            query=search.name, query_text=search.text, provider=provider_name, day=day, pages=fetched.pages,
            total_reported=fetched.total_reported, code_version=RAW_CODE_VERSION,
        )
        context.log.info(f"{provider_name} / {search.name} / {day}: {manifest.records} records in {len(manifest.pages)} pages landed")
        return dg.MaterializeResult(metadata=raw_metadata(manifest, path), data_version=dg.DataVersion(manifest.input_hash))

    @dg.asset(
        key=works_key,
        deps=[raw_key],
        group_name=search.name,
        partitions_def=partitions,
        backfill_policy=one_partition_per_run,
        code_version=WORKS_CODE_VERSION,
        pool="duckdb_writer",
        kinds={"duckdb"},
        check_specs=[
            dg.AssetCheckSpec(NO_RECORDS_LOST, asset=works_key, description="Every fetched record is landed or counted as a duplicate."),
            dg.AssetCheckSpec(DATES_IN_WINDOW, asset=works_key, description="Records whose publication date falls outside the partition's day (reported, never dropped)."),
            dg.AssetCheckSpec(MATCHES_PROVIDER_TOTAL, asset=works_key, description="Records fetched equal the total the provider reported for the query and day."),
        ],
        description=f"Normalized works for “{search.text}”: rows of DuckDB table `works`, replaced per partition in one transaction.",
    )
    def works(context: dg.AssetExecutionContext, scholar_api: ScholarApiResource, duckdb: DuckDBResource) -> dg.MaterializeResult:
        provider_name, day = _partition(context)
        manifest, manifest_path = scholar_api.landing.latest_manifest(search.name, provider_name, day)
        rows = partition_rows(scholar_api.landing, manifest)
        provenance = ProvenanceRow.of(manifest, manifest_path, rows, run_id=context.run.run_id, code_version=WORKS_CODE_VERSION)
        with writer_lock(scholar_api.home_path), duckdb.get_connection() as con:
            replace_partition(con, rows, provenance)
        context.log.info(f"{provider_name} / {search.name} / {day}: {rows.table.num_rows} rows in `works` ({rows.duplicates_dropped} duplicates dropped)")
        return dg.MaterializeResult(
            metadata=works_metadata(rows, manifest, manifest_path, code_version=WORKS_CODE_VERSION),
            check_results=[_no_records_lost(manifest.records, rows), _dates_in_window(rows.table, day), _matches_provider_total(manifest)],
        )

    return [raw, works]


def _no_records_lost(fetched: int, rows: PartitionRows) -> dg.AssetCheckResult:
    accounted = rows.table.num_rows + rows.duplicates_dropped
    return dg.AssetCheckResult(
        check_name=NO_RECORDS_LOST,
        passed=accounted == fetched == rows.records_parsed,
        metadata={"records_fetched": fetched, "records_parsed": rows.records_parsed, "rows_landed": rows.table.num_rows, "duplicates": rows.duplicates_dropped},
    )


def _matches_provider_total(manifest: Manifest) -> dg.AssetCheckResult:
    """A shortfall means paging stopped early; an excess that records were added while paging."""
    reported = manifest.total_reported
    return dg.AssetCheckResult(
        check_name=MATCHES_PROVIDER_TOTAL,
        passed=reported is None or reported == manifest.records,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"records_fetched": manifest.records, **({"total_reported": reported} if reported is not None else {})},
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
    """Yesterday's partition for every provider of the search, each morning (UTC)."""
    job = dg.define_asset_job(f"{search.name}_daily", selection=dg.AssetSelection.groups(search.name))
    return dg.build_schedule_from_partitioned_job(job, hour_of_day=4, minute_of_hour=0, name=f"{search.name}_daily_schedule")


SAVED_SEARCHES = load_saved_searches(queries_file())
saved_search_assets = [asset for search in SAVED_SEARCHES for asset in build_saved_search_assets(search)]
daily_schedules = [build_daily_schedule(search) for search in SAVED_SEARCHES]
