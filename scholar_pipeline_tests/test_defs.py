"""The code location: one group per saved search, contract asset keys, a daily schedule per search."""

import datetime as dt
import importlib

import dagster as dg

import scholar_pipeline.defs.saved_searches as saved_searches_module


def _load_defs():
    importlib.reload(saved_searches_module)  # re-read $SCHOLAR_PIPELINE_QUERIES
    from scholar_pipeline.definitions import defs

    return defs()


def test_each_saved_search_is_a_group_with_raw_and_works(pipeline_env):
    definitions = _load_defs()
    specs = {spec.key: spec for spec in definitions.resolve_all_asset_specs()}
    assert set(specs) == {dg.AssetKey(["sim_search", "raw"]), dg.AssetKey(["sim_search", "works"])}
    assert {spec.group_name for spec in specs.values()} == {"sim_search"}
    works = specs[dg.AssetKey(["sim_search", "works"])]
    assert {dep.asset_key for dep in works.deps} == {dg.AssetKey(["sim_search", "raw"])}
    keys = works.partitions_def.get_partition_keys(current_time=dt.datetime(2024, 1, 3))
    assert sorted(keys) == ["2024-01-01|crossref", "2024-01-01|openalex", "2024-01-02|crossref", "2024-01-02|openalex"]


def test_daily_schedule_requests_yesterday_for_every_provider(pipeline_env):
    definitions = _load_defs()
    schedule = definitions.resolve_schedule_def("sim_search_daily_schedule")
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=dt.datetime(2024, 3, 5, 4, 0, tzinfo=dt.timezone.utc))
        requests = schedule.evaluate_tick(context).run_requests
    assert sorted(r.partition_key for r in requests) == ["2024-03-04|crossref", "2024-03-04|openalex"]
