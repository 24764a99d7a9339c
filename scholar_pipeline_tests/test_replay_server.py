"""The benchmark's replay server hands a peer client the recorded bytes unchanged, whatever it asks for."""

import httpx

from benchmarks.replay import ReplayServer
from scholar_pipeline_tests.conftest import real_response

OPENALEX = real_response("openalex/openalexpro_works_search_biodiversity_finance_per200_cursor_p1.json")
ARXIV = real_response("arxiv/arxiv_query_testing_start0_max10.xml")


def test_every_path_under_a_provider_gets_its_page_byte_for_byte_with_its_content_type():
    with ReplayServer() as server, httpx.Client() as client:
        server.replay("openalex", OPENALEX, "application/json")
        server.replay("arxiv", ARXIV, "application/atom+xml; charset=UTF-8")
        for url in (server.base_url("openalex"), server.base_url("openalex") + "/works?search=x&page=3&per_page=25"):
            answer = client.get(url)
            assert (answer.status_code, answer.content, answer.headers["content-type"]) == (
                200, OPENALEX, "application/json")
        answer = client.get(server.base_url("arxiv") + "/api/query?search_query=x")
        assert (answer.content, answer.headers["content-type"]) == (ARXIV, "application/atom+xml; charset=UTF-8")


def test_a_new_page_replaces_the_last_and_a_provider_without_one_is_not_found():
    with ReplayServer() as server, httpx.Client() as client:
        server.replay("arxiv", ARXIV, "application/xml")
        server.replay("arxiv", OPENALEX, "application/json")
        assert client.get(server.base_url("arxiv") + "/query").content == OPENALEX
        missing = client.get(server.base_url("crossref") + "/works")
        assert missing.status_code == 404 and b"no page" in missing.content
