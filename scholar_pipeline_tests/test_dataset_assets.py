"""Group `dataset` in Dagster: built from landed partitions, checked, and refreshed only when what it reads changed."""

from __future__ import annotations

import datetime as dt
import json
from importlib.metadata import version as package_version

import dagster as dg
import duckdb
from dagster._core.definitions.run_request import InstigatorType
from dagster._core.remote_origin import (
    InProcessCodeLocationOrigin, LoadableTargetOrigin, RemoteInstigatorOrigin, RemoteRepositoryOrigin,
)
from dagster._core.scheduler.instigation import InstigatorState, InstigatorStatus, ScheduleInstigatorData

from scholar_pipeline.dataset.unique_works import build_unique_works
from scholar_pipeline.defs.dataset import (
    DATASET_CODE_VERSION, EXPORTS, FRESHNESS_HOUR_UTC, MONITORING, REVIEW_COUNTS, UNIQUE_WORKS, build_dataset_assets,
    run_columns_fingerprint, sources_account_for_works,
)
from scholar_pipeline.defs.partition_runs import FETCH_LIVE, FETCH_TAG
from scholar_pipeline.defs.resources import scholar_api_from_env, warehouse_from_env
from scholar_pipeline.defs.saved_searches import build_saved_search_assets, daily_schedule_name
from scholar_pipeline.schema import SCHEMA_VERSION
from scholar_pipeline.warehouse import ensure_tables
from scholar_pipeline_tests.helpers import SEARCH, home, materialize_range, query_db

DATASET = build_dataset_assets([SEARCH])


def resources() -> dict:
    return {"scholar_api": scholar_api_from_env(), "warehouse": warehouse_from_env()}


def build_dataset(instance, selection=None):
    return dg.materialize(DATASET, instance=instance, resources=resources(), selection=selection)


def test_the_dataset_is_built_from_every_landed_row_and_checked(pipeline_env):
    with dg.instance_for_test() as instance:
        materialize_range("2024-03-01", "2024-03-02", instance=instance)
        result = build_dataset(instance)
        assert result.success
        works_rows = query_db("SELECT count(*) FROM works")[0][0]
        assert works_rows > 100
        sources = query_db("SELECT sum(len(sources)), count(*) FROM unique_works")[0]
        assert sources[0] == works_rows and sources[1] < works_rows  # OpenAlex and Crossref share most works by DOI
        checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
        assert checks["every_works_row_once"].passed
        metadata = {e.materialization.asset_key: e.materialization.metadata for e in result.get_asset_materialization_events()}
        assert metadata[UNIQUE_WORKS]["dagster/row_count"].value == sources[1]
        assert metadata[UNIQUE_WORKS]["works_by_match_rule"].value["doi"] > 0
        assert "| (all) |" in metadata[REVIEW_COUNTS]["counts"].value
        assert metadata[MONITORING]["new_works_per_day"].value.startswith("![")
        assert metadata[MONITORING]["days"].value == 2
        assert checks["manifest_verifies"].passed
        assert metadata[EXPORTS]["tables"].value == {"unique_works": sources[1], "works": works_rows}
        manifest = json.loads((home() / "exports" / "manifest.json").read_text())
        assert (manifest["code_version"], manifest["schema_version"]) == (
            f"scholar-pipeline {package_version('scholar-pipeline')}, {DATASET_CODE_VERSION}", SCHEMA_VERSION)
        exported = duckdb.connect().execute(
            f"SELECT count(*) FROM read_parquet('{home() / 'exports/parquet/works'}/**/*.parquet', hive_partitioning=false)"
        ).fetchone()[0]
        assert exported == works_rows
        # A file changed after the export: the check, run alone, fails naming it.
        ris = home() / "exports" / "unique_works.ris"
        ris.write_bytes(ris.read_bytes().replace(b"TY  - ", b"TY  -  ", 1))
        [tampered] = build_dataset(instance, selection=dg.AssetSelection.checks_for_assets(EXPORTS)).get_asset_check_evaluations()
        assert not tampered.passed and "unique_works.ris" in " ".join(tampered.metadata["problems"].value)


def test_every_works_row_once_fails_when_a_row_is_in_no_work_or_in_two(pipeline_env):
    with dg.instance_for_test() as instance:
        materialize_range("2024-03-01", "2024-03-01", instance=instance)
    con = duckdb.connect(str(home() / "scholar.duckdb"))
    build_unique_works(con)
    assert sources_account_for_works(con).passed
    # A work loses a source row: that row of works is in no work.
    con.execute("UPDATE unique_works SET sources = sources[2:] WHERE work_id = (SELECT min(work_id) FROM unique_works)")
    lost = sources_account_for_works(con)
    assert not lost.passed and lost.metadata["works_rows_in_no_unique_work"].value == 1
    build_unique_works(con)
    # A source row named by two works.
    con.execute("UPDATE unique_works SET sources = list_concat(sources, (SELECT sources FROM unique_works ORDER BY work_id "
                "LIMIT 1)) WHERE work_id = (SELECT max(work_id) FROM unique_works)")
    twice = sources_account_for_works(con)
    assert not twice.passed and twice.metadata["source_rows_in_more_than_one_place"].value >= 1
    con.close()


def turn_on_daily_schedule(instance: dg.DagsterInstance, search) -> None:
    """What the UI's toggle stores for a schedule that is on."""
    location = InProcessCodeLocationOrigin(LoadableTargetOrigin(module_name="scholar_pipeline.definitions"))
    origin = RemoteInstigatorOrigin(RemoteRepositoryOrigin(location, "__repository__"), daily_schedule_name(search))
    instance.add_instigator_state(InstigatorState(origin, InstigatorType.SCHEDULE, InstigatorStatus.RUNNING,
                                                  ScheduleInstigatorData("0 4 * * *")))


def test_yesterday_landed_checks_the_scheduled_searches_and_fails_until_yesterday_landed(pipeline_env):
    # The check's day: yesterday, or the day before until the schedules had their time (FRESHNESS_HOUR_UTC).
    yesterday = ((dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=FRESHNESS_HOUR_UTC)).date() - dt.timedelta(days=1)).isoformat()

    def freshness(instance):  # the check alone, as the sensor asks for it each morning
        selection = dg.AssetSelection.checks(dg.AssetCheckKey(MONITORING, "yesterday_landed"))
        [check] = build_dataset(instance, selection=selection).get_asset_check_evaluations()
        return check

    with dg.instance_for_test() as instance:
        materialize_range("2024-03-01", "2024-03-01", instance=instance)
        unscheduled = freshness(instance)  # its schedule is off: nothing is expected every day
        assert unscheduled.passed and unscheduled.metadata["scheduled_searches"].value == []
        turn_on_daily_schedule(instance, SEARCH)
        late = freshness(instance)
        assert not late.passed and late.metadata["partitions_late"].value == 2
        assert f"--partition '{yesterday}\\|crossref'" in late.metadata["late_partitions"].value
        materialize_range(yesterday, yesterday, instance=instance)
        on_time = freshness(instance)
        assert on_time.passed and on_time.metadata["partitions_expected"].value == 2


def _materializations(instance, key) -> int:
    return len(instance.fetch_materializations(key, limit=100).records)


def test_automation_builds_a_missing_dataset_rebuilds_what_changed_and_nothing_else(pipeline_env):
    defs = dg.Definitions(assets=[*build_saved_search_assets(SEARCH), *DATASET], resources=resources())
    everything = {UNIQUE_WORKS, REVIEW_COUNTS, MONITORING, EXPORTS}
    with dg.instance_for_test() as instance:
        cursor = None

        def requested() -> set:
            nonlocal cursor
            result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
            cursor = result.cursor
            return {key for key in everything if result.get_num_requested(key)}

        below = everything - {UNIQUE_WORKS}

        def build_below_and_see_nothing_recorded():
            """What reads unique_works was asked in the same tick as it: asked again once it was built, it finds its
            inputs as it read them and records nothing."""
            assert requested() == below
            before = {key: _materializations(instance, key) for key in below}
            build_dataset(instance, selection=list(below))
            assert {key: _materializations(instance, key) for key in below} == before
            assert requested() == set()

        # Data landed before the sensor's first tick (a deployment upgraded to this group): the missing dataset is built.
        materialize_range("2024-03-01", "2024-03-01", instance=instance)
        assert requested() == everything
        build_dataset(instance)
        build_below_and_see_nothing_recorded()
        # The same day landed again (from the HTTP cache): unique_works is asked, finds its inputs as they were and
        # records nothing, so nothing below it is asked.
        materialize_range("2024-03-01", "2024-03-01", instance=instance)
        assert requested() == {UNIQUE_WORKS}
        built = _materializations(instance, UNIQUE_WORKS)
        build_dataset(instance, selection=[UNIQUE_WORKS])
        assert _materializations(instance, UNIQUE_WORKS) == built
        assert requested() == set()
        # A new day: unique_works is rebuilt, then what reads it.
        materialize_range("2024-03-02", "2024-03-02", instance=instance)
        assert requested() == {UNIQUE_WORKS}
        build_dataset(instance, selection=[UNIQUE_WORKS])
        assert _materializations(instance, UNIQUE_WORKS) == built + 1
        # A day that lands after unique_works was built but before the sensor's next tick is not lost.
        materialize_range("2024-03-03", "2024-03-03", instance=instance)
        assert requested() == everything
        build_dataset(instance)
        build_below_and_see_nothing_recorded()
        assert query_db("SELECT sum(len(sources)) FROM unique_works") == query_db("SELECT count(*) FROM works")
        assert query_db("SELECT max(partition_date) FROM works")[0][0] == dt.date(2024, 3, 3)


def test_a_live_fetch_of_the_same_records_is_exported_again_as_the_table_now_holds_it(pipeline_env):
    """The daily tick re-fetches live: the same records from new pages, fetched at a new time. unique_works is built
    again to the same content; the export, which holds `works` with where and when each row was fetched, is written
    again; what only counts records records nothing."""
    exported_rows = (f"SELECT provider, provider_id, raw_page_sha256, retrieved_at FROM read_parquet("
                     f"'{home() / 'exports/parquet/works'}/**/*.parquet', hive_partitioning=false) ORDER BY ALL")
    table_rows = "SELECT provider, provider_id, raw_page_sha256, retrieved_at FROM works ORDER BY ALL"
    with dg.instance_for_test() as instance:
        materialize_range("2024-03-01", "2024-03-01", instance=instance)
        build_dataset(instance)
        before = {key: _materializations(instance, key) for key in (UNIQUE_WORKS, REVIEW_COUNTS, EXPORTS)}
        version = instance.get_latest_materialization_event(UNIQUE_WORKS).asset_materialization.metadata["content_hash"]
        first = query_db(table_rows)
        materialize_range("2024-03-01", "2024-03-01", instance=instance, tags={FETCH_TAG: FETCH_LIVE})
        assert query_db(table_rows) != first and [r[:2] for r in query_db(table_rows)] == [r[:2] for r in first]
        build_dataset(instance)
        assert {key: _materializations(instance, key) for key in before} == {
            UNIQUE_WORKS: before[UNIQUE_WORKS] + 1, REVIEW_COUNTS: before[REVIEW_COUNTS], EXPORTS: before[EXPORTS] + 1}
        assert instance.get_latest_materialization_event(UNIQUE_WORKS).asset_materialization.metadata["content_hash"] == version
        assert query_db(exported_rows) == query_db(table_rows)


def test_the_run_columns_fingerprint_is_the_same_in_every_time_zone():
    """Workers in other time zones must not see a change where there is none (and rebuild for nothing)."""
    con = duckdb.connect()
    ensure_tables(con)
    con.execute("INSERT INTO works (query, provider, partition_date, provider_id, raw_page_sha256, retrieved_at) "
                "VALUES ('q', 'openalex', DATE '2024-03-01', 'W1', 'abc', TIMESTAMPTZ '2024-03-02 10:00:00+00')")
    con.execute("SET TimeZone = 'UTC'")
    in_utc = run_columns_fingerprint(con)
    con.execute("SET TimeZone = 'Europe/Berlin'")
    assert run_columns_fingerprint(con) == in_utc


def test_yesterday_landed_is_asked_every_day_after_the_schedules_had_their_time(pipeline_env):
    defs = dg.Definitions(assets=[*build_saved_search_assets(SEARCH), *DATASET], resources=resources())
    check = dg.AssetCheckKey(MONITORING, "yesterday_landed")
    with dg.instance_for_test() as instance:
        cursor, asked = None, []
        for hour in (5, 6, 7, 8):
            result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor,
                                                       evaluation_time=dt.datetime(2026, 12, 6, hour, 30, tzinfo=dt.timezone.utc))
            cursor = result.cursor
            asked += [evaluation.true_subset.size for evaluation in result.results if evaluation.key == check]
        assert asked == [0, 0, 1, 0]
