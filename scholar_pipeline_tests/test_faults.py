"""Faults injected on the wire by the simulator (`--faults SPEC`): transient ones are retried and land exactly the clean
result; permanent ones fail the partition by name, land nothing and leave the answer in the quarantine."""

import datetime as dt
import json
import shutil
import subprocess
import sys

import dagster as dg
import httpx
import pytest

from scholar_pipeline.defs.resources import ScholarApiResource, warehouse_from_env
from scholar_pipeline.defs.saved_searches import build_saved_search_assets
from scholar_pipeline.simulator import Corpus, ProviderSimulator
from scholar_pipeline.simulator.faults import FaultRule, parse_faults
from scholar_pipeline_tests.helpers import SEARCH, home, materialize, nothing_landed, query_db, step_failure

DAY = "2024-03-01"
CORPUS = dict(seed=11, min_per_day=120, max_per_day=240)
# Those that reach the provider's handler first: with a cursor that moves on each use (Crossref), they are the hard ones.
TRANSIENT = ["reset", "truncate", "slow", "429", "429-retry-after", "500", "502", "503", "504"]


def _landed(provider: str) -> tuple[list[tuple], str]:
    rows = query_db("SELECT provider_id, record_hash FROM works WHERE provider = ? ORDER BY ALL", [provider])
    (output_hash,) = query_db("SELECT output_hash FROM provenance WHERE provider = ? ORDER BY landed_at DESC LIMIT 1", [provider])[0]
    return rows, output_hash


def test_spec_is_parsed_or_refused_with_what_is_allowed():
    assert parse_faults("crossref:503@2x3, *:reset, openalex:429-retry-after@4x*", frozenset({"crossref", "openalex"})) == [
        FaultRule("crossref", "503", 2, 3), FaultRule("*", "reset", 1, 1), FaultRule("openalex", "429-retry-after", 4, None)]
    assert parse_faults("crossref:503x2,crossref:429-retry-afterx3", frozenset({"crossref"})) == [
        FaultRule("crossref", "503", 1, 2), FaultRule("crossref", "429-retry-after", 1, 3)]
    for spec, message in [("crossref", "PROVIDER:FAULT"), ("nope:503", "unknown provider 'nope'"), ("crossref:418", "unknown fault '418'"),
                          ("crossref:503@0", "PROVIDER:FAULT")]:
        with pytest.raises(ValueError, match=message):
            parse_faults(spec, frozenset({"crossref"}))
    refused = subprocess.run([sys.executable, "-m", "scholar_pipeline.simulator", "--faults", "crossref:teapot"],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "unknown fault 'teapot'" in refused.stderr


def _quarantined(provider: str) -> list[dict]:
    """The notes of the answers kept in the landing zone's quarantine, oldest first."""
    return [json.loads(p.read_text()) for p in sorted((home() / "landing" / "quarantine").glob(f"*/{provider}/*/*.json"))]


def _clean_then_faulty(provider: str, spec: str, monkeypatch, checks_pass: bool = True) -> tuple[tuple, tuple, list, object]:
    """The partition landed from a clean simulator, then afresh (no DuckDB, no HTTP cache) from one with faults."""
    monkeypatch.setenv(f"SCHOLAR_PIPELINE_{provider.upper()}_PAGE_SIZE", "8")  # more pages than faults
    monkeypatch.setenv("SCHOLAR_PIPELINE_CROSSREF_RATE_LIMIT", "50")
    with ProviderSimulator(corpus=Corpus(**CORPUS)) as clean:
        monkeypatch.setenv(f"SCHOLAR_PIPELINE_{provider.upper()}_BASE_URL", clean.base_url(provider))
        assert materialize(DAY, provider).success
    expected = _landed(provider)
    (home() / "scholar.duckdb").unlink()
    shutil.rmtree(home() / "cache")
    with ProviderSimulator(corpus=Corpus(**CORPUS), faults=spec) as faulty:
        monkeypatch.setenv(f"SCHOLAR_PIPELINE_{provider.upper()}_BASE_URL", faulty.base_url(provider))
        result = materialize(DAY, provider)
        requests = faulty.requests_for(provider)
    assert result.success
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert all(checks.values()) or not checks_pass, checks
    return expected, _landed(provider), requests, result


def test_every_transient_fault_is_retried_and_lands_exactly_the_clean_result(pipeline_env, monkeypatch):
    """OpenAlex's cursor encodes its place: each page's first attempt fails, with every transient fault in turn."""
    spec = ",".join(f"openalex:{fault}@{2 * n + 1}" for n, fault in enumerate(TRANSIENT))
    expected, landed, requests, _ = _clean_then_faulty("openalex", spec, monkeypatch)
    faults = [r.fault for r in requests]
    assert faults[0:2 * len(TRANSIENT):2] == TRANSIENT and not any(faults[1::2])  # every fault met (all but the slow body retried)
    assert landed == expected


def test_rate_limiting_on_every_page_of_a_moving_cursor_is_retried_in_place(pipeline_env, monkeypatch):
    """A 429 is refused before any work, so Crossref's cursor did not move: the retry is the same page."""
    spec = ",".join(f"crossref:{('429', '429-retry-after')[n % 2]}@{2 * n + 1}" for n in range(6))
    expected, landed, requests, _ = _clean_then_faulty("crossref", spec, monkeypatch)
    assert landed == expected and sum(r.params["cursor"] == ["*"] for r in requests) == 2  # the first page and its retry


@pytest.mark.parametrize("fault", ["reset", "truncate", "503"])
def test_a_failure_that_may_have_moved_crossrefs_cursor_restarts_the_chain(pipeline_env, monkeypatch, fault):
    """The failed request reached Crossref, which moved the scroll on: its retry would get the page after the one asked
    for and drop a page silently. The whole chain is fetched again instead, and lands exactly the clean result."""
    expected, landed, requests, _ = _clean_then_faulty("crossref", f"crossref:{fault}@3", monkeypatch)
    assert landed == expected
    assert [r.fault for r in requests].count(fault) == 1 and sum(r.params["cursor"] == ["*"] for r in requests) == 2  # restarted once


@pytest.mark.parametrize("provider, fault", [("openalex", "html"), ("openalex", "malformed"), ("openalex", "empty-page"),
                                             ("crossref", "malformed"), ("crossref", "empty-page")])
def test_an_unusable_page_is_asked_for_again_kept_in_quarantine_and_lands_the_clean_result(pipeline_env, monkeypatch, provider, fault):
    """A 200 that is not the wire format, or an empty page before the reported total: asked for again (Crossref, whose
    cursor a second request would move on, from the first page), the refused answer kept for diagnosis."""
    expected, landed, requests, _ = _clean_then_faulty(provider, f"{provider}:{fault}@2", monkeypatch)
    assert landed == expected
    (note,) = _quarantined(provider)
    assert note["page"] == 2 and note["status"] == 200 and note["url"].startswith("http://127.0.0.1")
    body = (home() / "landing" / "quarantine").glob(f"*/{provider}/{DAY}/*-page2.body")
    assert [len(b.read_bytes()) for b in body] == [note["bytes"]]
    if provider == "crossref":
        assert sum(r.params["cursor"] == ["*"] for r in requests) == 2  # restarted once
    else:
        assert requests[1].params == requests[2].params and requests[1].fault == fault  # the same page, asked again


@pytest.mark.parametrize("fault, cause", [("html", "not JSON"), ("malformed", "not JSON")])
def test_a_page_unusable_on_every_attempt_fails_the_partition_by_name_and_lands_nothing(pipeline_env, monkeypatch, fault, cause):
    with ProviderSimulator(corpus=Corpus(**CORPUS), faults=f"openalex:{fault}@2x*") as sim:
        monkeypatch.setenv("SCHOLAR_PIPELINE_OPENALEX_BASE_URL", sim.base_url("openalex"))
        failed = materialize(DAY, "openalex", raise_on_error=False)
        requests = sim.requests_for("openalex")
    message = step_failure(failed)
    assert not failed.success
    assert "openalex / saved search 'sim_search' / 2024-03-01: page 2 is unusable after 3 attempts" in message and cause in message
    assert "URL: http://127.0.0.1" in message and "a rerun asks the provider again" in message
    assert "quarantine/sim_search/openalex/2024-03-01/" in message
    assert [r.fault for r in requests] == [None, fault, fault, fault]
    assert [n["page"] for n in _quarantined("openalex")] == [2, 2, 2] and all(cause in n["cause"] for n in _quarantined("openalex"))
    assert nothing_landed()


def test_an_empty_page_on_every_attempt_is_taken_as_the_end_and_the_shortfall_fails_its_check_as_an_error(pipeline_env, monkeypatch):
    """The provider's considered answer, asked three times: what did come lands, and the check says what is missing."""
    with ProviderSimulator(corpus=Corpus(**CORPUS), faults="openalex:empty-page@2x*") as sim:
        monkeypatch.setenv("SCHOLAR_PIPELINE_OPENALEX_BASE_URL", sim.base_url("openalex"))
        result = materialize(DAY, "openalex")
        requests = sim.requests_for("openalex")
    (check,) = [c for c in result.get_asset_check_evaluations() if c.check_name == "matches_provider_total"]
    assert result.success and [r.fault for r in requests] == [None, "empty-page", "empty-page", "empty-page"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert check.metadata["records_fetched"].value == len(_landed("openalex")[0]) == 25  # the first page's
    assert check.metadata["totals_reported"].value[0] > 25 and len(_quarantined("openalex")) == 2


def test_a_refused_request_fails_at_once_and_keeps_the_providers_answer(pipeline_env, monkeypatch):
    """A 4xx other than 429 is the provider saying no (here Springer's 403 for a page above the Basic plan's 25): never
    retried, the error says what to do, and the answer is kept."""
    monkeypatch.setenv("SPRINGER_NATURE_API_KEY", "springer-test-key-0123456789")
    monkeypatch.setenv("SCHOLAR_PIPELINE_SPRINGER_PAGE_SIZE", "50")
    search = SEARCH.model_copy(update={"providers": ["springer"]})
    failed = materialize(DAY, "springer", search=search, raise_on_error=False)
    message = step_failure(failed)
    assert "springer / saved search 'sim_search' / 2024-03-01: page 1: springer request failed: HTTP 403" in message
    assert "SCHOLAR_PIPELINE_SPRINGER_PAGE_SIZE" in message and "The answer is kept in " in message
    (note,) = _quarantined("springer")
    assert note["status"] == 403 and "premium" in next((home() / "landing" / "quarantine").rglob("*.body")).read_text().lower()
    assert nothing_landed()


def test_an_expired_cursor_restarts_the_chain_and_lands_the_clean_result(pipeline_env, monkeypatch):
    """Crossref's scroll expires five minutes after its last use; the chain is fetched again from its first page."""
    expected, landed, requests, _ = _clean_then_faulty("crossref", "crossref:expired-cursor@3", monkeypatch)
    assert landed == expected
    assert [r.status for r in requests][:4] == [200, 200, 400, 200] and requests[3].params["cursor"] == ["*"]


@pytest.mark.parametrize("fault", ["new-fields", "missing-fields", "wrong-types"])
def test_records_that_drift_still_land_with_what_they_hold(pipeline_env, monkeypatch, fault):
    """Unknown fields are ignored, a missing optional field is NULL, a value of another type is NULL and reported."""
    expected, landed, _, result = _clean_then_faulty("openalex", f"openalex:{fault}x*", monkeypatch, checks_pass=False)
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert [row[0] for row in landed[0]] == [row[0] for row in expected[0]]  # the same records
    abstracts = query_db("SELECT count(*) FILTER (WHERE abstract IS NOT NULL) FROM works")[0][0]
    if fault == "new-fields":
        assert landed == expected and checks["values_well_typed"].passed
    elif fault == "missing-fields":
        assert abstracts == 0 and checks["values_well_typed"].passed
    else:
        repaired = checks["values_well_typed"].metadata["values_repaired"].value
        assert not checks["values_well_typed"].passed and repaired == len(landed[0]) and abstracts > 0


def test_a_stalled_answer_is_ended_by_the_read_timeout_and_retried_by_the_pipeline(pipeline_env, monkeypatch):
    with ProviderSimulator(corpus=Corpus(**CORPUS), faults="openalex:stall@2", stall_seconds=3) as sim:
        monkeypatch.setenv("SCHOLAR_PIPELINE_OPENALEX_BASE_URL", sim.base_url("openalex"))
        impatient = ScholarApiResource(home=str(home()), timeout_seconds=1.0, backoff_seconds=0.1)
        result = dg.materialize(build_saved_search_assets(SEARCH), partition_key=dg.MultiPartitionKey({"date": DAY, "provider": "openalex"}),
                                resources={"scholar_api": impatient, "warehouse": warehouse_from_env()})
        requests = sim.requests_for("openalex")
    assert result.success
    assert [r.fault for r in requests[:3]] == [None, "stall", None] and requests[1].params == requests[2].params
    expected = sim.apis["openalex"].record_ids(dt.date.fromisoformat(DAY), dt.date.fromisoformat(DAY), SEARCH.text)
    assert sorted(row[0] for row in _landed("openalex")[0]) == sorted(expected)


def test_a_stalled_answer_times_out_and_is_retried(tmp_path):
    with ProviderSimulator(corpus=Corpus(**CORPUS), faults="openalex:stall", stall_seconds=3) as sim, httpx.Client() as client:
        url = sim.base_url("openalex") + "/works"
        with pytest.raises(httpx.ReadTimeout):
            client.get(url, params={"filter": "from_publication_date:2024-03-01,to_publication_date:2024-03-01"}, timeout=0.5)
        answered = client.get(url, params={"filter": "from_publication_date:2024-03-01,to_publication_date:2024-03-01"}, timeout=5)
    assert answered.status_code == 200 and [r.fault for r in sim.requests_for("openalex")] == ["stall", None]
