"""Runs of many partitions, as backfills and the daily schedule launch them: each partition is fetched, landed in a
transaction of its own, checked and recorded on its own; a failing one is named by key and costs only itself."""

import datetime as dt

import dagster as dg
import pytest
from dagster._core.definitions.assets.graph.asset_graph import AssetGraph
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._core.loader import LoadingContextForTest

import scholar_pipeline.defs.partition_runs as partition_runs
from scholar_pipeline.defs.saved_searches import build_saved_search_assets
from scholar_pipeline.defs.works_checks import ALL_CHECKS
from scholar_pipeline.warehouse_backends import DuckDBFile
from scholar_pipeline_tests.helpers import SEARCH, materialize, materialize_range, query_db, step_failure

FIRST, LAST = "2024-03-01", "2024-03-03"
DAYS = ["2024-03-01", "2024-03-02", "2024-03-03"]
KEYS = [f"{day}|{provider}" for day in DAYS for provider in SEARCH.providers]


def _landed(day: str, provider: str) -> list[str]:
    return sorted(r[0] for r in query_db("SELECT provider_id FROM works WHERE query = ? AND provider = ? AND partition_date = ?",
                                         [SEARCH.name, provider, day]))


def _expected(simulator, day: str, provider: str) -> list[str]:
    day = dt.date.fromisoformat(day)
    return sorted(simulator.apis[provider].record_ids(day, day, SEARCH.text))


def _partitions_of(result, asset: str) -> list[str]:
    key = dg.AssetKey([SEARCH.name, asset])
    return sorted(e.partition for e in result.get_asset_materialization_events() if e.materialization.asset_key == key)


def test_a_run_of_many_partitions_records_each_partition_as_a_run_of_one_would(pipeline_env, simulator):
    with dg.instance_for_test() as instance:
        result = materialize_range(FIRST, LAST, instance=instance)
        works = dg.AssetKey([SEARCH.name, "works"])
        assert set(instance.get_materialized_partitions(works)) == set(KEYS)

    assert result.success and _partitions_of(result, "raw") == _partitions_of(result, "works") == sorted(KEYS)
    for day in DAYS:
        for provider in SEARCH.providers:
            assert _landed(day, provider) == _expected(simulator, day, provider), f"{day}|{provider}"
    # One transaction and one provenance row per partition, each with its own counts and hashes.
    provenance = query_db("SELECT partition_date || '|' || provider, run_id, rows_landed FROM provenance ORDER BY ALL")
    assert [key for key, _, _ in provenance] == sorted(KEYS)
    assert {run_id for _, run_id, _ in provenance} == {result.run_id}
    assert all(rows == len(_landed(*key.split("|"))) for key, _, rows in provenance)
    # Every check of every partition, each recorded for its partition.
    evaluations = {(e.partition, e.check_name): e.passed for e in result.get_asset_check_evaluations()}
    assert evaluations == {(key, name): True for key in KEYS for name in ALL_CHECKS}
    # Each partition's works version follows its own fetch, as Dagster derives it for a run of one.
    versions = {e.partition: e.materialization.tags["dagster/data_version"] for e in result.get_asset_materialization_events()
                if e.materialization.asset_key == works}
    assert len(set(versions.values())) == len(KEYS)
    # The providers were fetched at the same time, each under its own rate limit (Crossref's 4 a second is the slower).
    openalex, crossref = ([r.at for r in simulator.requests_for(p)] for p in ("openalex", "crossref"))
    assert min(crossref) < max(openalex) and min(openalex) < max(crossref), "the providers were fetched one after the other"


def test_a_failing_partition_is_reported_by_key_and_the_others_of_its_run_land(pipeline_env, simulator, monkeypatch):
    sizes = {day: len(_expected(simulator, day, "openalex")) for day in DAYS}
    too_big = max(sizes, key=sizes.get)
    assert sorted(sizes.values())[-2] < sizes[too_big]
    monkeypatch.setenv("SCHOLAR_PIPELINE_OPENALEX_MAX_RECORDS", str(sizes[too_big] - 1))
    failed_key = f"{too_big}|openalex"

    with dg.instance_for_test() as instance:
        result = materialize_range(FIRST, LAST, instance=instance, raise_on_error=False)
        works = dg.AssetKey([SEARCH.name, "works"])
        landed_partitions = set(instance.get_materialized_partitions(works))

    assert not result.success
    message = step_failure(result)
    assert f"1 of {len(KEYS)} partitions failed; the other {len(KEYS) - 1} are recorded" in message
    assert f"- {failed_key}: openalex / saved search 'sim_search' / {too_big}: more than {sizes[too_big] - 1} records" in message
    (failure,) = result.get_step_failure_events()
    failed = failure.step_failure_data.user_failure_data.metadata["failed_partitions"].value
    assert list(failed) == [failed_key]
    assert landed_partitions == set(KEYS) - {failed_key} and _partitions_of(result, "works") == sorted(set(KEYS) - {failed_key})
    for day in DAYS:
        for provider in SEARCH.providers:
            expected = [] if f"{day}|{provider}" == failed_key else _expected(simulator, day, provider)
            assert _landed(day, provider) == expected, f"{day}|{provider}"
    assert {e.partition for e in result.get_asset_check_evaluations()} == set(KEYS) - {failed_key}

    # The failed partition alone, as a backfill's re-execution from failure asks for it (through `dagster dev`:
    # test_scenarios), now lands.
    monkeypatch.setenv("SCHOLAR_PIPELINE_OPENALEX_MAX_RECORDS", str(sizes[too_big]))
    assert materialize(too_big, "openalex").success
    assert _landed(too_big, "openalex") == _expected(simulator, too_big, "openalex")


def test_a_provider_without_its_required_key_fails_its_partitions_at_once_and_the_others_land(pipeline_env, simulator):
    search = SEARCH.model_copy(update={"name": "keyed_search", "providers": ["openalex", "core"]})
    result = materialize_range(FIRST, "2024-03-02", search=search, raise_on_error=False)
    assert not result.success and simulator.requests_for("core") == []
    (failure,) = result.get_step_failure_events()
    failed = failure.step_failure_data.user_failure_data.metadata["failed_partitions"].value
    assert sorted(failed) == ["2024-03-01|core", "2024-03-02|core"]
    assert not failure.step_failure_data.user_failure_data.metadata.get("allow_retries")
    assert "CORE_API_KEY" in step_failure(result)
    assert query_db("SELECT DISTINCT provider FROM works") == [("openalex",)]


def test_landing_a_range_again_reads_the_recorded_fetches_without_a_request(pipeline_env, simulator):
    """The launch mode for re-normalizing after a code change: `<name>/works` alone over a range."""
    with dg.instance_for_test() as instance:
        first = materialize_range(FIRST, LAST, instance=instance)
        requests = sum(len(simulator.requests_for(p)) for p in SEARCH.providers)
        again = materialize_range(FIRST, LAST, instance=instance, selection=[dg.AssetKey([SEARCH.name, "works"])])
    assert again.success and sum(len(simulator.requests_for(p)) for p in SEARCH.providers) == requests
    assert _partitions_of(again, "raw") == [] and _partitions_of(again, "works") == sorted(KEYS)
    assert query_db("SELECT count(*), count(DISTINCT raw_run_id) FROM provenance WHERE run_id = ?", [again.run_id]) == [
        (len(KEYS), 1)]
    assert query_db("SELECT DISTINCT raw_run_id FROM provenance WHERE run_id = ?", [again.run_id]) == [(first.run_id,)]


@pytest.mark.parametrize("selection", ["raw", "works"])
def test_a_run_of_one_asset_records_only_that_asset(pipeline_env, simulator, selection):
    with dg.instance_for_test() as instance:
        if selection == "works":
            materialize_range(FIRST, FIRST, instance=instance, selection=[dg.AssetKey([SEARCH.name, "raw"])])
        result = materialize_range(FIRST, FIRST, instance=instance, selection=[dg.AssetKey([SEARCH.name, selection])])
    assert {e.materialization.asset_key.path[-1] for e in result.get_asset_materialization_events()} == {selection}


def test_works_turns_stale_only_in_the_partition_whose_records_changed(pipeline_env, simulator):
    """The data versions recorded for each partition of a run of many drive staleness as a run of one's would."""
    works = dg.AssetKey([SEARCH.name, "works"])
    graph = AssetGraph.from_assets(build_saved_search_assets(SEARCH))
    with dg.instance_for_test() as instance:
        assert materialize_range(FIRST, LAST, instance=instance).success
        fresh = CachingStaleStatusResolver(instance, graph, LoadingContextForTest(instance))
        assert {key: fresh.get_status(works, key) for key in KEYS} == dict.fromkeys(KEYS, StaleStatus.FRESH)

        api = simulator.apis["openalex"]
        served = api.routes["/works"]
        api.routes["/works"] = lambda params: _with_a_changed_title(served(params))
        refetched = materialize("2024-03-02", "openalex", instance=instance, selection=[dg.AssetKey([SEARCH.name, "raw"])],
                                tags={partition_runs.FETCH_TAG: partition_runs.FETCH_LIVE})
        assert refetched.success
        after = CachingStaleStatusResolver(instance, graph, LoadingContextForTest(instance))
        stale = {key for key in KEYS if after.get_status(works, key) == StaleStatus.STALE}
    assert stale == {"2024-03-02|openalex"}


def _with_a_changed_title(response):
    import json

    page = json.loads(response.body)
    if page.get("results"):
        page["results"][0]["title"] = page["results"][0]["display_name"] = "A title changed since the last fetch"
        response.body = json.dumps(page).encode()
    return response


def test_a_run_stopped_half_way_leaves_in_duckdb_only_what_it_recorded(pipeline_env, simulator, monkeypatch):
    """Stopped (as Dagster stops a run: an interrupt in the step's thread) at its third landing: the partitions landed
    before are in DuckDB and recorded, nothing else is, and the fetching threads end instead of holding the run."""
    write_connection, calls = DuckDBFile.write_connection, []

    def stopped_at_the_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise dg.DagsterExecutionInterruptedError()
        return write_connection(*args, **kwargs)

    monkeypatch.setattr(DuckDBFile, "write_connection", stopped_at_the_third)
    with dg.instance_for_test() as instance:
        result = materialize_range(FIRST, "2024-03-08", instance=instance, raise_on_error=False)
        recorded = set(instance.get_materialized_partitions(dg.AssetKey([SEARCH.name, "works"])))
    assert not result.success and len(recorded) == 2
    landed = {f"{day}|{provider}" for day, provider in query_db("SELECT partition_date::VARCHAR, provider FROM provenance")}
    assert landed == recorded
    assert query_db("SELECT count(DISTINCT (provider, partition_date)) FROM works")[0][0] <= 2
