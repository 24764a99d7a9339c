"""The code location: one group per saved search, contract asset keys, a daily schedule per search."""

import datetime as dt
import importlib
import warnings

import dagster as dg

import scholar_pipeline.defs.audit_checks as audit_checks_module
import scholar_pipeline.defs.saved_searches as saved_searches_module
from scholar_pipeline.defs.saved_searches import FETCH_LIVE, FETCH_TAG


def _load_defs():
    importlib.reload(saved_searches_module)  # re-read $SCHOLAR_PIPELINE_QUERIES
    importlib.reload(audit_checks_module)  # and build its checks from the searches read
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


def test_daily_schedule_refetches_a_trailing_window_live_for_every_provider(pipeline_env, monkeypatch):
    monkeypatch.setenv("SCHOLAR_PIPELINE_MONITOR_DAYS", "3")
    definitions = _load_defs()
    schedule = definitions.resolve_schedule_def("sim_search_daily_schedule")
    repository = definitions.get_repository_def()
    with dg.instance_for_test() as instance, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=dt.datetime(2024, 3, 5, 4, 0, tzinfo=dt.timezone.utc), repository_def=repository)
        requests = schedule.evaluate_tick(context).run_requests
    assert sorted(r.partition_key for r in requests) == [
        f"2024-03-0{d}|{p}" for d in (2, 3, 4) for p in ("crossref", "openalex")
    ]
    assert {r.tags[FETCH_TAG] for r in requests} == {FETCH_LIVE}
    # Dagster 1.13 itself tags multi-partition runs `dagster/partition/<dimension>` and then warns about those
    # keys (filtered in saved_searches.py); nothing else may warn, as run_request_for_partition did.
    assert [str(w.message) for w in caught if "dagster/partition/" not in str(w.message)] == []


def test_trailing_window_starts_no_earlier_than_the_search(pipeline_env):
    definitions = _load_defs()  # start_date 2024-01-01, default window 30 days
    schedule = definitions.resolve_schedule_def("sim_search_daily_schedule")
    repository = definitions.get_repository_def()
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=dt.datetime(2024, 1, 3, 4, 0, tzinfo=dt.timezone.utc), repository_def=repository)
        requests = schedule.evaluate_tick(context).run_requests
    assert sorted({r.partition_key.split("|")[0] for r in requests}) == ["2024-01-01", "2024-01-02"]
