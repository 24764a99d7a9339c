"""The simulator behaves like the real APIs where the pipeline depends on it."""

import datetime as dt
import time

import httpx
import pytest

from scholar_pipeline.providers import PROVIDERS
from scholar_pipeline.simulator import Corpus, ProviderSimulator
from scholar_pipeline.simulator.server import PLACEHOLDER_KEYS

DAY = {"openalex": "from_publication_date:2024-03-01,to_publication_date:2024-03-01",
       "crossref": "from-pub-date:2024-03-01,until-pub-date:2024-03-01"}
SEARCHED = dt.date(2024, 3, 1)
TEXTS = ("soil microbiome", "large language model evaluation")
SEARCHABLE = tuple(PROVIDERS)  # every simulated API reads the search text


def test_corpus_is_deterministic_and_crossref_holds_only_works_with_a_doi():
    first, second = Corpus(seed=3), Corpus(seed=3)
    day = dt.date(2024, 3, 1)
    assert first.works_on(day) == second.works_on(day)
    assert Corpus(seed=4).works_on(day) != first.works_on(day)
    with ProviderSimulator(corpus=first) as sim:
        dois = sim.apis["crossref"].record_ids(day, day)
        assert len(dois) == sum(1 for w in first.works_on(day) if w.doi) < len(sim.apis["openalex"].record_ids(day, day))


def test_openalex_cursor_paging_ends_with_an_empty_page_and_null_cursor(simulator):
    url, cursor, ids, pages = simulator.base_url("openalex") + "/works", "*", [], 0
    while cursor:
        page = httpx.get(url, params={"filter": DAY["openalex"], "per_page": "100", "cursor": cursor}).json()
        ids += [r["id"] for r in page["results"]]
        cursor, pages = page["meta"]["next_cursor"], pages + 1
    assert page["results"] == [] and len(ids) == len(set(ids)) == page["meta"]["count"]
    assert pages == -(-len(ids) // 100) + 1


def test_crossref_repeats_one_cursor_for_the_whole_scroll_and_expires_it():
    with ProviderSimulator(corpus=Corpus(seed=11, min_per_day=120)) as sim:
        sim.apis["crossref"].cursor_ttl = 0.2
        url = sim.base_url("crossref") + "/works"
        first = httpx.get(url, params={"filter": DAY["crossref"], "rows": "50", "cursor": "*"}).json()["message"]
        second = httpx.get(url, params={"filter": DAY["crossref"], "rows": "50", "cursor": first["next-cursor"]}).json()["message"]
        assert second["next-cursor"] == first["next-cursor"]
        assert {i["DOI"] for i in first["items"]}.isdisjoint(i["DOI"] for i in second["items"])
        time.sleep(0.3)
        expired = httpx.get(url, params={"filter": DAY["crossref"], "rows": "50", "cursor": first["next-cursor"]})
        assert expired.status_code == 400 and expired.json()["message-type"] == "validation-failure"


def test_limits_answer_with_the_providers_error_bodies(simulator):
    too_many_rows = httpx.get(simulator.base_url("crossref") + "/works", params={"rows": "1001"})
    assert too_many_rows.status_code == 400
    assert too_many_rows.json()["message"][0]["type"] == "integer-not-valid"
    too_big_page = httpx.get(simulator.base_url("openalex") + "/works", params={"per_page": "200"})
    assert too_big_page.status_code == 400 and "per-page" in too_big_page.json()["message"]
    deep = httpx.get(simulator.base_url("openalex") + "/works", params={"per_page": "100", "page": "101"})
    assert deep.status_code == 400
    unknown = httpx.get(simulator.base_url("openalex") + "/works", params={"filter": "author_name:x"})
    assert unknown.status_code == 400 and unknown.json()["error"] == "Invalid query parameters error."


def test_requests_over_the_rate_limit_get_429_and_are_logged():
    with ProviderSimulator(rate_limits={"crossref": 3}) as sim, httpx.Client() as client:
        statuses = [client.get(sim.base_url("crossref") + "/works", params={"rows": "1", "filter": DAY["crossref"]}).status_code for _ in range(5)]
        assert statuses == [200, 200, 200, 429, 429]
        assert [r.status for r in sim.requests_for("crossref")] == statuses


# The search text: each API serves the works its words find, read out of the provider's own query syntax.


@pytest.fixture(scope="module")
def unlimited():
    """A simulator without rate limits, so that whole days page through every provider at once."""
    with ProviderSimulator(corpus=Corpus(seed=11, min_per_day=120, max_per_day=240), rate_limits=dict.fromkeys(SEARCHABLE, 1000.0)) as sim:
        yield sim


def _fetched(sim: ProviderSimulator, name: str, text: str) -> list[dict]:
    """The records of SEARCHED that the provider module collects for `text`: its own requests, paged as the pipeline pages."""
    provider, records = PROVIDERS[name], []
    request = provider.first_request(text, SEARCHED, 25, None)
    credential, headers, keyed = provider.credential, {}, []
    if credential is not None and credential.required:  # Springer's api_key, CORE's Bearer header
        key = PLACEHOLDER_KEYS[credential.env]
        headers = {credential.header: credential.header_prefix + key} if credential.header else {}
        keyed = [(credential.query_param, key)] if credential.query_param else []
    while request is not None:
        body = httpx.get(sim.base_url(name) + request.path, params=list(request.params) + keyed, headers=headers).content
        following = provider.inspect(request, body).next_request
        records += provider.parse_records(body).records if request.holds_records else []
        request = following
    return records


@pytest.mark.parametrize("name", SEARCHABLE)
def test_two_texts_find_different_overlapping_parts_of_the_day_under_the_same_ids(unlimited, name):
    everything = set(unlimited.apis[name].record_ids(SEARCHED, SEARCHED))
    found = [{r["provider_id"]: (r["doi"], r["title"]) for r in _fetched(unlimited, name, text)} for text in TEXTS]
    first, second = set(found[0]), set(found[1])
    assert first - second and second - first and first & second
    assert set() < first < everything and set() < second < everything
    # The same work under the same id whatever the search: arXiv ids and PMIDs number the whole day, not what a text finds.
    assert all(found[0][i] == found[1][i] for i in first & second)


def test_a_text_finds_the_same_works_at_every_provider_that_serves_them(unlimited):
    """Compared by DOI. Crossref and PubMed hold every work with a DOI, so a text finds the DOIs it finds at OpenAlex;
    PLOS, arXiv, Springer and CORE hold some of them, so of those (here: what either text finds there) it finds the ones found at OpenAlex."""
    dois = {(name, text): {r["doi"] for r in _fetched(unlimited, name, text) if r["doi"]} for name in SEARCHABLE for text in TEXTS}
    for text in TEXTS:
        assert dois["crossref", text] == dois["pubmed", text] == dois["openalex", text]
        for name in ("plos", "arxiv", "springer", "core"):
            held = dois[name, TEXTS[0]] | dois[name, TEXTS[1]]
            assert dois[name, text] and dois[name, text] == dois["openalex", text] & held, name


@pytest.mark.parametrize("name", SEARCHABLE)
def test_record_ids_for_a_text_are_what_the_pipelines_own_request_is_served(unlimited, name):
    """`COVID-19 soil` goes through each provider's query syntax (a phrase at arXiv, escaped at PLOS) and keeps its words."""
    served = [r["provider_id"] for r in _fetched(unlimited, name, "COVID-19 soil")]
    assert sorted(served) == sorted(unlimited.apis[name].record_ids(SEARCHED, SEARCHED, "COVID-19 soil"))
    assert 0 < len(served) < len(unlimited.apis[name].record_ids(SEARCHED, SEARCHED))
