"""Group `dataset`: what every saved search's `works` add up to (unique works, review counts, monitoring, exports).

The assets are not partitioned: each is a function of the whole of `works` (and of
`provenance`). They keep themselves fresh: `dataset_automation`, a sensor that runs by
default, requests an asset once a dependency was materialized since the asset last was
(or when it was never built). The asset then fingerprints what it reads (the last landing
of every partition: its output hash and counts; for the assets below `unique_works`, that
table's content too) and does nothing, recording no materialization, when the fingerprint
is the one its last materialization recorded: a partition landed again with the same
records rebuilds nothing, and nothing downstream is requested. Each asset's data version
is a hash of its content.

A partition that lands after the sensor asked for an asset is recorded after that request,
so the sensor asks again: no landing is missed, however the runs interleave (at worst a
run finds nothing to do).
"""

import datetime as dt
import hashlib
import json
from importlib.metadata import version as package_version

import dagster as dg
from dagster._core.definitions.run_request import InstigatorType
from dagster._core.scheduler.instigation import InstigatorStatus
import duckdb

from scholar_pipeline.dataset.exports import verify_exports, write_exports
from scholar_pipeline.dataset.monitoring import (
    chart_markdown, daily_new_works, freshness_metadata, late_partitions, summary_markdown,
)
from scholar_pipeline.dataset.review_counts import build_review_counts, review_counts_markdown
from scholar_pipeline.dataset.unique_works import RULES, SAME_RECORD, SINGLE, build_unique_works
from scholar_pipeline.defs.resources import ScholarApiResource, WarehouseResource
from scholar_pipeline.defs.saved_searches import SAVED_SEARCHES, daily_schedule_name
from scholar_pipeline.queries import SavedSearch
from scholar_pipeline.metadata import markdown_cell
from scholar_pipeline.schema import SCHEMA_VERSION, UNIQUE_WORKS_SCHEMA
from scholar_pipeline.search.embeddings import MODEL_ID, semantic_installed
from scholar_pipeline.search.index import build_search_index, index_path, read_documents
from scholar_pipeline.settings import dataset_automation_on
from scholar_pipeline.warehouse import ensure_tables, has_table

GROUP = "dataset"
UNIQUE_WORKS = dg.AssetKey([GROUP, "unique_works"])
REVIEW_COUNTS = dg.AssetKey([GROUP, "review_counts"])
MONITORING = dg.AssetKey([GROUP, "monitoring"])
EXPORTS = dg.AssetKey([GROUP, "exports"])
SEARCH_INDEX = dg.AssetKey([GROUP, "search_index"])
CHART_DAYS = 90  # the window the monitoring chart and its summary show
DATASET_CODE_VERSION = "dataset-v1"

# Like `eager()`, but not waiting for every dependency (a table of all days would never have them all), and with the
# one memory Dagster 1.13 keeps in order. A dependency's materialization and this asset's request both carry their
# time; an `or` or `and` of conditions drops it, and without it a tick that sees a landing and this asset's own run
# at once forgets the landing (`since_last_handled` would). So the trigger is a dependency newly updated, kept until the
# asset is requested after it; and what is missing is requested once: on the sensor's first tick (a deployment upgraded
# to this group) or when it goes missing.
CONTENT_CHANGED = (
    (dg.AutomationCondition.any_deps_match(dg.AutomationCondition.newly_updated())
     .since(dg.AutomationCondition.newly_requested())
     | ((dg.AutomationCondition.initial_evaluation() | dg.AutomationCondition.newly_missing())
        & dg.AutomationCondition.missing()))
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("a dependency was updated since the last request, or missing")
FRESHNESS_HOUR_UTC = 7  # yesterday_landed runs then, three hours after the daily schedules' 04:00 tick
FINGERPRINT = "input_fingerprint"


def table_version(con: duckdb.DuckDBPyConnection, table: str) -> dg.DataVersion:
    """sha256 over the table's rows, whatever their order: equal content, equal version."""
    digest = con.execute(
        f"SELECT sha256(coalesce(string_agg(h, '' ORDER BY h), '')) FROM (SELECT md5(CAST(t AS VARCHAR)) AS h FROM {table} t)"
    ).fetchone()[0]
    return dg.DataVersion(digest)


def landings_fingerprint(con: duckdb.DuckDBPyConnection) -> str:
    """sha256 over the last landing of every partition (its output hash and record counts): what `works` holds."""
    return con.execute(
        "SELECT sha256(coalesce(string_agg(concat_ws('|', query, provider, partition_date, output_hash, records_fetched, "
        "rows_landed), '\n' ORDER BY query, provider, partition_date), '')) FROM (SELECT * FROM provenance "
        "QUALIFY row_number() OVER (PARTITION BY query, provider, partition_date ORDER BY landed_at DESC) = 1)"
    ).fetchone()[0]


def run_columns_fingerprint(con: duckdb.DuckDBPyConnection) -> str:
    """sha256 over the pages each partition's rows came from and when they were fetched: what a landing of the same
    records from new pages (the daily live re-fetch) changes in `works`, and `landings_fingerprint` cannot see."""
    return con.execute(
        "SELECT sha256(coalesce(string_agg(page, '\n' ORDER BY page), '')) FROM (SELECT DISTINCT concat_ws('|', query, "
        "provider, partition_date, raw_page_sha256, epoch_us(retrieved_at)) AS page FROM works)"  # the same in any time zone
    ).fetchone()[0]


def unchanged_inputs(context: dg.AssetExecutionContext, *inputs: str) -> tuple[str, bool]:
    """The fingerprint of what the asset reads, and whether its last materialization recorded the same one."""
    fingerprint = hashlib.sha256("\n".join([DATASET_CODE_VERSION, SCHEMA_VERSION, *inputs]).encode()).hexdigest()
    event = context.instance.get_latest_materialization_event(context.asset_key)
    recorded = event.asset_materialization.metadata.get(FINGERPRINT) if event and event.asset_materialization else None
    if recorded is not None and recorded.value == fingerprint:
        context.log.info(f"{context.asset_key.to_user_string()}: what it reads is as it was at its last materialization; "
                         "nothing to do")
        return fingerprint, True
    return fingerprint, False


def unique_works_version(con: duckdb.DuckDBPyConnection) -> str:
    """What the assets below `unique_works` read of it; a clear failure when it was never built."""
    if not has_table(con, "unique_works"):
        raise dg.Failure(f"table unique_works does not exist yet: materialize {UNIQUE_WORKS.to_user_string()} first "
                         "(or the whole group: dagster asset materialize ... --select 'group:dataset')", allow_retries=False)
    return table_version(con, "unique_works").value


def _dataset_asset(key: dg.AssetKey, deps: list[dg.AssetKey], description: str, kinds: set[str] | None = None):
    """`dg.asset` with what every asset of the group shares: its group, code version and automation, and no
    materialization when its inputs did not change."""
    return dg.asset(key=key, deps=deps, group_name=GROUP, kinds=kinds or {"duckdb"}, code_version=DATASET_CODE_VERSION,
                    automation_condition=CONTENT_CHANGED, description=description, output_required=False)


def build_unique_works_asset(searches: list[SavedSearch]) -> dg.AssetsDefinition:
    """`dataset/unique_works`, downstream of every saved search's `works`."""

    @_dataset_asset(
        UNIQUE_WORKS, [dg.AssetKey([search.name, "works"]) for search in searches],
        "One row per real-world work across providers and saved searches (DuckDB table `unique_works`): matched "
        "on DOI, PMID, PMCID, arXiv id, then title + year + first author; `sources` names every `works` row.",
    )
    def unique_works(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
        with warehouse.backend.write_connection(log=context.log) as con:
            ensure_tables(con)
            # The run columns too, although no row of unique_works holds them: `exports` holds `works` whole, and a
            # step whose upstream asset records nothing in the same run is skipped (Dagster's rule), so this asset
            # is built again (to the same content and data version) when only they changed.
            fingerprint, unchanged = unchanged_inputs(context, landings_fingerprint(con), run_columns_fingerprint(con))
            if unchanged and has_table(con, "unique_works"):
                return
            rows = build_unique_works(con)
            version = table_version(con, "unique_works")
            sources, by_rule, by_query = con.execute(
                "SELECT (SELECT count(*) FROM works), "
                "(SELECT map(list(match_rule), list(n)) FROM (SELECT match_rule, count(*) n FROM unique_works GROUP BY 1 ORDER BY 1)), "
                "(SELECT map(list(q), list(n)) FROM (SELECT q, count(*) n FROM unique_works, unnest(queries) AS t(q) GROUP BY 1 ORDER BY 1))"
            ).fetchone()
            preview = con.execute(
                "SELECT title, doi, len(sources), match_rule FROM unique_works ORDER BY len(sources) DESC, work_id LIMIT 5"
            ).fetchall()
            context.log.info(f"unique_works: {rows:,} works from {sources:,} rows of works")
            yield dg.MaterializeResult(
                data_version=version,
                metadata={
                    "dagster/row_count": rows,
                    "dagster/table_name": "unique_works",
                    "dagster/column_schema": dg.TableSchema(columns=[dg.TableColumn(f.name, str(f.type)) for f in UNIQUE_WORKS_SCHEMA]),
                    "works_rows": sources,
                    "works_by_match_rule": dg.MetadataValue.json({rule: (by_rule or {}).get(rule, 0) for rule in [*RULES, SAME_RECORD, SINGLE]}),
                    "works_by_saved_search": dg.MetadataValue.json(dict(by_query or {})),
                    "most_sources": dg.MetadataValue.md(_preview(preview)),
                    "content_hash": version.value,
                    FINGERPRINT: fingerprint,
                },
            )

    return unique_works


def _preview(rows: list[tuple]) -> str:
    lines = ["| title | doi | sources | matched by |", "|---|---|---:|---|"]
    lines += [f"| {markdown_cell((title or '')[:100])} | {markdown_cell(doi or '')} | {n} | {rule} |" for title, doi, n, rule in rows]
    return "\n".join(lines) if rows else "_no works yet_"


@dg.asset_check(asset=UNIQUE_WORKS, name="every_works_row_once", blocking=True,
                description="Every row of `works` (with its record hash) is a source of exactly one unique work, and no "
                            "unique work has none.")
def every_works_row_once(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.backend.read_connection(log=context.log) as con:
        return sources_account_for_works(con)


def sources_account_for_works(con: duckdb.DuckDBPyConnection) -> dg.AssetCheckResult:
    key = "query, provider, provider_id, partition_date, record_hash"
    works_rows, sources, works, unaccounted, twice, empty = con.execute(f"""
        WITH s AS (SELECT u.work_id, unnest(u.sources, recursive := true) FROM unique_works u)
        SELECT (SELECT count(*) FROM works), (SELECT count(*) FROM s), (SELECT count(*) FROM unique_works),
               (SELECT count(*) FROM (SELECT {key} FROM works EXCEPT SELECT {key} FROM s)),
               (SELECT count(*) FROM (SELECT {key} FROM s GROUP BY ALL HAVING count(*) > 1)),
               (SELECT count(*) FROM unique_works WHERE len(sources) = 0)
    """).fetchone()
    return dg.AssetCheckResult(
        passed=works <= sources == works_rows and unaccounted == 0 and twice == 0 and empty == 0,
        metadata={"works_rows": works_rows, "source_rows": sources, "unique_works": works,
                  "works_rows_in_no_unique_work": unaccounted, "source_rows_in_more_than_one_place": twice,
                  "unique_works_without_sources": empty},
    )


@_dataset_asset(
    REVIEW_COUNTS, [UNIQUE_WORKS],
    "The PRISMA 2020 identification counts per saved search, over all its days and per year (DuckDB table "
    "`review_counts`): records identified per provider, duplicates within and across providers, unique records.",
)
def review_counts(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    with warehouse.backend.write_connection(log=context.log) as con:
        ensure_tables(con)
        fingerprint, unchanged = unchanged_inputs(context, landings_fingerprint(con), unique_works_version(con))
        if unchanged and has_table(con, "review_counts"):
            return
        rows = build_review_counts(con)
        version = table_version(con, "review_counts")
        yield dg.MaterializeResult(
            data_version=version,
            metadata={"dagster/row_count": rows, "dagster/table_name": "review_counts",
                      "counts": dg.MetadataValue.md(review_counts_markdown(con)), "content_hash": version.value,
                      FINGERPRINT: fingerprint},
        )


dataset_job = dg.define_asset_job(
    "dataset", selection=dg.AssetSelection.groups(GROUP),
    description="Build every asset of group `dataset` (and its checks) from what `works` holds now.",
)

dataset_automation = dg.AutomationConditionSensorDefinition(
    "dataset_automation", target=dg.AssetSelection.groups(GROUP),
    default_status=dg.DefaultSensorStatus.RUNNING if dataset_automation_on() else dg.DefaultSensorStatus.STOPPED,
    description="Keeps group `dataset` fresh: requests an asset when the content of what it reads changed.",
)


@_dataset_asset(
    MONITORING, [UNIQUE_WORKS],
    f"New unique works per day, saved search and provider: a chart of the last {CHART_DAYS} days and a table of "
    "the last week. A work is new for a search on the first day any provider found it for that search.",
)
def monitoring(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    with warehouse.backend.read_connection(log=context.log) as con:
        fingerprint, unchanged = unchanged_inputs(context, unique_works_version(con))
        if unchanged:
            return
        everything = daily_new_works(con)
        last = max(everything.column("partition_date").to_pylist(), default=None)
        window = daily_new_works(con, first=last - dt.timedelta(days=CHART_DAYS - 1)) if last else everything
        version = hashlib.sha256(json.dumps(everything.to_pylist(), default=str).encode()).hexdigest()
        yield dg.MaterializeResult(
            data_version=dg.DataVersion(version),
            metadata={"new_works_per_day": dg.MetadataValue.md(chart_markdown(window)),
                      "last_week": dg.MetadataValue.md(summary_markdown(everything)),
                      "days": len(set(everything.column("partition_date").to_pylist())), "content_hash": version,
                      FINGERPRINT: fingerprint},
        )


def build_freshness_check(searches: list[SavedSearch]) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=MONITORING, name="yesterday_landed",
        automation_condition=dg.AutomationCondition.cron_tick_passed(f"0 {FRESHNESS_HOUR_UTC} * * *", "UTC"),
        description=f"Every day at {FRESHNESS_HOUR_UTC}:00 UTC (and with each materialization of monitoring): every "
                    "provider of every saved search whose daily schedule is on landed yesterday's partition (the tick "
                    "at 04:00 UTC fetches it). Fails naming each late one and what to do. Before "
                    f"{FRESHNESS_HOUR_UTC}:00 UTC it looks at the day before yesterday, whose tick has had its time.")
    def yesterday_landed(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
        today = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=FRESHNESS_HOUR_UTC)).date()
        scheduled = scheduled_searches(context.instance, searches)
        with warehouse.backend.read_connection(log=context.log) as con:
            late = late_partitions(con, scheduled, today)
        if late:
            context.log.warning(f"{len(late)} partitions of {late[0].day} have not landed, first "
                                f"{late[0].query} {late[0].partition_key}: {late[0].action}")
        return dg.AssetCheckResult(passed=not late, metadata={
            **freshness_metadata(late, scheduled, today),
            "scheduled_searches": dg.MetadataValue.json([search.name for search in scheduled])})

    return yesterday_landed


def scheduled_searches(instance: dg.DagsterInstance, searches: list[SavedSearch]) -> list[SavedSearch]:
    """The searches whose daily schedule is on (the schedules start stopped): the ones expected to land every day."""
    running = {state.instigator_name for state in instance.all_instigator_state(
        instigator_type=InstigatorType.SCHEDULE, instigator_statuses={InstigatorStatus.RUNNING})}
    return [search for search in searches if daily_schedule_name(search) in running]


@_dataset_asset(
    EXPORTS, [UNIQUE_WORKS], kinds={"parquet", "csv"},
    description="`unique_works` and `works` as Parquet (by saved search and publication year) and CSV, `unique_works` "
                "as RIS and BibTeX, under $SCHOLAR_PIPELINE_HOME/exports/ with a manifest.json of every file's sha256.",
)
def exports(context: dg.AssetExecutionContext, scholar_api: ScholarApiResource, warehouse: WarehouseResource):
    folder = scholar_api.home_path / "exports"
    with warehouse.backend.read_connection(log=context.log) as con:
        fingerprint, unchanged = unchanged_inputs(context, landings_fingerprint(con), run_columns_fingerprint(con),
                                                  unique_works_version(con))
        if unchanged and not verify_exports(folder):
            return
        # The package's version too, so that a cited export names the release that made it.
        code_version = f"scholar-pipeline {package_version('scholar-pipeline')}, {DATASET_CODE_VERSION}"
        manifest = write_exports(con, folder, code_version=code_version, schema_version=SCHEMA_VERSION)
        # Everything the manifest says but when: equal tables, equal version.
        version = hashlib.sha256(json.dumps([[f.path, f.sha256] for f in manifest.files]).encode()).hexdigest()
        yield dg.MaterializeResult(
            data_version=dg.DataVersion(version),
            metadata={"folder": dg.MetadataValue.path(str(folder)), "manifest": dg.MetadataValue.path(str(folder / "manifest.json")),
                      "files": dg.MetadataValue.md(_files_table(manifest.files)), "tables": dg.MetadataValue.json(manifest.tables),
                      "content_hash": version, FINGERPRINT: fingerprint},
        )


def _files_table(files) -> str:
    """The manifest's files for the UI: each file but the Parquet ones, which are summed in one line."""
    parquet = [f for f in files if "/query=" in f.path]
    lines = ["| file | rows | bytes | sha256 |", "|---|---:|---:|---|"]
    lines += [f"| `{f.path}` | {f.rows:,} | {f.bytes:,} | `{f.sha256[:16]}…` |" for f in files if "/query=" not in f.path]
    lines.append(f"| `parquet/` ({len(parquet)} files) | {sum(f.rows for f in parquet):,} | {sum(f.bytes for f in parquet):,} | |")
    return "\n".join(lines)


@dg.asset_check(asset=EXPORTS, name="manifest_verifies",
                description="Every file under exports/ has the size, sha256 and row count its manifest.json records, "
                            "and no file is missing or extra.")
def manifest_verifies(scholar_api: ScholarApiResource) -> dg.AssetCheckResult:
    problems = verify_exports(scholar_api.home_path / "exports")
    return dg.AssetCheckResult(passed=not problems, metadata={"problems": dg.MetadataValue.json(problems[:20]),
                                                              "problem_count": len(problems)})


@_dataset_asset(
    SEARCH_INDEX, [UNIQUE_WORKS], kinds={"duckdb"},
    description="`unique_works` searchable by `scholar-pipeline search`: title and abstract under BM25 (English "
                "stemmer and stop words) and, with the `semantic` extra, as all-MiniLM-L6-v2 embeddings (only new or "
                "changed works embedded), in $SCHOLAR_PIPELINE_HOME/search/search.duckdb, rebuilt whole and swapped in "
                "when `unique_works` changes.",
)
def search_index(context: dg.AssetExecutionContext, scholar_api: ScholarApiResource, warehouse: WarehouseResource):
    semantic = semantic_installed()
    with warehouse.backend.read_connection(log=context.log) as con:  # left before the build: it may take minutes
        version = unique_works_version(con)
        # Installing the extra (or another model release) changes what the index holds, as a change of the works does.
        fingerprint, unchanged = unchanged_inputs(context, version, f"semantic: {MODEL_ID if semantic else 'off'}")
        if unchanged and index_path(scholar_api.home_path).exists():
            return
        documents = read_documents(con)
    built = build_search_index(documents, scholar_api.home_path, log=context.log.info, semantic=semantic)
    context.log.info(f"search_index: {built.documents} works indexed in {built.seconds} s"
                     + (f", {built.embedded} embedded, {built.embeddings_reused} embeddings kept" if built.embedded is not None
                        else " (BM25 only: the semantic extra is not installed)"))
    yield dg.MaterializeResult(
        data_version=dg.DataVersion(hashlib.sha256(f"{DATASET_CODE_VERSION}\n{version}".encode()).hexdigest()),
        metadata={"documents": built.documents, "with_abstract": built.with_abstract, "seconds": built.seconds,
                  "embedded": built.embedded, "embeddings_reused": built.embeddings_reused,
                  "path": dg.MetadataValue.path(str(built.path)), FINGERPRINT: fingerprint},
    )


def build_dataset_assets(searches: list[SavedSearch]) -> list:
    """Every asset and check of group `dataset`, downstream of these saved searches."""
    return [build_unique_works_asset(searches), every_works_row_once, review_counts, monitoring,
            build_freshness_check(searches), exports, manifest_verifies, search_index]


dataset_assets = build_dataset_assets(SAVED_SEARCHES)
