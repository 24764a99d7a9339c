"""PubMed through the pipeline and the simulator: esearch on the history server, efetch batches, the 10,000 cap, NCBI's errors."""

import datetime as dt
from pathlib import Path

import httpx
import pytest
from lxml import etree

from scholar_pipeline.landing import LandingZone
from scholar_pipeline.providers import PROVIDERS
from scholar_pipeline.providers.base import MalformedPage
from scholar_pipeline.providers.pubmed import EfetchRequest
from scholar_pipeline.queries import SavedSearch
from scholar_pipeline.simulator import Corpus, ProviderSimulator
from scholar_pipeline_tests.conftest import real_response
from scholar_pipeline_tests.helpers import home, materialization, materialize, query_db

PUBMED = PROVIDERS["pubmed"]
DAY = "2024-03-01"
SEARCH = SavedSearch(name="pubmed_search", text="large language model evaluation", providers=["pubmed"], start_date=dt.date(2024, 1, 1))
EFETCH = "pubmed/scholarflux_efetch_anxiety_20ids.xml"


@pytest.fixture
def pubmed_env(pipeline_env, simulator, monkeypatch):
    simulator.rate_limits["pubmed"] = 1000
    monkeypatch.setenv("SCHOLAR_PIPELINE_PUBMED_RATE_LIMIT", "50")
    monkeypatch.setenv("SCHOLAR_PIPELINE_PUBMED_PAGE_SIZE", "40")  # several efetch batches per day
    return pipeline_env


def _failure(result) -> str:
    return result.get_step_failure_events()[0].event_specific_data.error.to_string()


def _landed() -> list[str]:
    database = home() / "scholar.duckdb"
    return [r[0] for r in query_db("SELECT provider_id FROM works WHERE provider = 'pubmed'")] if database.exists() else []


def _manifest(result):
    event = materialization(result, SEARCH.name, "raw")
    return LandingZone(home() / "landing").read_manifest(Path(event.metadata["manifest"].value))


def test_partition_lands_exactly_the_simulators_records_through_the_history_server(pubmed_env, simulator, monkeypatch):
    monkeypatch.setenv("PUBMED_API_KEY", "pubmed-test-key-123")
    result = materialize(DAY, "pubmed", search=SEARCH)
    assert result.success
    day = dt.date.fromisoformat(DAY)
    expected = simulator.apis["pubmed"].record_ids(day, day, SEARCH.text)
    assert sorted(_landed()) == sorted(expected)  # none lost at batch boundaries, none twice
    requests = simulator.requests_for("pubmed")
    search, fetches = requests[0], requests[1:]
    assert search.path == "/pubmed/esearch.fcgi"
    assert {k: v[0] for k, v in search.params.items()} == {
        "db": "pubmed", "term": "large AND language AND model AND evaluation", "datetype": "pdat", "mindate": "2024/03/01",
        "maxdate": "2024/03/01", "usehistory": "y", "retmax": "0", "tool": "scholar-pipeline", "api_key": "pubmed-test-key-123"}
    web_env = next(iter(simulator.apis["pubmed"].history))
    assert len(fetches) == -(-len(expected) // 40) >= 3
    assert all(r.path == "/pubmed/efetch.fcgi" and r.params["WebEnv"] == [web_env] and r.params["query_key"] == ["1"]
               and r.params["retmax"] == ["40"] and r.params["api_key"] == ["pubmed-test-key-123"] for r in fetches)
    assert [r.params["retstart"][0] for r in fetches] == [str(40 * n) for n in range(len(fetches))]
    manifest = _manifest(result)
    assert len(manifest.pages) == 1 + len(fetches) and manifest.total_reported == len(expected)
    assert [p.records for p in manifest.pages][0] == 0  # the esearch page is landed, holds no records
    row = query_db("SELECT count(*), count(DISTINCT publication_date), min(publication_date), count(doi), count(abstract) FROM works")[0]
    assert row[:3] == (len(expected), 1, day) and 0 < row[3] < len(expected) and 0 < row[4] < len(expected)
    assert query_db("SELECT count(*) FROM works WHERE abstract LIKE 'BACKGROUND: %'")[0][0] > 0


def test_a_rate_limit_error_with_status_200_is_asked_again_and_fails_the_partition_only_when_it_persists(pubmed_env, simulator):
    """NCBI may answer a rate-limited request with its JSON error and status 200: refused, kept, asked again."""
    simulator.apis["pubmed"].json_error_with_200 = 3  # every attempt at the first page
    failed = materialize(DAY, "pubmed", search=SEARCH, raise_on_error=False)
    assert not failed.success
    assert "page 1 is unusable after 3 attempts" in _failure(failed) and "API rate limit exceeded" in _failure(failed)
    assert _landed() == [] and len(list((home() / "landing" / "quarantine").rglob("*.body"))) == 3
    simulator.apis["pubmed"].json_error_with_200 = 1  # a passing one: the second attempt lands the partition
    recovered = materialize(DAY, "pubmed", search=SEARCH)
    day = dt.date.fromisoformat(DAY)
    assert recovered.success and sorted(_landed()) == sorted(simulator.apis["pubmed"].record_ids(day, day, SEARCH.text))


# The simulator


def _search(sim: ProviderSimulator, **params) -> httpx.Response:
    query = {"db": "pubmed", "term": "model", "datetype": "pdat", "mindate": "2024/03/01", "maxdate": "2024/03/01", "usehistory": "y"} | params
    return httpx.get(sim.base_url("pubmed") + "/esearch.fcgi", params=query)


def _fetch(sim: ProviderSimulator, **params) -> httpx.Response:
    return httpx.get(sim.base_url("pubmed") + "/efetch.fcgi", params={"db": "pubmed", "retmode": "xml"} | params)


def _tags(root: etree._Element, path: str) -> set[str]:
    return {child.tag for element in root.iterfind(path) for child in element}


def test_simulated_efetch_has_the_recorded_shape():
    with ProviderSimulator(corpus=Corpus(seed=11, min_per_day=120, max_per_day=240), rate_limits={"pubmed": 100}) as sim:
        search = etree.fromstring(_search(sim).content)
        body = _fetch(sim, WebEnv=search.findtext("WebEnv"), query_key=search.findtext("QueryKey"), retmax="200").content
    recorded = real_response(EFETCH)
    assert body.splitlines()[:3] == recorded.splitlines()[:3]  # declaration, DOCTYPE, root
    mine, theirs = etree.fromstring(body), etree.fromstring(recorded)
    for path in ("PubmedArticle", "PubmedArticle/MedlineCitation", "PubmedArticle/MedlineCitation/Article", "PubmedArticle/PubmedData",
                 ".//Author", ".//Journal", ".//JournalIssue", ".//ArticleIdList"):
        assert _tags(mine, path) <= _tags(theirs, path) | {"CollectiveName", "MedlineDate", "Day"}, path
    assert {e.get("IdType") for e in mine.iter("ArticleId")} == {"pubmed", "doi", "pmc"}
    assert mine.find(".//MedlineDate") is not None and mine.find(".//CollectiveName") is not None and mine.find(".//ArticleTitle/i") is not None


def test_simulator_history_server_paging_caps_and_errors():
    day = dt.date(2024, 3, 1)
    with ProviderSimulator(corpus=Corpus(seed=11, min_per_day=120, max_per_day=240), rate_limits={"pubmed": 100}) as sim:
        expected = sim.apis["pubmed"].record_ids(day, day, "model")  # the term `_search` sends
        search = etree.fromstring(_search(sim, retmax="0").content)
        assert int(search.findtext("Count")) == len(expected) and search.find("IdList/Id") is None
        web_env, key = search.findtext("WebEnv"), search.findtext("QueryKey")
        fetched, start = [], 0
        while start < len(expected):
            batch = etree.fromstring(_fetch(sim, WebEnv=web_env, query_key=key, retstart=str(start), retmax="50").content)
            fetched += [p.text for p in batch.iterfind("PubmedArticle/MedlineCitation/PMID")]
            start += 50
        assert fetched == expected
        march = etree.fromstring(_search(sim, mindate="2024/03", maxdate="2024/03").content)
        assert int(march.findtext("Count")) > len(expected)
        unknown = _fetch(sim, WebEnv="MCID_nope", query_key="1")
        assert unknown.status_code == 200 and b"<ERROR>Cannot retrieve history data" in unknown.content
        with pytest.raises(MalformedPage, match="efetch refused the request"):
            PUBMED.inspect(EfetchRequest("/efetch.fcgi", (("retstart", "0"), ("retmax", "20")), count=20), unknown.content)
        too_far = _search(sim, retstart="9999")
        assert b"'retstart' cannot be larger than 9998" in too_far.content
        assert b"<ERROR>Invalid date: mindate=2024/03/01 maxdate=2024/13/01" in _search(sim, maxdate="2024/13/01").content
        assert b"<ERROR>Empty term" in _search(sim, term="").content
        sim.apis["pubmed"].json_error_with_200 = 1
        limited = _search(sim)
        assert limited.status_code == 200 and limited.json()["error"] == "API rate limit exceeded"


def test_simulator_rate_limit_is_ncbis_json_with_429():
    with ProviderSimulator() as sim:  # 3 requests a second
        statuses = [_search(sim) for _ in range(5)]
        limited = [r for r in statuses if r.status_code == 429]
        assert limited and limited[0].json() == {"error": "API rate limit exceeded", "api-key": "127.0.0.1", "count": "4", "limit": "3"}
