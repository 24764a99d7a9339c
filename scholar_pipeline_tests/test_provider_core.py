"""CORE: the request for a day, offset paging and scrolling past 10,000, the required Bearer key, the simulated API.

The page under data/documented_shapes/core is written from the documented fields (see the
README there), not recorded: no recorded CORE v3 answer could be found.
"""

import datetime as dt
import json
from pathlib import Path

import httpx
import pytest

from scholar_pipeline.client.provider_client import RetryableResponse, RetryPolicy
from scholar_pipeline.landing import LandingZone
from scholar_pipeline.normalize import normalize_page_checked
from scholar_pipeline.providers import PROVIDERS, core
from scholar_pipeline.providers.base import MalformedPage, RecordError
from scholar_pipeline.queries import SavedSearch
from scholar_pipeline.settings import provider_settings
from scholar_pipeline.simulator import Corpus, ProviderSimulator
from scholar_pipeline.simulator import core as simulated_core
from scholar_pipeline_tests.helpers import files_containing, home, materialization, materialize, query_db, step_failure

CORE = PROVIDERS["core"]
DAY = dt.date(2024, 3, 1)
SEARCH = SavedSearch(name="core_search", text="large language model evaluation", providers=["core"], start_date=dt.date(2024, 1, 1))
SHAPE = Path(__file__).parent / "data" / "documented_shapes" / "core" / "search_works_limit3.json"
KEY = "core-test-key-0123456789abcdef"


@pytest.fixture
def simulator():
    with ProviderSimulator(corpus=Corpus(seed=11, min_per_day=120, max_per_day=240), rate_limits={"core": 100}) as sim:
        yield sim


@pytest.fixture
def core_env(pipeline_env, simulator, monkeypatch):
    monkeypatch.setenv("CORE_API_KEY", KEY)
    monkeypatch.setenv("SCHOLAR_PIPELINE_CORE_RATE_LIMIT", "50")
    monkeypatch.setenv("SCHOLAR_PIPELINE_CORE_PAGE_SIZE", "7")
    return pipeline_env


def _page(total: int, ids: list[int], scroll_id: str | None = None) -> bytes:
    return json.dumps({"totalHits": total, "limit": 2, "offset": 0, "scrollId": scroll_id, "results": [{"id": i} for i in ids]}).encode()


def test_first_request_holds_a_half_open_published_date_window_and_the_defaults_are_cautious():
    request = CORE.first_request("COVID-19 OR soil", DAY, 500, None)
    assert request.path == "/search/works/"  # without the slash CORE answers 301
    assert request.param("q") == '("COVID 19" OR soil) AND publishedDate>=2024-03-01 AND publishedDate<2024-03-02'
    assert (request.param("limit"), request.param("offset")) == ("100", "0")
    assert CORE.first_request("soil microbiome", DAY, 5, None).param("q").startswith("(soil AND microbiome) AND publishedDate")
    settings = provider_settings("core", CORE.defaults, {})
    assert settings.rate_limit == pytest.approx(10 / 60) and settings.max_retry_wait == 900
    assert provider_settings("core", CORE.defaults, {"SCHOLAR_PIPELINE_CORE_MAX_RETRY_WAIT": "30"}).max_retry_wait == 30


def test_offset_paging_and_its_refusals():
    first = CORE.first_request("soil", DAY, 2, None)
    info = CORE.inspect(first, _page(5, [1, 2]))
    assert (info.records, info.total, info.next_request.param("offset")) == (2, 5, "2")
    assert CORE.inspect(first.with_param("offset", "4"), _page(5, [5])).next_request is None
    with pytest.raises(MalformedPage, match="1 of 2 records at offset 2 although it reports totalHits=9"):
        CORE.inspect(first.with_param("offset", "2"), _page(9, [3]))
    with pytest.raises(MalformedPage, match="Invalid or missing API key"):
        CORE.inspect(first, json.dumps({"message": "Invalid or missing API key"}).encode())


def test_a_day_beyond_the_offset_ceiling_is_scrolled_from_the_start():
    first = CORE.first_request("soil", DAY, 2, None)
    probe = CORE.inspect(first, _page(10_001, [1, 2]))
    assert probe.superseded and probe.records == 0  # its records come again in the scroll
    scroll = probe.next_request
    assert scroll.param("scroll") == "true" and scroll.param("offset") is None
    second = CORE.inspect(scroll, _page(10_001, [1, 2], scroll_id="abc"))
    assert second.records == 2 and second.next_request.param("scrollId") == "abc" and second.next_request.received == 2
    with pytest.raises(MalformedPage, match="no scrollId at record 4 of 10001"):
        CORE.inspect(second.next_request, _page(10_001, [3, 4]))


def test_a_day_whose_last_page_would_pass_the_ceiling_is_scrolled(monkeypatch):
    """With pages of 30, offset 9990 + limit 30 passes 10,000: a day of 9,991 records is scrolled, one of 9,990 is not."""
    first = CORE.first_request("soil", DAY, 30, None)
    assert CORE.inspect(first, _page(9_991, list(range(30)))).superseded
    assert not CORE.inspect(first, _page(9_990, list(range(30)))).superseded


def test_documented_shape_normalizes_with_its_values():
    page = normalize_page_checked("core", SHAPE.read_bytes())
    rows = {r["provider_id"]: r for r in page.table.to_pylist()}
    assert page.problems == () and len(rows) == 3
    first = rows["153371948"]
    assert first["doi"] == "10.1038/s41467-024-46612-3"
    assert first["title"] == "Soil microbiome & drought: a multi-site study"  # entity decoded, <i> gone without a space
    assert first["abstract"] == "We sampled 40 sites. Richness fell where rainfall < 300 mm (p < 0.05)."
    assert [a["name"] for a in first["authors"]] == ["José García", "Hiroshi Ito", "ATLAS Collaboration"]
    assert (first["publication_date"], first["publication_date_precision"]) == (DAY.replace(day=16), "day")
    assert (first["venue"], first["language"], first["cited_by_count"]) == ("Nature Communications", "en", 12)
    assert first["is_oa"] is True and first["oa_url"] == "https://core.ac.uk/download/153371948.pdf"
    assert first["url"] == "https://core.ac.uk/works/153371948"
    preprint = rows["160002231"]
    assert preprint["doi"] == "10.48550/arxiv.2403.10101" and preprint["abstract"] is None and preprint["venue"] is None
    thesis = rows["160110007"]
    assert (thesis["publication_date"], thesis["publication_date_precision"]) == (dt.date(2024, 1, 1), "year")  # yearPublished only
    assert thesis["doi"] is None and thesis["cited_by_count"] == 0
    assert thesis["is_oa"] is None and thesis["oa_url"] is None  # metadata only: not known to be open


def test_the_wait_core_asks_for_after_a_429_is_honoured_up_to_the_cap():
    response = httpx.Response(429, headers={"X-RateLimit-Retry-After": "42"})
    state = type("State", (), {"outcome": type("Outcome", (), {"exception": lambda self: RetryableResponse(response)})(), "attempt_number": 1})()
    assert RetryPolicy(max_wait_seconds=900).wait(state) == 42
    assert RetryPolicy(max_wait_seconds=10).wait(state) == 10


def test_partition_lands_exactly_the_simulators_records_over_several_pages(core_env, simulator):
    result = materialize(str(DAY), "core", SEARCH)
    assert result.success
    expected = simulator.apis["core"].record_ids(DAY, DAY, SEARCH.text)
    landed = [r[0] for r in query_db("SELECT provider_id FROM works WHERE provider = 'core'")]
    assert len(expected) > 14 and sorted(landed) == sorted(expected)
    requests = simulator.requests_for("core")
    assert [r.params["offset"][0] for r in requests] == [str(n) for n in range(0, len(expected), 7)]
    assert all(r.headers.get("Authorization") == f"Bearer {KEY}" and r.status == 200 for r in requests)
    assert files_containing(home(), KEY.encode()) == [] and KEY not in repr(result.all_events)
    assert 0 < query_db("SELECT count(*) FROM works WHERE is_oa IS NULL AND oa_url IS NULL")[0][0] < len(expected)
    assert query_db("SELECT count(*) FROM works WHERE title LIKE '%<i>%' OR abstract LIKE '%<p>%'") == [(0,)]


def test_a_day_past_the_offset_ceiling_lands_whole_by_scrolling(core_env, simulator, monkeypatch):
    monkeypatch.setattr(core, "OFFSET_CEILING", 20)
    monkeypatch.setattr(simulated_core, "OFFSET_CEILING", 20)
    result = materialize(str(DAY), "core", SEARCH)
    expected = simulator.apis["core"].record_ids(DAY, DAY, SEARCH.text)
    assert sorted(r[0] for r in query_db("SELECT provider_id FROM works")) == sorted(expected)
    requests = simulator.requests_for("core")
    assert "scroll" not in requests[0].params and requests[1].params["scroll"] == ["true"] and "scrollId" not in requests[1].params
    assert all("scrollId" in r.params for r in requests[2:]) and len(requests) == 1 + -(-len(expected) // 7)
    event = materialization(result, "core_search", "raw")
    manifest = LandingZone(home() / "landing").read_manifest(Path(event.metadata["manifest"].value))
    assert [p.holds_records for p in manifest.pages] == [False] + [True] * (len(manifest.pages) - 1)
    assert [p.superseded for p in manifest.pages] == [True] + [False] * (len(manifest.pages) - 1)
    assert manifest.records == len(expected) == manifest.total_reported  # the probe page is not counted twice
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks["matches_provider_total"] and checks["no_records_lost"]


def test_without_a_key_the_partition_fails_at_once_saying_how_to_set_it(pipeline_env, simulator):
    failed = materialize(str(DAY), "core", SEARCH, raise_on_error=False)
    message = step_failure(failed)
    assert "core / saved search 'core_search' / 2024-03-01" in message and "CORE_API_KEY is not set" in message
    assert "https://core.ac.uk/services/api" in message
    assert simulator.requests_for("core") == [] and not (home() / "scholar.duckdb").exists()


def test_simulator_wants_a_bearer_key_and_caps_limit_and_offset(simulator):
    url = simulator.base_url("core") + "/search/works/"
    q = "soil AND publishedDate>=2024-03-01 AND publishedDate<2024-03-02"
    bearer = {"Authorization": f"Bearer {KEY}"}
    assert httpx.get(url, params={"q": q}).status_code == 401
    page = httpx.get(url, params={"q": q, "limit": "5"}, headers=bearer).json()
    assert page["totalHits"] == len(simulator.apis["core"].record_ids(DAY, DAY, "soil")) and len(page["results"]) == 5
    assert all(r["publishedDate"] == "2024-03-01T00:00:00" and isinstance(r["id"], int) for r in page["results"])
    assert httpx.get(url, params={"q": q, "limit": "200"}, headers=bearer).status_code == 504
    assert httpx.get(url, params={"q": q, "limit": "100", "offset": "9950"}, headers=bearer).status_code == 400


def test_simulator_answers_429_with_coress_headers():
    with ProviderSimulator() as sim, httpx.Client() as client:  # the default: 10 a minute
        url = sim.base_url("core") + "/search/works/"
        q = "soil AND publishedDate>=2024-03-01 AND publishedDate<2024-03-02"
        statuses = [client.get(url, params={"q": q}, headers={"Authorization": f"Bearer {KEY}"}) for _ in range(2)]
    assert [r.status_code for r in statuses] == [200, 429]
    assert statuses[1].headers["X-RateLimitRemaining"] == "0" and float(statuses[1].headers["X-RateLimit-Retry-After"]) > 0


def test_a_record_without_a_numeric_id_fails_its_page_by_name():
    page = json.loads(SHAPE.read_bytes())
    page["results"][1]["id"] = "core:160002231"
    with pytest.raises(RecordError, match=r"core record #1 \(results\[1\]\) has `id` 'core:160002231', not a usable core id"):
        normalize_page_checked("core", json.dumps(page).encode())
