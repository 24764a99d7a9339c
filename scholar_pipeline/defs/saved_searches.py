"""One asset group per saved search in queries.yaml: `<name>/raw` -> `<name>/works`, and a daily schedule.

Both assets are one step (`partition_runs.py`): a run of many partitions fetches, lands
and checks each partition on its own, so a backfill of a year is a run per provider, not
one per partition, and a partition's failure costs only that partition.
"""

import datetime as dt
import warnings

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from scholar_pipeline.defs.partition_runs import FETCH_LIVE, FETCH_TAG, RAW_CODE_VERSION, SavedSearchRun
from scholar_pipeline.defs.partitions import date_provider_partitions
from scholar_pipeline.defs.resources import ScholarApiResource, WarehouseResource
from scholar_pipeline.defs.works_checks import check_specs
from scholar_pipeline.queries import SavedSearch, load_saved_searches
from scholar_pipeline.settings import monitor_days, queries_file
from scholar_pipeline.works import WORKS_CODE_VERSION

# backfill_policy and partitioned checks are still marked beta/preview in Dagster 1.13; the warnings would fill every
# CLI run's output.
warnings.filterwarnings("ignore", message=".*backfill_policy.*", category=dg.BetaWarning)
warnings.filterwarnings("ignore", message=".*partitions_def on an AssetCheckSpec.*", category=dg.PreviewWarning)
# Dagster 1.13 adds its own `dagster/partition/<dimension>` tags to every multi-partition run request, then warns
# that such keys are deprecated, on every schedule tick; nothing in this code can avoid it.
warnings.filterwarnings("ignore", message=r"Non-compliant tag keys like \['dagster/partition/", category=DeprecationWarning)


def build_saved_search_assets(search: SavedSearch) -> list[dg.AssetsDefinition]:
    partitions = date_provider_partitions(search)
    raw_key, works_key = dg.AssetKey([search.name, "raw"]), dg.AssetKey([search.name, "works"])

    @dg.multi_asset(
        name=f"{search.name}__fetch_and_land",
        specs=[
            dg.AssetSpec(
                raw_key, group_name=search.name, partitions_def=partitions, code_version=RAW_CODE_VERSION,
                kinds={"python", "json"}, skippable=True,
                metadata={"query_text": search.text, "providers": ", ".join(search.providers)},
                description=f"Every page the provider returns for “{search.text}”, one day at a time, stored byte-exact in "
                            "the landing zone.",
            ),
            dg.AssetSpec(
                works_key, deps=[raw_key], group_name=search.name, partitions_def=partitions,
                code_version=WORKS_CODE_VERSION, kinds={"duckdb"}, skippable=True,
                description=f"Normalized works for “{search.text}”: rows of DuckDB table `works`, replaced per partition "
                            "in one transaction.",
            ),
        ],
        check_specs=check_specs(works_key, partitions),
        can_subset=True,
        # One run per contiguous range: Dagster cuts a backfill along the dimension with fewer keys, so a year on seven
        # providers is seven runs (one a provider, in parallel as runs), and three days of seven providers three runs
        # (one a day, its providers in parallel as threads).
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def fetch_and_land(context: dg.AssetExecutionContext, scholar_api: ScholarApiResource, warehouse: WarehouseResource):
        """Each partition of the run: fetch every page, land the rows, evaluate the checks, record it."""
        yield from SavedSearchRun(context, search, scholar_api, warehouse).events()

    return [fetch_and_land]


def partition_range_tags(search: SavedSearch, first: dt.date, last: dt.date) -> dict[str, str]:
    """Run tags asking for days `first`..`last` of every provider of the search: one run, not one per partition."""
    start = dg.MultiPartitionKey({"date": first.isoformat(), "provider": search.providers[0]})
    end = dg.MultiPartitionKey({"date": last.isoformat(), "provider": search.providers[-1]})
    return {ASSET_PARTITION_RANGE_START_TAG: str(start), ASSET_PARTITION_RANGE_END_TAG: str(end)}


def daily_schedule_name(search: SavedSearch) -> str:
    return f"{search.name}_daily_schedule"


def build_daily_schedule(search: SavedSearch) -> dg.ScheduleDefinition:
    """Each morning (UTC), re-fetch a trailing window of publication dates for every provider of the search, in one run.

    Providers index most works days to months after their publication date, so fetching
    yesterday alone would miss them for good. Each tick asks again, live, for the last
    `SCHOLAR_PIPELINE_MONITOR_DAYS` days (default 30) of every provider, as one run of that
    range (providers in parallel); a partition whose records did not change keeps its data
    version, so nothing downstream turns stale.
    """
    job = dg.define_asset_job(f"{search.name}_daily", selection=dg.AssetSelection.groups(search.name))

    @dg.schedule(name=daily_schedule_name(search), job=job, cron_schedule="0 4 * * *", execution_timezone="UTC",
                 description=f"Re-fetch the last {monitor_days()} days of “{search.text}” for every provider, live, in one run.")
    def daily(context: dg.ScheduleEvaluationContext):
        today = (context.scheduled_execution_time or dt.datetime.now(dt.timezone.utc)).date()
        first, last = max(search.start_date, today - dt.timedelta(days=monitor_days())), today - dt.timedelta(days=1)
        if last < first:
            return dg.SkipReason(f"{search.name} starts on {search.start_date}: no whole day to fetch yet")
        return dg.RunRequest(run_key=f"{search.name}@{today}",
                             tags={FETCH_TAG: FETCH_LIVE, **partition_range_tags(search, first, last)})

    return daily


SAVED_SEARCHES = load_saved_searches(queries_file())
saved_search_assets = [asset for search in SAVED_SEARCHES for asset in build_saved_search_assets(search)]
daily_schedules = [build_daily_schedule(search) for search in SAVED_SEARCHES]
