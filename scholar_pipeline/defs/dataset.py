"""Group `dataset`: what every saved search's `works` add up to (unique works, review counts, monitoring, exports).

The assets are not partitioned: each is a function of the whole of `works`. They keep
themselves fresh: `dataset_automation`, a sensor that runs by default, requests an asset
when the data version of something it reads has changed (a landed partition whose
records changed, not one landed again with the same records), and each asset's own data
version is a hash of its content, so a rebuild that changes nothing stops there.
"""

import datetime as dt
import hashlib
import json
from pathlib import Path

import dagster as dg
from dagster._core.definitions.run_request import InstigatorType
from dagster._core.scheduler.instigation import InstigatorStatus
import duckdb
from dagster_duckdb import DuckDBResource

from scholar_pipeline.dataset.exports import verify_exports, write_exports
from scholar_pipeline.dataset.monitoring import (
    chart_markdown, daily_new_works, freshness_metadata, late_partitions, summary_markdown,
)
from scholar_pipeline.dataset.review_counts import build_review_counts, review_counts_markdown
from scholar_pipeline.dataset.unique_works import RULES, SAME_RECORD, SINGLE, build_unique_works
from scholar_pipeline.defs.resources import ScholarApiResource
from scholar_pipeline.defs.saved_searches import SAVED_SEARCHES, daily_schedule_name
from scholar_pipeline.queries import SavedSearch
from scholar_pipeline.metadata import markdown_cell
from scholar_pipeline.schema import SCHEMA_VERSION, UNIQUE_WORKS_SCHEMA
from scholar_pipeline.warehouse import ensure_tables, read_connection, write_connection

GROUP = "dataset"
UNIQUE_WORKS = dg.AssetKey([GROUP, "unique_works"])
REVIEW_COUNTS = dg.AssetKey([GROUP, "review_counts"])
MONITORING = dg.AssetKey([GROUP, "monitoring"])
EXPORTS = dg.AssetKey([GROUP, "exports"])
CHART_DAYS = 90  # the window the monitoring chart and its summary show
DATASET_CODE_VERSION = "dataset-v1"

# `eager()` without its "every dependency present" clause, which a table of all days would never meet, and triggered by
# a new data version upstream rather than by any materialization (dagster_notes.md, automation downstream).
CONTENT_CHANGED = (
    (dg.AutomationCondition.newly_missing()
     | dg.AutomationCondition.any_deps_match(dg.AutomationCondition.data_version_changed())).since_last_handled()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("content of a dependency changed")


def table_version(con: duckdb.DuckDBPyConnection, table: str) -> dg.DataVersion:
    """sha256 over the table's rows, whatever their order: equal content, equal version."""
    digest = con.execute(
        f"SELECT sha256(coalesce(string_agg(h, '' ORDER BY h), '')) FROM (SELECT md5(CAST(t AS VARCHAR)) AS h FROM {table} t)"
    ).fetchone()[0]
    return dg.DataVersion(digest)


def _dataset_asset(key: dg.AssetKey, deps: list[dg.AssetKey], description: str, kinds: set[str] | None = None):
    """`dg.asset` with what every asset of the group shares: its group, code version and automation."""
    return dg.asset(key=key, deps=deps, group_name=GROUP, kinds=kinds or {"duckdb"}, code_version=DATASET_CODE_VERSION,
                    automation_condition=CONTENT_CHANGED, description=description)


def _database(duckdb_resource: DuckDBResource) -> Path:
    return Path(duckdb_resource.database)


def build_unique_works_asset(searches: list[SavedSearch]) -> dg.AssetsDefinition:
    """`dataset/unique_works`, downstream of every saved search's `works`."""

    @_dataset_asset(
        UNIQUE_WORKS, [dg.AssetKey([search.name, "works"]) for search in searches],
        "One row per real-world work across providers and saved searches (DuckDB table `unique_works`): matched "
        "on DOI, PMID, PMCID, arXiv id, then title + year + first author; `sources` names every `works` row.",
    )
    def unique_works(context: dg.AssetExecutionContext, scholar_api: ScholarApiResource, duckdb: DuckDBResource) -> dg.MaterializeResult:
        with write_connection(_database(duckdb), scholar_api.home_path, log=context.log) as con:
            ensure_tables(con)
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
        return dg.MaterializeResult(
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
            },
        )

    return unique_works


def _preview(rows: list[tuple]) -> str:
    lines = ["| title | doi | sources | matched by |", "|---|---|---:|---|"]
    lines += [f"| {markdown_cell((title or '')[:100])} | {markdown_cell(doi or '')} | {n} | {rule} |" for title, doi, n, rule in rows]
    return "\n".join(lines) if rows else "_no works yet_"


@dg.asset_check(asset=UNIQUE_WORKS, name="every_works_row_once", blocking=True,
                description="Every row of `works` is a source of exactly one unique work, and no unique work has none.")
def every_works_row_once(context: dg.AssetCheckExecutionContext, scholar_api: ScholarApiResource,
                         duckdb: DuckDBResource) -> dg.AssetCheckResult:
    with read_connection(_database(duckdb), scholar_api.home_path, log=context.log) as con:
        return sources_account_for_works(con)


def sources_account_for_works(con: duckdb.DuckDBPyConnection) -> dg.AssetCheckResult:
    key = "query, provider, provider_id, partition_date"
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
def review_counts(context: dg.AssetExecutionContext, scholar_api: ScholarApiResource, duckdb: DuckDBResource) -> dg.MaterializeResult:
    with write_connection(_database(duckdb), scholar_api.home_path, log=context.log) as con:
        ensure_tables(con)
        rows = build_review_counts(con)
        version = table_version(con, "review_counts")
        markdown = review_counts_markdown(con)
    return dg.MaterializeResult(
        data_version=version,
        metadata={"dagster/row_count": rows, "dagster/table_name": "review_counts", "counts": dg.MetadataValue.md(markdown),
                  "content_hash": version.value},
    )


dataset_job = dg.define_asset_job(
    "dataset", selection=dg.AssetSelection.groups(GROUP),
    description="Build every asset of group `dataset` (and its checks) from what `works` holds now.",
)

dataset_automation = dg.AutomationConditionSensorDefinition(
    "dataset_automation", target=dg.AssetSelection.groups(GROUP), default_status=dg.DefaultSensorStatus.RUNNING,
    description="Keeps group `dataset` fresh: requests an asset when the content of what it reads changed.",
)


@_dataset_asset(
    MONITORING, [UNIQUE_WORKS],
    f"New unique works per day, saved search and provider: a chart of the last {CHART_DAYS} days and a table of "
    "the last week. A work is new for a search on the first day any provider found it for that search.",
)
def monitoring(context: dg.AssetExecutionContext, scholar_api: ScholarApiResource, duckdb: DuckDBResource) -> dg.MaterializeResult:
    with read_connection(_database(duckdb), scholar_api.home_path, log=context.log) as con:
        everything = daily_new_works(con)
        last = max(everything.column("partition_date").to_pylist(), default=None)
        window = daily_new_works(con, first=last - dt.timedelta(days=CHART_DAYS - 1)) if last else everything
    version = hashlib.sha256(json.dumps(everything.to_pylist(), default=str).encode()).hexdigest()
    return dg.MaterializeResult(
        data_version=dg.DataVersion(version),
        metadata={"new_works_per_day": dg.MetadataValue.md(chart_markdown(window)),
                  "last_week": dg.MetadataValue.md(summary_markdown(everything)),
                  "days": len(set(everything.column("partition_date").to_pylist())), "content_hash": version},
    )


def build_freshness_check(searches: list[SavedSearch]) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=MONITORING, name="yesterday_landed",
                    description="Every provider of every saved search whose daily schedule is on landed yesterday's "
                                "partition (the tick at 04:00 UTC fetches it); fails naming each late one and what to do.")
    def yesterday_landed(context: dg.AssetCheckExecutionContext, scholar_api: ScholarApiResource,
                         duckdb: DuckDBResource) -> dg.AssetCheckResult:
        today = dt.datetime.now(dt.timezone.utc).date()
        scheduled = scheduled_searches(context.instance, searches)
        with read_connection(_database(duckdb), scholar_api.home_path, log=context.log) as con:
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
def exports(context: dg.AssetExecutionContext, scholar_api: ScholarApiResource, duckdb: DuckDBResource) -> dg.MaterializeResult:
    folder = scholar_api.home_path / "exports"
    with read_connection(_database(duckdb), scholar_api.home_path, log=context.log) as con:
        manifest = write_exports(con, folder, code_version=DATASET_CODE_VERSION, schema_version=SCHEMA_VERSION)
    # Everything the manifest says but when: equal tables, equal version.
    version = hashlib.sha256(json.dumps([[f.path, f.sha256] for f in manifest.files]).encode()).hexdigest()
    files = ["| file | rows | bytes | sha256 |", "|---|---:|---:|---|"]
    files += [f"| `{f.path}` | {f.rows:,} | {f.bytes:,} | `{f.sha256[:16]}…` |" for f in manifest.files if "/query=" not in f.path]
    parquet = [f for f in manifest.files if "/query=" in f.path]
    files.append(f"| `parquet/` ({len(parquet)} files) | {sum(f.rows for f in parquet):,} | {sum(f.bytes for f in parquet):,} | |")
    return dg.MaterializeResult(
        data_version=dg.DataVersion(version),
        metadata={"folder": dg.MetadataValue.path(str(folder)), "manifest": dg.MetadataValue.path(str(folder / "manifest.json")),
                  "files": dg.MetadataValue.md("\n".join(files)), "tables": dg.MetadataValue.json(manifest.tables),
                  "content_hash": version},
    )


@dg.asset_check(asset=EXPORTS, name="manifest_verifies",
                description="Every file under exports/ has the size, sha256 and row count its manifest.json records, "
                            "and no file is missing or extra.")
def manifest_verifies(scholar_api: ScholarApiResource) -> dg.AssetCheckResult:
    problems = verify_exports(scholar_api.home_path / "exports")
    return dg.AssetCheckResult(passed=not problems, metadata={"problems": dg.MetadataValue.json(problems[:20]),
                                                              "problem_count": len(problems)})


def build_dataset_assets(searches: list[SavedSearch]) -> list:
    """Every asset and check of group `dataset`, downstream of these saved searches."""
    return [build_unique_works_asset(searches), every_works_row_once, review_counts, monitoring,
            build_freshness_check(searches), exports, manifest_verifies]


dataset_assets = build_dataset_assets(SAVED_SEARCHES)
