"""PLOS: the request for a day, Solr paging and its end, search-text escaping, and the simulated API."""

import datetime as dt
import json

import httpx
import pytest

from scholar_pipeline.providers import PROVIDERS
from scholar_pipeline.providers.base import MalformedPage, PageRequest, SearchTextError
from scholar_pipeline.queries import SavedSearch
from scholar_pipeline.simulator import Corpus, ProviderSimulator
from scholar_pipeline_tests.conftest import real_response
from scholar_pipeline_tests.helpers import home, materialize, query_db

PLOS = PROVIDERS["plos"]
DAY = dt.date(2024, 3, 1)
WINDOW = "publication_date:[2024-03-01T00:00:00Z TO 2024-03-01T23:59:59Z]"
SEARCH = SavedSearch(name="plos_search", text="large language model evaluation", providers=["plos"], start_date=dt.date(2024, 1, 1))


@pytest.fixture
def simulator():
    """The shared simulator, with PLOS's 10-requests-a-minute limit lifted so that small pages page quickly."""
    with ProviderSimulator(corpus=Corpus(seed=11, min_per_day=120, max_per_day=240), rate_limits={"plos": 100}) as sim:
        yield sim


def _page(found: int, start: int, ids: list[str]) -> bytes:
    return json.dumps({"response": {"numFound": found, "start": start, "docs": [{"id": i} for i in ids]}}).encode()


def _request(start: int, rows: int) -> PageRequest:
    return PLOS.first_request("soil", DAY, rows, None).with_param("start", str(start))


def test_first_request_filters_the_day_and_full_documents_and_names_its_fields():
    request = PLOS.first_request("soil fungi", DAY, 5000, None)
    assert request.path == "/search"
    assert [v for k, v in request.params if k == "fq"] == [WINDOW, "doc_type:full"]
    assert request.param("q") == "soil fungi"
    assert request.param("fl") == "id,title_display,abstract,author_display,publication_date,journal,article_type"
    assert (request.param("q.op"), request.param("sort")) == ("AND", "id asc")  # every word; a stable order to page in
    assert (request.param("start"), request.param("rows"), request.param("wt")) == ("0", "1000", "json")  # rows capped at 1000
    assert PLOS.defaults.rate_limit == pytest.approx(300 / 3600)  # 300 an hour: its hourly cap, not its burst of 10 a minute


def test_paging_moves_start_on_by_rows_while_pages_are_full():
    info = PLOS.inspect(_request(0, 2), _page(5, 0, ["10.1371/a", "10.1371/b"]))
    assert (info.records, info.total, info.next_request.param("start")) == (2, 5, "2")
    assert info.next_request.param("rows") == "2" and info.next_request.param("q") == "soil"


def test_paging_ends_at_the_total_and_a_short_page_before_it_is_refused():
    assert PLOS.inspect(_request(2, 2), _page(4, 2, ["10.1371/c", "10.1371/d"])).next_request is None  # start + rows = numFound
    assert PLOS.inspect(_request(2, 2), _page(3, 2, ["10.1371/c"])).next_request is None  # the last, short page
    assert PLOS.inspect(_request(0, 2), _page(0, 0, [])).next_request is None  # nothing found
    with pytest.raises(MalformedPage, match="1 of 2 records at start=2 although it reports numFound=9"):
        PLOS.inspect(_request(2, 2), _page(9, 2, ["10.1371/c"]))  # six records would be lost
    with pytest.raises(MalformedPage, match="numFound=2 on a page holding records 3 to 4"):
        PLOS.inspect(_request(2, 2), _page(2, 2, ["10.1371/c", "10.1371/d"]))


def test_empty_page_before_the_total_is_reached_is_refused():
    with pytest.raises(MalformedPage, match="empty page at start=4 although it reports numFound=9"):
        PLOS.inspect(_request(4, 2), _page(9, 4, []))


def test_page_for_another_start_or_a_solr_error_is_refused():
    with pytest.raises(MalformedPage, match="start=0 when asked for start=4"):
        PLOS.inspect(_request(4, 2), _page(9, 0, ["10.1371/a"]))
    error = {"responseHeader": {"status": 400, "QTime": 1}, "error": {"msg": "undefined field foo", "code": 400}}
    with pytest.raises(MalformedPage, match="undefined field foo"):
        PLOS.inspect(_request(0, 2), json.dumps(error).encode())
    with pytest.raises(MalformedPage, match="numFound"):
        PLOS.inspect(_request(0, 2), json.dumps({"response": {"numFound": "7", "start": 0, "docs": []}}).encode())


def test_recorded_page_pages_on_from_its_start():
    body = real_response("plos/scholarflux_plos_search_social_wealth_equity_rows100.json")  # numFound 2495, start 1
    info = PLOS.inspect(_request(1, 100), body)
    assert (info.records, info.total, info.next_request.param("start")) == (100, 2495, "101")


@pytest.mark.parametrize(
    "text, q",
    [
        ("soil microbiome", "soil microbiome"),
        ('"climate change" AND (soil OR fungi) NOT coral', '"climate change" AND (soil OR fungi) NOT coral'),
        ("COVID-19: a review", r"COVID\-19\: a review"),  # `COVID-19:` would name a field
        ("title:soil", r"title\:soil"),
        ("ecolog* fung? ~2 b^3", r"ecolog\* fung\? \~2 b^3".replace("^", r"\^")),
        ("+required -excluded !not a&&b a||b", r"\+required \-excluded \!not a\&\&b a\|\|b"),
        ("[2020 TO 2024] {x} /re.*/ C:\\path", r"\[2020 TO 2024\] \{x\} \/re.\*\/ C\:\\path"),
        ('he said "hello', r'he said \"hello'),  # a quote without its partner
        ("(unclosed soil", r"\(unclosed soil"),  # parentheses that do not pair up
        ("fish AND", "fish"),  # an operator without an operand
        ("OR soil AND NOT", "soil"),
        ('soil "" ()', "soil"),
        ('"path\\to" x', r'"path\\to" x'),  # inside a phrase only `\` needs escaping
    ],
)
def test_search_text_is_escaped_to_mean_what_the_user_wrote(text, q):
    assert PLOS.search_terms(text) == q


@pytest.mark.parametrize("text", ["", " ?!, ", "AND", "NOT OR", '"" ( )', "* : ~"])
def test_text_without_a_word_is_refused(text):
    with pytest.raises(SearchTextError, match="no word"):
        PLOS.search_terms(text)


def test_text_that_starts_with_not_is_refused():
    """`NOT coral` would match every work of the day except those on coral."""
    with pytest.raises(SearchTextError, match="starts with NOT"):
        PLOS.search_terms("NOT coral")


def test_escaped_texts_parse_where_the_raw_ones_are_syntax_errors(simulator):
    url = simulator.base_url("plos") + "/search"
    for text in ["COVID-19: a review", 'he said "hello', "(unclosed soil", "fish AND", "a) b (c", "[2020 TO", "/re"]:
        raw = httpx.get(url, params={"q": text, "fq": WINDOW})
        assert raw.status_code == 400 and raw.json()["error"]["code"] == 400, text
        escaped = httpx.get(url, params={"q": PLOS.search_terms(text), "fq": WINDOW})
        assert escaped.status_code == 200, (text, escaped.text)


def test_partition_lands_exactly_the_simulators_records_over_several_pages(pipeline_env, simulator, monkeypatch):
    monkeypatch.setenv("SCHOLAR_PIPELINE_PLOS_RATE_LIMIT", "50")
    monkeypatch.setenv("SCHOLAR_PIPELINE_PLOS_PAGE_SIZE", "5")
    assert materialize(str(DAY), "plos", SEARCH).success
    expected = simulator.apis["plos"].record_ids(DAY, DAY, SEARCH.text)
    landed = [r[0] for r in query_db("SELECT provider_id FROM works WHERE provider = 'plos' AND partition_date = ?", [str(DAY)])]
    assert len(expected) > 10
    assert sorted(landed) == sorted(expected)  # none lost at page boundaries, none twice, no section documents
    requests = simulator.requests_for("plos")
    assert len(requests) == -(-len(expected) // 5) and all(r.status == 200 for r in requests)
    first = requests[0].params
    assert first["fq"] == [WINDOW, "doc_type:full"] and first["q"] == ["large language model evaluation"]
    assert [r.params["start"][0] for r in requests] == [str(n) for n in range(0, len(expected), 5)]
    assert query_db("SELECT DISTINCT publisher, is_oa, publication_date FROM works WHERE provider = 'plos'") == [
        ("Public Library of Science", True, DAY)]


def test_an_empty_page_before_the_total_fails_the_partition_and_lands_nothing(pipeline_env, simulator, monkeypatch):
    monkeypatch.setenv("SCHOLAR_PIPELINE_PLOS_RATE_LIMIT", "50")
    monkeypatch.setenv("SCHOLAR_PIPELINE_PLOS_PAGE_SIZE", "5")
    api = simulator.apis["plos"]
    serve = api.routes["/search"]

    def losing_the_result_set(params):  # the second page comes back empty, the total unchanged
        response = serve(params)
        if params["start"] == ["5"]:
            page = json.loads(response.body)
            page["response"]["docs"] = []
            response.body = json.dumps(page).encode()
        return response

    api.routes["/search"] = losing_the_result_set
    result = materialize(str(DAY), "plos", SEARCH, raise_on_error=False)
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error.to_string()
    assert "page 2 is unusable" in failure and "empty page at start=5" in failure
    database = home() / "scholar.duckdb"
    assert not database.exists() or query_db(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'works'") == [(0,)] or query_db(
        "SELECT count(*) FROM works") == [(0,)]


def test_simulator_answers_in_the_recorded_shape_and_honours_the_window(simulator):
    url = simulator.base_url("plos") + "/search"
    body = httpx.get(url, params={"q": "soil", "fq": [WINDOW, "doc_type:full"], "fl": "id,publication_date", "rows": "3"}).content
    assert body.startswith(b'{\n  "response":{"numFound":') and b"responseHeader" not in body
    page = json.loads(body)["response"]
    assert page["start"] == 0 and len(page["docs"]) == 3 and page["numFound"] == len(simulator.apis["plos"].record_ids(DAY, DAY, "soil"))
    assert all(set(d) == {"id", "publication_date"} and d["publication_date"] == "2024-03-01T00:00:00Z" for d in page["docs"])
    with_sections = json.loads(httpx.get(url, params={"q": "soil", "fq": WINDOW, "fl": "id", "rows": "1000"}).content)["response"]
    assert with_sections["numFound"] > page["numFound"] and any(d["id"].endswith("/introduction") for d in with_sections["docs"])
    next_day = httpx.get(url, params={"q": "soil", "fq": [WINDOW.replace("03-01", "03-02"), "doc_type:full"], "fl": "id", "rows": "1000"})
    assert set(d["id"] for d in next_day.json()["response"]["docs"]) == set(simulator.apis["plos"].record_ids(DAY + dt.timedelta(1), DAY + dt.timedelta(1), "soil"))


def test_simulator_refuses_over_cap_rows_and_malformed_queries_with_solr_errors(simulator):
    url = simulator.base_url("plos") + "/search"
    too_many = httpx.get(url, params={"q": "soil", "fq": WINDOW, "rows": "1001"})
    assert too_many.status_code == 400 and "1000" in too_many.json()["error"]["msg"]
    bad_date = httpx.get(url, params={"q": "soil", "fq": "publication_date:[2024-03-01 TO 2024-03-02]"})
    assert bad_date.status_code == 400 and "Invalid Date String" in bad_date.json()["error"]["msg"]
    unknown_field = httpx.get(url, params={"q": "nosuchfield:soil", "fq": WINDOW})
    assert unknown_field.json()["error"]["msg"] == "undefined field nosuchfield"
    assert set(unknown_field.json()["responseHeader"]) == {"status", "QTime", "params"}


def test_simulator_answers_503_over_the_rate_limit():
    with ProviderSimulator() as sim, httpx.Client() as client:  # the default: 10 a minute, at most one in any second
        statuses = [client.get(sim.base_url("plos") + "/search", params={"q": "soil", "fq": WINDOW}).status_code for _ in range(2)]
        assert statuses == [200, 503]
        overloaded = client.get(sim.base_url("plos") + "/search", params={"q": "soil", "fq": WINDOW})
        assert overloaded.status_code == 503 and "high load" in overloaded.text
    with ProviderSimulator(rate_limits={"plos": 3}) as sim, httpx.Client() as client:
        statuses = [client.get(sim.base_url("plos") + "/search", params={"q": "soil", "fq": WINDOW}).status_code for _ in range(5)]
        assert statuses == [200, 200, 200, 503, 503]


def test_a_record_that_moves_back_across_a_page_boundary_warns_that_another_is_missing(pipeline_env, simulator, monkeypatch):
    """Offset paging over a changing order: between pages 1 and 2, the records at places 5 and 6 swap, so page 2
    starts with page 1's last record and the other never comes. The count still matches the total, so only the
    repeated record tells; the total check must warn."""
    monkeypatch.setenv("SCHOLAR_PIPELINE_PLOS_RATE_LIMIT", "50")
    monkeypatch.setenv("SCHOLAR_PIPELINE_PLOS_PAGE_SIZE", "5")
    api = simulator.apis["plos"]
    serve = api.routes["/search"]

    def shifted(params):
        response = serve(params)
        if params["start"] == ["5"]:
            page = json.loads(response.body)
            page["response"]["docs"][0] = json.loads(serve(params | {"start": ["4"]}).body)["response"]["docs"][0]
            response.body = json.dumps(page).encode()
        return response

    api.routes["/search"] = shifted
    result = materialize(str(DAY), "plos", SEARCH)
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    expected = simulator.apis["plos"].record_ids(DAY, DAY, SEARCH.text)
    landed = [r[0] for r in query_db("SELECT provider_id FROM works")]
    assert len(landed) < len(expected)  # records were lost...
    assert checks["no_records_lost"].passed  # ...not by the pipeline: every record fetched landed...
    total = checks["matches_provider_total"]  # ...but the answer was not whole, and the check says so
    assert not total.passed and total.metadata["records_repeated"].value == len(expected) - len(landed) == 1
