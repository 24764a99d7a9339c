"""The simulator behaves like the real APIs where the pipeline depends on it."""

import datetime as dt
import time

import httpx

from scholar_pipeline.simulator import Corpus, ProviderSimulator

DAY = {"openalex": "from_publication_date:2024-03-01,to_publication_date:2024-03-01",
       "crossref": "from-pub-date:2024-03-01,until-pub-date:2024-03-01"}


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
