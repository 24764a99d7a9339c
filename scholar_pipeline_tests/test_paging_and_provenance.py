"""Paging chains that are one answer, data versions that follow meaning, provenance that tells the truth."""

import datetime as dt
import json

import dagster as dg
import pytest

from scholar_pipeline.defs.partition_runs import FETCH_LIVE, FETCH_TAG
from scholar_pipeline.simulator import Corpus
from scholar_pipeline.landing import LandingZone
from scholar_pipeline_tests.helpers import SEARCH, evict_cached_page, home, materialization, materialize, query_db, recorded_manifest

DAY = "2024-03-01"


def _corpus_ids(simulator, provider: str) -> list[str]:
    return sorted(simulator.apis[provider].record_ids(dt.date(2024, 3, 1), dt.date(2024, 3, 1), SEARCH.text))


def _landed_ids(provider: str) -> list[str]:
    return sorted(r[0] for r in query_db("SELECT provider_id FROM works WHERE provider = ?", [provider]))


def _checks(result) -> dict[str, bool]:
    return {c.check_name: c.passed for c in result.get_asset_check_evaluations()}


@pytest.mark.parametrize("provider", ["openalex", "crossref"])
def test_a_live_first_page_is_followed_by_live_pages_only(pipeline_env, simulator, provider):
    """Page 1 expired, later pages still cached, and the provider's answer changed: land the new answer whole."""
    manifest = recorded_manifest(materialize(DAY, provider))
    assert len(manifest.pages) > 3
    evict_cached_page(manifest, 1)
    simulator.apis[provider].corpus = Corpus(seed=99, min_per_day=120, max_per_day=240)

    result = materialize(DAY, provider)

    assert _landed_ids(provider) == _corpus_ids(simulator, provider)
    assert recorded_manifest(result).records == len(_corpus_ids(simulator, provider))
    assert not any(p.from_cache for p in recorded_manifest(result).pages)
    assert _checks(result)["matches_provider_total"]


def test_totals_that_change_while_paging_fail_the_total_check(pipeline_env, simulator):
    api = simulator.apis["openalex"]
    served = api.routes["/works"]
    calls = []

    def total_differs_on_the_second_page(params):
        response = served(params)
        calls.append(1)
        if len(calls) == 2:
            page = json.loads(response.body)
            page["meta"]["count"] += 7
            response.body = json.dumps(page).encode()
        return response

    api.routes["/works"] = total_differs_on_the_second_page
    result = materialize(DAY, "openalex")
    (check,) = [c for c in result.get_asset_check_evaluations() if c.check_name == "matches_provider_total"]
    assert not check.passed
    assert len(check.metadata["totals_reported"].value) == 2


def test_data_version_ignores_fields_that_change_on_every_call(pipeline_env, simulator):
    """OpenAlex timings and costs, Crossref `indexed`: the bytes differ on every fetch, the records do not."""
    with dg.instance_for_test() as instance:
        runs = [materialize(DAY, "crossref", instance=instance, tags={FETCH_TAG: FETCH_LIVE}) for _ in range(2)]
    first_bytes, second_bytes = (recorded_manifest(r).input_hash for r in runs)
    assert first_bytes != second_bytes  # the bytes differed...
    for asset in ("raw", "works"):  # ...what they say did not, so nothing turns stale
        first, second = (materialization(r, "sim_search", asset).tags["dagster/data_version"] for r in runs)
        assert first == second


def test_works_lands_the_fetch_its_raw_materialization_recorded(pipeline_env, simulator):
    """A newer manifest on disk (another run's fetch of the same partition) must not be cross-wired in."""
    with dg.instance_for_test() as instance:
        result = materialize(DAY, "openalex", instance=instance)
        manifest = recorded_manifest(result)
        partition_dir = home() / "landing" / "manifests" / "sim_search" / "openalex" / DAY
        stray = json.loads(next(partition_dir.glob("*.json")).read_text())
        stray["pages"] = stray["pages"][:1]
        (partition_dir / "99991231T000000000000Z-stray.json").write_text(json.dumps(stray))

        works_only = materialize(DAY, "openalex", instance=instance, selection=[dg.AssetKey(["sim_search", "works"])])

    assert works_only.success
    assert len(_landed_ids("openalex")) == manifest.records
    raw_run_ids = [r[0] for r in query_db("SELECT raw_run_id FROM provenance ORDER BY landed_at")]
    assert raw_run_ids == [result.run_id, result.run_id]


def test_cache_replays_keep_the_time_the_provider_sent_the_page(pipeline_env, simulator):
    materialize(DAY, "crossref")
    first = query_db("SELECT DISTINCT retrieved_at FROM works ORDER BY 1")
    rerun = materialize(DAY, "crossref")
    assert all(p.from_cache for p in recorded_manifest(rerun).pages)
    assert query_db("SELECT DISTINCT retrieved_at FROM works ORDER BY 1") == first
    retrieved = query_db("SELECT retrieved_at FROM provenance ORDER BY landed_at")
    assert retrieved[0] == retrieved[1]



def test_a_live_refetch_collects_a_work_indexed_after_the_first_fetch(pipeline_env, simulator):
    """Monitoring re-fetches recent days live: a work the provider indexed late lands, though the cache still holds the day."""
    api = simulator.apis["openalex"]
    served = api.routes["/works"]
    indexed = {"late": False}

    def late_indexing(params):
        response = served(params)
        if not indexed["late"]:
            page = json.loads(response.body)
            page["results"] = [w for w in page["results"] if not w["id"].endswith("0")]
            response.body = json.dumps(page).encode()
        return response

    api.routes["/works"] = late_indexing
    materialize(DAY, "openalex")
    early = len(_landed_ids("openalex"))
    indexed["late"] = True

    materialize(DAY, "openalex", tags={FETCH_TAG: FETCH_LIVE})

    assert _landed_ids("openalex") == _corpus_ids(simulator, "openalex") and early < len(_corpus_ids(simulator, "openalex"))


def test_a_live_chain_that_stopped_half_way_is_not_replayed_as_a_mix(pipeline_env, simulator, monkeypatch):
    """A live re-fetch of a changed answer dies after page 3 was cached (here: the disk filled up while landing it),
    so pages 1-3 of the new answer and 4.. of the old one sit in the cache: an ordinary rerun must not replay that mix."""
    materialize(DAY, "openalex")
    simulator.apis["openalex"].corpus = Corpus(seed=99, min_per_day=120, max_per_day=240)
    land_page = LandingZone.land_page

    def disk_full_at_page_3(self, number, *args):
        if number == 3:
            raise OSError("No space left on device")
        return land_page(self, number, *args)

    monkeypatch.setattr(LandingZone, "land_page", disk_full_at_page_3)
    assert not materialize(DAY, "openalex", tags={FETCH_TAG: FETCH_LIVE}, raise_on_error=False).success
    monkeypatch.setattr(LandingZone, "land_page", land_page)

    rerun = materialize(DAY, "openalex")  # an ordinary run, cache allowed

    assert _landed_ids("openalex") == _corpus_ids(simulator, "openalex")
    assert not all(p.from_cache for p in recorded_manifest(rerun).pages)
