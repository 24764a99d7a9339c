"""A partition, end to end through the Dagster assets, against the provider simulator."""

import datetime as dt
import gzip
import hashlib
import json

import shutil

import dagster as dg
import httpx
import pytest

from scholar_pipeline.defs.works_checks import ALL_CHECKS
from scholar_pipeline.landing import LandingZone, partition_input_hash
from scholar_pipeline.simulator import Corpus
from scholar_pipeline_tests.helpers import SEARCH, evict_cached_page, files_containing, home, materialization, materialize, query_db, recorded_manifest

DAY = "2024-03-01"


@pytest.mark.parametrize("provider", ["openalex", "crossref"])
def test_partition_lands_exactly_the_simulators_records(pipeline_env, simulator, provider):
    result = materialize(DAY, provider)
    assert result.success
    expected = simulator.apis[provider].record_ids(dt.date(2024, 3, 1), dt.date(2024, 3, 1), SEARCH.text)
    landed = [r[0] for r in query_db("SELECT provider_id FROM works WHERE provider = ? AND partition_date = ?", [provider, DAY])]
    assert len(expected) > 3 * 25  # several pages at the test page sizes (25 and 20)
    assert sorted(landed) == sorted(expected)  # none lost at page boundaries, none twice
    pages = query_db("SELECT pages FROM provenance WHERE provider = ?", [provider])[0][0]
    assert pages > 3
    # The search text and the day reached the provider.
    first = simulator.requests_for(provider)[0].params
    assert DAY in first["filter"][0] and ("large language model evaluation" in json.dumps(first))


@pytest.mark.parametrize("provider", ["openalex", "crossref"])
def test_rerun_replaces_partition_rows_and_warm_rerun_sends_nothing(pipeline_env, simulator, provider):
    materialize(DAY, provider)
    materialize("2024-03-02", provider)
    rows_before = query_db("SELECT partition_date, count(*), sum(hash(record_hash)) FROM works GROUP BY 1 ORDER BY 1")
    requests_before = len(simulator.requests_for(provider))

    rerun = materialize(DAY, provider)

    assert len(simulator.requests_for(provider)) == requests_before  # every page came from the cache
    assert query_db("SELECT partition_date, count(*), sum(hash(record_hash)) FROM works GROUP BY 1 ORDER BY 1") == rows_before
    raw_event = materialization(rerun, "sim_search", "raw")
    assert raw_event.metadata["cache_hits"].value == raw_event.metadata["pages"].value
    provenance = query_db("SELECT cache_hits, output_hash FROM provenance WHERE partition_date = ? ORDER BY landed_at", [DAY])
    assert len(provenance) == 2 and provenance[0][0] == 0 and provenance[1][0] > 0
    assert provenance[0][1] == provenance[1][1]  # same rows, same output hash


def test_landing_zone_keeps_pages_byte_exact_and_hashes_them(pipeline_env, simulator):
    result = materialize(DAY, "openalex")
    landing = LandingZone(home() / "landing")
    manifest = recorded_manifest(result)
    assert manifest.records == len(simulator.apis["openalex"].record_ids(dt.date(2024, 3, 1), dt.date(2024, 3, 1), SEARCH.text))
    for page in manifest.pages:
        stored = gzip.decompress(landing.page_path(page.sha256).read_bytes())
        assert hashlib.sha256(stored).hexdigest() == page.sha256
        again = json.loads(httpx.get(page.url).content)  # what the provider serves for that URL...
        assert json.loads(stored)["results"] == again["results"]  # ...all but its timing and cost fields
    assert manifest.input_hash == partition_input_hash([p.sha256 for p in manifest.pages])
    # The raw asset's data version is the hash of what the records say.
    event = materialization(result, "sim_search", "raw")
    assert event.tags["dagster/data_version"] == manifest.content_hash
    assert manifest.content_hash == query_db("SELECT output_hash FROM provenance")[0][0]  # no duplicates in this partition


def test_provenance_and_metadata_describe_the_landed_rows(pipeline_env, simulator):
    result = materialize(DAY, "crossref")
    works_event = materialization(result, "sim_search", "works")
    hashes = sorted(r[0] for r in query_db("SELECT record_hash FROM works"))
    output_hash = hashlib.sha256("\n".join(hashes).encode()).hexdigest()
    assert works_event.metadata["output_hash"].value == output_hash
    assert works_event.metadata["dagster/row_count"].value == len(hashes)
    assert "| title |" in works_event.metadata["preview"].value
    (row,) = query_db("SELECT query, provider, partition_date, pages, records_fetched, rows_landed, output_hash, "
                      "len(request_urls), len(page_sha256), schema_version FROM provenance")
    assert row[:3] == ("sim_search", "crossref", dt.date(2024, 3, 1))
    assert row[4] == row[5] == len(hashes) and row[6] == output_hash and row[7] == row[8] == row[3]
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == dict.fromkeys(ALL_CHECKS, True)
    # Every landed row points at the raw page it came from.
    pages = set(query_db("SELECT unnest(page_sha256) FROM provenance"))
    assert set(query_db("SELECT DISTINCT raw_page_sha256 FROM works")) <= pages


def test_api_key_reaches_the_provider_but_is_stored_nowhere(pipeline_env, simulator, monkeypatch):
    monkeypatch.setenv("OPENALEX_API_KEY", "sk-test-0123456789")
    with dg.instance_for_test() as instance:
        result = materialize(DAY, "openalex", instance=instance)
        assert all(r.params.get("api_key") == ["sk-test-0123456789"] for r in simulator.requests_for("openalex"))
        events = [e.to_json() if hasattr(e, "to_json") else str(e) for e in instance.all_logs(result.run_id)]
    assert not any("sk-test-0123456789" in e for e in events)
    assert files_containing(home(), b"sk-test-0123456789") == []


def test_failed_request_names_provider_search_partition_and_url(pipeline_env, simulator, monkeypatch):
    monkeypatch.setenv("SCHOLAR_PIPELINE_OPENALEX_BASE_URL", simulator.base_url("nowhere"))
    monkeypatch.setenv("OPENALEX_API_KEY", "sk-never-shown-anywhere")
    result = materialize(DAY, "openalex", raise_on_error=False)
    assert not result.success
    failure = result.get_step_failure_events()[0].event_specific_data.error
    message = failure.to_string()
    assert "openalex" in message and "sim_search" in message and DAY in message
    assert "HTTP 404" in message and "/nowhere/works" in message and "SCHOLAR_PIPELINE_OPENALEX_BASE_URL" in message
    assert "sk-never-shown-anywhere" not in message


def test_partly_cached_crossref_chain_is_fetched_again_from_the_start(pipeline_env, simulator):
    """Crossref's cursor is server-side state: cached pages 1-2 followed by a live page 3 would skip records."""
    manifest = recorded_manifest(materialize(DAY, "crossref"))
    assert len(manifest.pages) > 3
    evict_cached_page(manifest, 3)

    materialize(DAY, "crossref")

    expected = simulator.apis["crossref"].record_ids(dt.date(2024, 3, 1), dt.date(2024, 3, 1), SEARCH.text)
    assert sorted(r[0] for r in query_db("SELECT provider_id FROM works")) == sorted(expected)
    (cache_hits,) = query_db("SELECT cache_hits FROM provenance ORDER BY landed_at DESC LIMIT 1")[0]
    assert cache_hits == 0  # the whole chain came from the provider


def test_data_versions_change_only_when_the_providers_answer_changes(pipeline_env, simulator):
    """The raw data version is the input hash, so `works` (versioned from it by Dagster) moves only with the data."""
    def versions(instance) -> tuple[str, str]:
        result = materialize(DAY, "openalex", instance=instance)
        return tuple(materialization(result, "sim_search", name).tags["dagster/data_version"] for name in ("raw", "works"))

    with dg.instance_for_test() as instance:
        first = versions(instance)
        shutil.rmtree(home() / "cache")  # a live re-fetch, not a cache replay
        same_answer = versions(instance)
        simulator.apis["openalex"].corpus = Corpus(seed=99, min_per_day=120, max_per_day=240)
        shutil.rmtree(home() / "cache")
        new_answer = versions(instance)
    assert same_answer == first
    assert new_answer[0] != first[0] and new_answer[1] != first[1]


def test_partition_over_the_record_cap_fails_instead_of_paging_forever(pipeline_env, simulator, monkeypatch):
    monkeypatch.setenv("SCHOLAR_PIPELINE_CROSSREF_MAX_RECORDS", "50")
    result = materialize(DAY, "crossref", raise_on_error=False)
    assert not result.success
    message = result.get_step_failure_events()[0].event_specific_data.error.to_string()
    assert "more than 50 records" in message and "SCHOLAR_PIPELINE_CROSSREF_MAX_RECORDS" in message
    assert len(simulator.requests_for("crossref")) == 1  # stopped at the first page, whose total is over the cap
