"""Springer Nature: the request for a day, `s`/`p` paging, the required key and the plan's page size, the simulated API.

The pages under data/documented_shapes/springer are written from the documented record shape
(see the README there), not recorded: no recorded Meta API answer could be found.
"""

import datetime as dt
import json
from pathlib import Path

import httpx
import pytest

from scholar_pipeline.normalize import normalize_page_checked
from scholar_pipeline.providers import PROVIDERS
from scholar_pipeline.providers.base import MalformedPage, PageRequest, SearchTextError
from scholar_pipeline.queries import SavedSearch
from scholar_pipeline.simulator import Corpus, ProviderSimulator
from scholar_pipeline_tests.helpers import files_containing, home, materialize, nothing_landed, query_db, step_failure

SPRINGER = PROVIDERS["springer"]
DAY = dt.date(2024, 3, 1)
SEARCH = SavedSearch(name="springer_search", text="large language model evaluation", providers=["springer"], start_date=dt.date(2024, 1, 1))
SHAPES = Path(__file__).parent / "data" / "documented_shapes" / "springer"
KEY = "springer-test-key-0123456789abcdef"


@pytest.fixture
def simulator():
    """The shared simulator with Springer's 100-a-minute limit lifted, so small pages page quickly."""
    with ProviderSimulator(corpus=Corpus(seed=11, min_per_day=120, max_per_day=240), rate_limits={"springer": 100}) as sim:
        yield sim


@pytest.fixture
def springer_env(pipeline_env, simulator, monkeypatch):
    monkeypatch.setenv("SPRINGER_NATURE_API_KEY", KEY)
    monkeypatch.setenv("SCHOLAR_PIPELINE_SPRINGER_RATE_LIMIT", "50")
    monkeypatch.setenv("SCHOLAR_PIPELINE_SPRINGER_PAGE_SIZE", "4")
    return pipeline_env


def _page(total: int, start: int, dois: list[str]) -> bytes:
    return json.dumps({"result": [{"total": str(total), "start": str(start), "pageLength": "2", "recordsDisplayed": str(len(dois))}],
                       "records": [{"identifier": f"doi:{d}"} for d in dois]}).encode()


def _request(start: int, size: int = 2) -> PageRequest:
    return SPRINGER.first_request("soil", DAY, size, None).with_param("s", str(start))


def test_first_request_puts_the_online_date_window_inside_q_and_keeps_to_the_basic_plan():
    request = SPRINGER.first_request("COVID-19 soil", DAY, SPRINGER.defaults.page_size, None)
    assert request.path == "/meta/v2/json"
    assert request.param("q") == '("COVID 19" AND soil) onlinedatefrom:2024-03-01 onlinedateto:2024-03-01'
    assert (request.param("s"), request.param("p")) == ("1", "25")  # 1-based; 25 a call on the Basic plan
    assert request.param("api_key") is None  # the key is added below the cache, never in a request
    assert SPRINGER.first_request("a OR b", DAY, 500, None).param("q").startswith("(a OR b) onlinedatefrom:")
    assert SPRINGER.first_request("a", DAY, 500, None).param("p") == "100"  # Premium's maximum
    with pytest.raises(SearchTextError):
        SPRINGER.search_terms("soil AND")


def test_paging_moves_s_on_by_the_records_received_and_refuses_short_or_inconsistent_pages():
    info = SPRINGER.inspect(_request(1), _page(5, 1, ["10.1007/a", "10.1007/b"]))
    assert (info.records, info.total, info.next_request.param("s")) == (2, 5, "3")
    assert SPRINGER.inspect(_request(5), _page(5, 5, ["10.1007/e"])).next_request is None  # the last, short page
    assert SPRINGER.inspect(_request(1), _page(0, 1, [])).next_request is None  # nothing that day
    with pytest.raises(MalformedPage, match="1 of 2 records at s=3 although it reports total=9"):
        SPRINGER.inspect(_request(3), _page(9, 3, ["10.1007/c"]))
    with pytest.raises(MalformedPage, match="answered for s=1 when asked for s=3"):
        SPRINGER.inspect(_request(3), _page(9, 1, ["10.1007/a", "10.1007/b"]))
    with pytest.raises(MalformedPage, match="total=2 on a page holding records 2 to 3"):
        SPRINGER.inspect(_request(2), _page(2, 2, ["10.1007/b", "10.1007/c"]))
    error = json.dumps({"status": "Fail", "message": "Invalid parameters found"}).encode()
    with pytest.raises(MalformedPage, match="Invalid parameters found"):
        SPRINGER.inspect(_request(1), error)


def test_documented_record_normalizes_with_its_values():
    """Values as sprynger's test expects them from a live Meta v2 answer (documented shape, not a recorded file)."""
    page = normalize_page_checked("springer", (SHAPES / "meta_v2_doi_s00394-024-03496-7.json").read_bytes())
    [row] = page.table.to_pylist()
    assert page.problems == ()
    assert row["provider_id"] == row["doi"] == "10.1007/s00394-024-03496-7"
    assert row["title"] == "Ultra-processed food intake in toddlerhood and mid-childhood in the UK: cross sectional and longitudinal perspectives"
    assert [a["name"] for a in row["authors"]][:2] == ["Rana E. Conway", "Gabriella N. Heuchan"] and len(row["authors"]) == 7
    assert [a["orcid"] for a in row["authors"]][:3] == ["0000-0003-0955-7107", None, "0000-0002-4846-2357"]
    assert (row["publication_date"], row["publication_date_precision"]) == (dt.date(2024, 10, 4), "day")  # onlineDate, not the print date
    assert "( P < 0.001)" in row["abstract"] and row["abstract"].startswith("Purpose (i) Characterize")  # bare `<` kept
    assert (row["venue"], row["publisher"], row["work_type"], row["language"]) == ("European Journal of Nutrition", "Springer", "Article", "en")
    assert row["is_oa"] is True and row["oa_url"] == "http://link.springer.com/openurl/pdf?id=doi:10.1007/s00394-024-03496-7"
    assert row["license"] is None and row["cited_by_count"] is None and row["url"] == "https://doi.org/10.1007/s00394-024-03496-7"


def test_documented_shape_awkward_cases():
    rows = {r["doi"]: r for r in normalize_page_checked("springer", (SHAPES / "meta_v2_onlinedate_3_records.json").read_bytes()).table.to_pylist()}
    chapter = rows["10.1007/978-3-031-56060-6_12"]
    assert chapter["publication_date"] == dt.date(2024, 3, 16)  # no onlineDate: the publicationDate
    assert [a["name"] for a in chapter["authors"]] == ["Jörg Müller", "The CLEF eHealth Consortium"]  # no comma: as written
    assert chapter["is_oa"] is False and chapter["oa_url"] is None and chapter["work_type"] == "Chapter"
    assert chapter["abstract"].endswith("reviews of <5 years of trials, where recall < 0.95 is unacceptable.")
    article = rows["10.1007/s00248-024-02345-x"]
    assert article["title"] == "Rhizosphere communities of Arabidopsis thaliana under drought"  # <i> goes, no space added
    assert article["abstract"] == "Drought reshapes the soil microbiome around roots & shoots. We sequenced 16S rRNA amplicons."
    landslides = rows["10.1007/s10346-024-02250-1"]
    assert landslides["abstract"] is None and landslides["authors"] == [] and landslides["language"] == "de"


def test_a_wrongly_typed_openaccess_is_null_and_reported():
    page = json.loads((SHAPES / "meta_v2_doi_s00394-024-03496-7.json").read_bytes())
    page["records"][0]["openaccess"] = "yes"
    checked = normalize_page_checked("springer", json.dumps(page).encode())
    assert checked.table.column("is_oa").to_pylist() == [None]
    assert [(p.field, p.action) for p in checked.problems] == [("openaccess", "set to NULL")]


def test_partition_lands_exactly_the_simulators_records_over_several_pages(springer_env, simulator):
    result = materialize(str(DAY), "springer", SEARCH)
    assert result.success
    expected = simulator.apis["springer"].record_ids(DAY, DAY, SEARCH.text)
    landed = [r[0] for r in query_db("SELECT provider_id FROM works WHERE provider = 'springer'")]
    assert len(expected) > 8 and sorted(landed) == sorted(expected)
    requests = simulator.requests_for("springer")
    assert [r.params["s"][0] for r in requests] == [str(s) for s in range(1, len(expected) + 1, 4)]
    assert all(r.params["api_key"] == [KEY] and r.status == 200 for r in requests)
    assert query_db("SELECT DISTINCT publication_date, publisher FROM works") == [(DAY, "Springer")]
    # The key went out on every request and was stored nowhere: not in the cache, the landing zone, DuckDB or the event log.
    assert files_containing(home(), KEY.encode()) == [] and KEY not in repr(result.all_events)


def test_without_a_key_the_partition_fails_at_once_saying_how_to_set_it(pipeline_env, simulator):
    failed = materialize(str(DAY), "springer", SEARCH, raise_on_error=False)
    assert not failed.success
    message = step_failure(failed)
    assert "springer / saved search 'springer_search' / 2024-03-01" in message
    assert "SPRINGER_NATURE_API_KEY is not set" in message and "https://dev.springernature.com" in message and ".env" in message
    assert simulator.requests_for("springer") == []  # not a network error: nothing was asked
    assert not (home() / "scholar.duckdb").exists()


def test_a_page_size_above_the_plan_is_explained_and_lands_nothing(springer_env, simulator, monkeypatch):
    monkeypatch.setenv("SCHOLAR_PIPELINE_SPRINGER_PAGE_SIZE", "100")
    failed = materialize(str(DAY), "springer", SEARCH, raise_on_error=False)
    assert not failed.success
    message = step_failure(failed)
    assert "HTTP 403" in message and "This is a premium feature" in message
    assert "asked for p=100: set SCHOLAR_PIPELINE_SPRINGER_PAGE_SIZE to 25 or less" in message
    assert KEY not in message
    assert [r.status for r in simulator.requests_for("springer")] == [403]  # a refusal is not retried
    assert nothing_landed()


def test_refusals_are_explained_by_what_was_asked():
    premium = json.dumps({"status": "Fail", "message": "This is a premium feature"}).encode()
    assert "asked for p=100" in SPRINGER.explain_refusal(_request(1, size=100), 403, premium)
    assert "not on one" in SPRINGER.explain_refusal(_request(1, size=25), 403, premium)  # not the page size: the plan
    assert "check SPRINGER_NATURE_API_KEY" in SPRINGER.explain_refusal(_request(1), 401, b"{}")
    assert SPRINGER.explain_refusal(_request(1), 403, b"Forbidden") is None  # the general advice for a 403


def test_simulator_speaks_springers_errors(simulator):
    url = simulator.base_url("springer") + "/meta/v2/json"
    q = "soil onlinedatefrom:2024-03-01 onlinedateto:2024-03-01"
    no_key = httpx.get(url, params={"q": q})
    assert no_key.status_code == 401 and no_key.json()["message"] == "Authentication failed. API key is invalid or missing"
    no_q = httpx.get(url, params={"api_key": KEY})
    assert no_q.status_code == 400 and no_q.json()["message"] == "Missing required query parameter: 'q'"
    assert httpx.get(url, params={"api_key": KEY, "q": q, "s": "-1"}).json()["message"] == "Invalid parameters found"
    premium = httpx.get(url, params={"api_key": KEY, "q": q + " year:2024"})
    assert premium.status_code == 403 and premium.json()["message"] == "This is a premium feature"
    page = httpx.get(url, params={"api_key": KEY, "q": q, "p": "3"}).json()
    assert page["result"][0]["total"] == str(len(simulator.apis["springer"].record_ids(DAY, DAY, "soil")))
    assert page["result"][0]["recordsDisplayed"] == "3" and page["nextPage"].endswith("s=4&p=3")
    assert all(r["onlineDate"] == "2024-03-01" and r["openaccess"] in ("true", "false") for r in page["records"])
