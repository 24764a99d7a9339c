"""arXiv's wire format: the request for a day, the search text in arXiv's syntax, paging and its anomalies, the simulator."""

import datetime as dt
import re
import time
from pathlib import Path

import httpx
import pytest
from lxml import etree

from scholar_pipeline.providers import PROVIDERS
from scholar_pipeline.landing import LandingZone
from scholar_pipeline.providers.arxiv import ARXIV as ARXIV_NS, ATOM, MAX_TOTAL
from scholar_pipeline.providers.base import MalformedPage, PageInfo, PageRequest, PartitionTooLarge, SearchTextError
from scholar_pipeline.queries import SavedSearch, SavedSearchError, load_saved_searches
from scholar_pipeline.simulator import Corpus, ProviderSimulator
from scholar_pipeline_tests.conftest import real_response
from scholar_pipeline_tests.helpers import home, materialization, materialize, query_db

ARXIV = PROVIDERS["arxiv"]
DAY = "2024-03-01"
SEARCH = SavedSearch(name="arxiv_search", text="large language model evaluation", providers=["arxiv"], start_date=dt.date(2024, 1, 1))
PAGE_0 = "arxiv/arxiv_query_testing_start0_max10.xml"
PAGE_10 = "arxiv/arxiv_query_testing_start10_max10.xml"
PAGE_20 = "arxiv/arxiv_query_testing_start20_max10.xml"


def test_the_day_is_a_gmt_submitted_date_window_anded_with_the_search():
    request = ARXIV.first_request("soil microbiome", dt.date(2024, 3, 1), 5000, None)
    assert request.path == "/query"
    assert dict(request.params) == {
        "search_query": "(all:soil AND all:microbiome) AND submittedDate:[202403010000 TO 202403012359]",
        "sortBy": "submittedDate", "sortOrder": "ascending",  # a stable order for offset paging
        "start": "0", "max_results": "2000",  # capped at arXiv's 2000 a call
    }
    assert ARXIV.defaults.rate_limit == pytest.approx(1 / 3) and ARXIV.defaults.max_records == MAX_TOTAL


@pytest.mark.parametrize(
    "text, terms",
    [
        ("large language model", "(all:large AND all:language AND all:model)"),  # every word must occur, as at OpenAlex
        ("graphene", "all:graphene"),
        ("machine learning, fairness", "(all:machine AND all:learning AND all:fairness)"),  # punctuation separates words
        ('"Hello, John" AND (soil OR fungi)', '(all:"Hello John" AND (all:soil OR all:fungi))'),
        ("COVID-19 vaccine", '(all:"COVID 19" AND all:vaccine)'),  # no `-` reaches arXiv's parser: the pieces as a phrase
        ("C++ OR Rust", "(all:C OR all:Rust)"),
        ("soil OR fungi bacteria", "(all:soil OR (all:fungi AND all:bacteria))"),  # AND binds tighter, made explicit
        ("soil NOT fungi", "(all:soil ANDNOT all:fungi)"),
        ("soil AND NOT fungi", "(all:soil ANDNOT all:fungi)"),
        ("(soil OR fungi) carbon", "((all:soil OR all:fungi) AND all:carbon)"),
        ("état de l'art", "(all:état AND all:de AND all:\"l art\")"),
    ],
)
def test_search_text_is_written_in_arxiv_syntax_with_its_meaning(text, terms):
    assert ARXIV.search_terms(text) == terms
    query = ARXIV.first_request(text, dt.date(2024, 3, 1), 100, None).param("search_query")
    assert query == f"{terms} AND submittedDate:[202403010000 TO 202403012359]"  # an OR in the text cannot escape the day


@pytest.mark.parametrize(
    "text, reason",
    [
        (" ?!, ", "no word"),
        ("()", "no word"),
        ('"open phrase', "double quote is not closed"),
        ("(soil OR fungi", "is not closed"),
        ("soil)", "closes no"),
        ("soil AND", "term is missing after AND"),
        ("OR soil", "term is missing at the start"),
        ("soil OR OR fungi", "term is missing after OR"),
        ("NOT fungi", "NOT needs a term before it"),
        ("soil OR NOT fungi", "NOT needs a term before it"),
        ("ti:graphene", "field syntax"),
        ("submittedDate:[202401010000 TO 202401012359]", "field syntax"),
        ("electro*", "wildcard"),
    ],
)
def test_text_arxiv_would_read_otherwise_is_refused(text, reason):
    with pytest.raises(SearchTextError, match=re.escape(reason)):
        ARXIV.search_terms(text)


def test_a_saved_search_arxiv_cannot_read_stops_the_definitions_loading(tmp_path):
    path = tmp_path / "queries.yaml"
    path.write_text("queries:\n  - {name: titles, text: 'ti:graphene', providers: [openalex, arxiv], start_date: 2024-01-01}\n")
    with pytest.raises(SavedSearchError, match="for arxiv: .*field syntax"):
        load_saved_searches(path)


def _request(start: int, size: int = 10) -> PageRequest:
    return ARXIV.first_request("testing", dt.date(2024, 3, 1), size, None).with_param("start", str(start))


def _with_total(relative: str, total: int) -> bytes:
    body = real_response(relative)
    return re.sub(rb"<opensearch:totalResults>\d+</opensearch:totalResults>", f"<opensearch:totalResults>{total}</opensearch:totalResults>".encode(), body)


def test_paging_moves_start_by_the_records_received_until_the_total():
    first = ARXIV.inspect(_request(0), _with_total(PAGE_0, 30))
    assert (first.records, first.total) == (10, 30)
    assert first.next_request.param("start") == "10" and first.next_request.param("max_results") == "10"
    assert first.next_request.param("search_query") == _request(0).param("search_query")
    assert ARXIV.inspect(first.next_request, _with_total(PAGE_10, 30)).next_request.param("start") == "20"
    last = ARXIV.inspect(_request(20), _with_total(PAGE_20, 30))
    assert last.records == 10 and last.next_request is None


def test_no_page_reaches_past_the_thirty_thousandth_record():
    request = _request(29_980, size=2000)
    following = ARXIV.inspect(request, _with_total(PAGE_0, 30_000).replace(b">0</opensearch:startIndex>", b">29980</opensearch:startIndex>"))
    assert following.next_request.param("start") == "29990" and following.next_request.param("max_results") == "10"


def test_a_day_with_more_than_arxiv_serves_fails_and_says_to_narrow_the_search():
    """The recorded search `all:testing` reports 214881 results: more than the 30,000 arXiv serves of one query."""
    with pytest.raises(PartitionTooLarge, match=r"214881 records.*more than the 30000.*narrow the saved search"):
        ARXIV.inspect(_request(0), real_response(PAGE_0))


def test_an_empty_page_where_records_remain_is_not_the_end():
    empty = re.sub(rb"<entry>.*</entry>", b"", _with_total(PAGE_10, 30), flags=re.S)
    with pytest.raises(MalformedPage, match="empty page at start=10"):
        ARXIV.inspect(_request(10), empty)
    anomaly = empty.replace(b">30</opensearch:totalResults>", b">0</opensearch:totalResults>")  # as the live API sends it
    with pytest.raises(MalformedPage, match="empty page at start=10"):
        ARXIV.inspect(_request(10), anomaly)
    with pytest.raises(MalformedPage, match="empty page at start=0 although it reports 30"):
        ARXIV.inspect(_request(0), empty.replace(b">10</opensearch:startIndex>", b">0</opensearch:startIndex>"))
    nothing = empty.replace(b">30</opensearch:totalResults>", b">0</opensearch:totalResults>").replace(b">10</opensearch:startIndex>", b">0</opensearch:startIndex>")
    assert ARXIV.inspect(_request(0), nothing) == PageInfo(records=0, total=0, next_request=None)  # a day with nothing submitted


def test_totals_and_start_indexes_that_contradict_the_page_are_rejected():
    with pytest.raises(MalformedPage, match="totalResults=15 on a page holding records 11 to 20"):
        ARXIV.inspect(_request(10), _with_total(PAGE_10, 15))
    with pytest.raises(MalformedPage, match="start=20 with a page that starts at 10"):
        ARXIV.inspect(_request(20), _with_total(PAGE_10, 30))


def test_the_error_feed_fails_inspection_with_its_message_even_with_status_200(simulator):
    response = httpx.get(simulator.base_url("arxiv") + "/query", params={"search_query": "all:x AND submittedDate:2024*"})
    assert response.status_code == 200
    with pytest.raises(MalformedPage, match="arxiv refused the request: submittedDate must be written"):
        ARXIV.inspect(_request(0), response.content)


# The simulator


def _simulated(sim: ProviderSimulator, **params) -> httpx.Response:
    query = {"search_query": "all:model AND submittedDate:[202403010000 TO 202403012359]", "sortBy": "submittedDate",
             "sortOrder": "ascending"} | params
    return httpx.get(sim.base_url("arxiv") + "/query", params=query)


def test_simulated_feed_has_the_recorded_shape():
    def shape(body: bytes) -> tuple[list[str], set[str], set[str]]:
        feed = etree.fromstring(body)
        entries = feed.findall(f"{{{ATOM}}}entry")
        return ([c.tag for c in feed if c.tag != f"{{{ATOM}}}entry"], {c.tag for e in entries for c in e},
                {c.tag for e in entries for a in e.findall(f"{{{ATOM}}}author") for c in a})

    with ProviderSimulator(corpus=Corpus(seed=11, min_per_day=120, max_per_day=240), rate_limits={"arxiv": 100}) as sim:
        body = _simulated(sim, start="0", max_results="30").content
    recorded = real_response(PAGE_0)
    assert body.splitlines()[:2] == recorded.splitlines()[:2]  # declaration and namespaces, in the recorded order
    feed, entry, author = shape(body)
    recorded_feed, recorded_entry, recorded_author = shape(recorded)
    assert feed == recorded_feed and entry == recorded_entry
    assert author == recorded_author | {f"{{{ARXIV_NS}}}affiliation"}  # the recorded feeds carry no affiliation


def test_simulator_pages_submitted_date_windows_with_its_caps_and_errors():
    day = dt.date(2024, 3, 1)
    with ProviderSimulator(corpus=Corpus(seed=11, min_per_day=120, max_per_day=240), rate_limits={"arxiv": 100}) as sim:
        expected = sim.apis["arxiv"].record_ids(day, day, "model")  # the words `_simulated` searches for
        ids, start = [], 0
        while True:
            page = _simulated(sim, start=str(start), max_results="50").text
            got = re.findall(r"<id>http://arxiv.org/abs/(.*?)</id>", page)
            if not got:
                break
            ids, start = ids + got, start + len(got)
        assert sorted(ids) == sorted(expected) and len(ids) == len(set(ids)) > 50  # more than a page
        assert f"<opensearch:totalResults>{len(expected)}</opensearch:totalResults>" in page
        morning = _simulated(sim, search_query="all:model AND submittedDate:[202403010000 TO 202403011159]", max_results="2000").text
        assert 0 < morning.count("<entry>") < len(expected)
        first = _simulated(sim, max_results="5").text
        time.sleep(1.1)  # `updated` is to the second
        second = _simulated(sim, max_results="5").text
        assert first != second  # the feed's `updated` moves on every call...
        assert re.sub(r"<updated>[^<]*</updated>\n  <link", "", first) == re.sub(r"<updated>[^<]*</updated>\n  <link", "", second)
        assert _simulated(sim, max_results="30001").status_code == 400
        assert _simulated(sim, max_results="2500").text.count("<entry>") == min(len(expected), 2000)
        for bad in ({"start": "x"}, {"max_results": "-1"}, {"sortBy": "cited"}):
            response = _simulated(sim, **bad)
            assert response.status_code == 400 and "<title>Error</title>" in response.text
        for malformed in ("all:model", "all:model AND submittedDate:[2024 TO 2025]", "(all:model AND submittedDate:[202403010000 TO 202403012359]",
                          "xx:model AND submittedDate:[202403010000 TO 202403012359]"):
            response = _simulated(sim, search_query=malformed)
            assert response.status_code == 200 and "<title>Error</title>" in response.text and "<opensearch:totalResults>1<" in response.text


def test_simulator_rate_limit_is_a_plain_text_429_without_retry_after():
    with ProviderSimulator() as sim:  # arXiv's default: one request every three seconds
        statuses = [_simulated(sim) for _ in range(2)]
        assert [r.status_code for r in statuses] == [200, 429]
        assert statuses[1].text == "Rate exceeded." and "retry-after" not in statuses[1].headers


# Whole partitions through the Dagster assets


@pytest.fixture
def arxiv_env(pipeline_env, simulator, monkeypatch):
    simulator.rate_limits["arxiv"] = 1000
    monkeypatch.setenv("SCHOLAR_PIPELINE_ARXIV_RATE_LIMIT", "50")
    monkeypatch.setenv("SCHOLAR_PIPELINE_ARXIV_PAGE_SIZE", "40")  # several pages per day
    return pipeline_env


def _failure(result) -> str:
    return result.get_step_failure_events()[0].event_specific_data.error.to_string()


def _landed_rows() -> list[tuple]:
    database = home() / "scholar.duckdb"
    return query_db("SELECT provider_id FROM works WHERE provider = 'arxiv'") if database.exists() else []


def test_partition_lands_exactly_the_simulators_records_for_the_day(arxiv_env, simulator):
    result = materialize(DAY, "arxiv", search=SEARCH)
    assert result.success
    day = dt.date.fromisoformat(DAY)
    expected = simulator.apis["arxiv"].record_ids(day, day, SEARCH.text)
    landed = [r[0] for r in _landed_rows()]
    assert len(expected) > 2 * 40  # three pages or more
    assert sorted(landed) == sorted(expected)  # versions kept, none lost at page boundaries, none twice
    manifest = recorded_manifest_for(result)
    assert len(manifest.pages) == -(-len(expected) // 40) and manifest.total_reported == len(expected)
    requests = simulator.requests_for("arxiv")
    assert [r.params["start"][0] for r in requests] == [str(40 * n) for n in range(len(manifest.pages))]
    assert requests[0].params["search_query"] == [
        "(all:large AND all:language AND all:model AND all:evaluation) AND submittedDate:[202403010000 TO 202403012359]"]
    row = query_db("SELECT count(*), count(DISTINCT publication_date), bool_and(is_oa), count(doi) FROM works")[0]
    assert row[:3] == (len(expected), 1, True) and 0 < row[3] < len(expected)


def recorded_manifest_for(result):
    event = materialization(result, SEARCH.name, "raw")
    return LandingZone(home() / "landing").read_manifest(Path(event.metadata["manifest"].value))


def test_an_empty_first_page_is_asked_for_once_more_before_the_day_is_taken_as_empty(arxiv_env, simulator, monkeypatch):
    """The anomaly on a day's first page looks like an empty day: asked again, the day comes whole; a day that is
    empty comes empty twice and lands no row."""
    api = simulator.apis["arxiv"]
    api.empty_page_at.add(0)
    recovered = materialize(DAY, "arxiv", search=SEARCH)
    day = dt.date.fromisoformat(DAY)
    assert recovered.success and sorted(r[0] for r in _landed_rows()) == sorted(api.record_ids(day, day, SEARCH.text))
    assert [r.params["start"] for r in simulator.requests_for("arxiv")][:3] == [["0"], ["0"], ["40"]]
    monkeypatch.setattr(api, "_entries", lambda *args: [])  # a day without a matching work
    before = len(simulator.requests_for("arxiv"))
    empty = materialize("2024-03-02", "arxiv", search=SEARCH)
    assert empty.success and [r.params["start"] for r in simulator.requests_for("arxiv")[before:]] == [["0"], ["0"]]
    assert [(p.number, p.records) for p in recorded_manifest_for(empty).pages] == [(1, 0)]


def test_an_anomalous_empty_page_in_the_middle_is_asked_for_again_and_the_partition_lands_whole(arxiv_env, simulator):
    """arXiv sends an empty page now and then (arxiv.py retries those too): asked again, it comes whole."""
    simulator.apis["arxiv"].empty_page_at.add(80)
    recovered = materialize(DAY, "arxiv", search=SEARCH)
    day = dt.date.fromisoformat(DAY)
    assert recovered.success and sorted(r[0] for r in _landed_rows()) == sorted(simulator.apis["arxiv"].record_ids(day, day, SEARCH.text))
    starts = [r.params["start"] for r in simulator.requests_for("arxiv")]
    assert starts.count(["80"]) == 2  # the empty answer, then the page
    (note,) = (home() / "landing" / "quarantine").rglob("*.json")
    assert "empty page at start=80" in note.read_text()
