"""The code location: one group per saved search, contract asset keys, a daily schedule per search."""

import datetime as dt
import importlib
import warnings

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

import scholar_pipeline.defs.dataset as dataset_module
import scholar_pipeline.defs.saved_searches as saved_searches_module
from scholar_pipeline.defs.partition_runs import FETCH_LIVE, FETCH_TAG


def _load_defs():
    importlib.reload(saved_searches_module)  # re-read $SCHOLAR_PIPELINE_QUERIES
    importlib.reload(dataset_module)  # downstream of every saved search's works
    from scholar_pipeline.definitions import defs

    return defs()


def test_each_saved_search_is_a_group_with_raw_and_works(pipeline_env):
    definitions = _load_defs()
    specs = {spec.key: spec for spec in definitions.resolve_all_asset_specs() if spec.group_name != "dataset"}
    assert set(specs) == {dg.AssetKey(["sim_search", "raw"]), dg.AssetKey(["sim_search", "works"])}
    assert {spec.group_name for spec in specs.values()} == {"sim_search"}
    unique_works = next(spec for spec in definitions.resolve_all_asset_specs() if spec.key == dg.AssetKey(["dataset", "unique_works"]))
    assert {dep.asset_key for dep in unique_works.deps} == {dg.AssetKey(["sim_search", "works"])}  # every search's works
    works = specs[dg.AssetKey(["sim_search", "works"])]
    assert {dep.asset_key for dep in works.deps} == {dg.AssetKey(["sim_search", "raw"])}
    keys = works.partitions_def.get_partition_keys(current_time=dt.datetime(2024, 1, 3))
    assert sorted(keys) == ["2024-01-01|crossref", "2024-01-01|openalex", "2024-01-02|crossref", "2024-01-02|openalex"]


def _tick(definitions, at: dt.datetime):
    schedule = definitions.resolve_schedule_def("sim_search_daily_schedule")
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=at,
                                            repository_def=definitions.get_repository_def())
        return schedule.evaluate_tick(context)


def _partitions_of(request: dg.RunRequest, definitions) -> list[str]:
    """The partitions a run request's range covers, as Dagster reads its range tags."""
    partitions = definitions.get_assets_def(dg.AssetKey(["sim_search", "works"])).partitions_def
    key_range = dg.PartitionKeyRange(request.tags[ASSET_PARTITION_RANGE_START_TAG], request.tags[ASSET_PARTITION_RANGE_END_TAG])
    return sorted(partitions.get_partition_keys_in_range(key_range))


def test_daily_schedule_refetches_a_trailing_window_live_for_every_provider_in_one_run(pipeline_env, monkeypatch):
    monkeypatch.setenv("SCHOLAR_PIPELINE_MONITOR_DAYS", "3")
    definitions = _load_defs()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (request,) = _tick(definitions, dt.datetime(2024, 3, 5, 4, 0, tzinfo=dt.timezone.utc)).run_requests
    assert _partitions_of(request, definitions) == [f"2024-03-0{d}|{p}" for d in (2, 3, 4) for p in ("crossref", "openalex")]
    assert request.tags[FETCH_TAG] == FETCH_LIVE and request.partition_key is None
    assert [str(w.message) for w in caught] == []


def test_trailing_window_starts_no_earlier_than_the_search(pipeline_env):
    definitions = _load_defs()  # start_date 2024-01-01, default window 30 days
    (request,) = _tick(definitions, dt.datetime(2024, 1, 3, 4, 0, tzinfo=dt.timezone.utc)).run_requests
    assert sorted({key.split("|")[0] for key in _partitions_of(request, definitions)}) == ["2024-01-01", "2024-01-02"]
    assert _tick(definitions, dt.datetime(2024, 1, 1, 4, 0, tzinfo=dt.timezone.utc)).skip_message
