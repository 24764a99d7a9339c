"""Hostile answers: malformed pages, echoed secrets, trickling and mislabelled bodies, damaged landed pages."""

import dataclasses
import datetime as dt
import gzip
import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import dagster as dg
import httpx
import pytest

from scholar_pipeline.client.provider_client import ProviderRequestError, RetryPolicy
from scholar_pipeline.client.stack import cache_storage, open_provider_client
from scholar_pipeline.fetch import fetch_partition
from scholar_pipeline.landing import LandingZone
from scholar_pipeline.providers import PROVIDERS
from scholar_pipeline.providers.base import PageRequest
from scholar_pipeline.settings import ProviderSettings
from scholar_pipeline.simulator import Corpus, ProviderSimulator
from scholar_pipeline.simulator.common import SimResponse
from scholar_pipeline_tests.helpers import SEARCH, files_containing, home, materialize, query_db, recorded_manifest

DAY = "2024-03-01"
SETTINGS = ProviderSettings(base_url="http://api.test", rate_limit=1000, page_size=10, max_records=100)


def _failure(result) -> str:
    return result.get_step_failure_events()[0].event_specific_data.error.to_string()


def test_a_malformed_page_with_status_200_is_not_replayed_from_the_cache(pipeline_env, simulator):
    api = simulator.apis["openalex"]
    served = api.routes["/works"]
    outage = {"on": True}
    api.routes["/works"] = lambda params: (SimResponse(200, b"<html><body>Service temporarily unavailable</body></html>", "text/html")
                                           if outage["on"] else served(params))

    failed = materialize(DAY, "openalex", raise_on_error=False)
    assert not failed.success and "not JSON" in _failure(failed) and "rerun asks the provider again" in _failure(failed)
    outage["on"] = False  # the provider recovered
    recovered = materialize(DAY, "openalex")

    assert recovered.success
    assert not recorded_manifest(recovered).pages[0].from_cache
    day = dt.date.fromisoformat(DAY)
    assert sorted(r[0] for r in query_db("SELECT provider_id FROM works")) == sorted(api.record_ids(day, day, SEARCH.text))


def test_openalex_403_rate_limit_is_retried_and_counted_as_throttling_while_another_403_fails_at_once(pipeline_env, simulator):
    """OpenAlex's errors page lists 403 "Rate limit exceeded; slow down" beside 429: backed off and retried like a 429,
    not a partition failed with advice about its key. A 403 that says something else still fails at once."""
    api = simulator.apis["openalex"]
    served, calls = api.routes["/works"], []

    def slow_down_twice(params):
        calls.append(params)
        if len(calls) <= 2:
            return SimResponse.json(403, {"error": "Rate limit exceeded; slow down"})
        return served(params)

    api.routes["/works"] = slow_down_twice
    landed = materialize(DAY, "openalex")
    day = dt.date.fromisoformat(DAY)
    assert landed.success and sorted(r[0] for r in query_db("SELECT provider_id FROM works")) == sorted(
        api.record_ids(day, day, SEARCH.text))
    assert query_db("SELECT retries, throttled, errors FROM provider_usage") == [(2, 2, 2)]

    api.routes["/works"] = lambda params: (calls.append(params), SimResponse.json(403, {"error": "Forbidden"}))[1]
    before = len(calls)
    failed = materialize("2024-03-02", "openalex", raise_on_error=False)
    assert not failed.success and len(calls) == before + 1 and "HTTP 403" in _failure(failed)


def test_openalex_takes_a_403_for_its_rate_limit_only_when_it_says_so_and_names_no_key():
    openalex = PROVIDERS["openalex"]
    assert openalex.throttling(403, b'{"error": "Rate limit exceeded; slow down"}')
    assert not openalex.throttling(403, b'{"error": "Forbidden"}')
    assert not openalex.throttling(403, b'{"error": "Invalid API key", "message": "see the rate limit exceeded FAQ"}')
    assert not openalex.throttling(401, b'{"error": "Rate limit exceeded; slow down"}')


def test_secrets_echoed_by_the_provider_are_masked_everywhere(pipeline_env, simulator, monkeypatch):
    """An error body quoting the key, and a 200 body echoing the request URL, must not carry it anywhere."""
    secret = "sk-echo-5150-5150-5150"
    monkeypatch.setenv("OPENALEX_API_KEY", secret)
    api = simulator.apis["openalex"]
    served = api.routes["/works"]
    calls = []

    def echoing(params):
        calls.append(params)
        if len(calls) == 1:  # first: an error quoting the key
            return SimResponse.json(401, {"error": f"Invalid API key {params['api_key'][0]}", "message": f"api_key={params['api_key'][0]}"})
        response = served(params)
        page = json.loads(response.body)
        page["meta"]["request"] = f"/works?api_key={params['api_key'][0]}"  # some APIs echo the request
        response.body = json.dumps(page).encode()
        return response

    api.routes["/works"] = echoing
    with dg.instance_for_test() as instance:
        failed = materialize(DAY, "openalex", instance=instance, raise_on_error=False)
        assert not failed.success and "Invalid API key ***" in _failure(failed)
        landed = materialize(DAY, "openalex", instance=instance)
        assert landed.success and query_db("SELECT count(*) FROM works")[0][0] > 0
        events = [str(e) for run in (failed, landed) for e in instance.all_logs(run.run_id)]
    assert all(p["api_key"] == [secret] for p in calls)  # it did reach the provider
    assert not any(secret in e for e in events)
    assert files_containing(home(), secret.encode()) == []
    landing = LandingZone(home() / "landing")
    assert b'/works?api_key=***' in landing.read_page(recorded_manifest(landed).pages[0].sha256)
    assert recorded_manifest(landed).pages[0].headers["x-scholar-pipeline-secret-masked"] == "1"  # the page says it was changed


def _client(tmp_path, network, **kwargs):
    options = dict(storage=cache_storage(tmp_path, 3600, None), secret=None, mailto=None, timeout_seconds=5,
                   retry=RetryPolicy(max_attempts=2, backoff_seconds=0.01)) | kwargs
    return open_provider_client(PROVIDERS["openalex"], SETTINGS, home=tmp_path, network=network, **options)


def _trickling_server(stop: threading.Event, head: bytes, then: bytes):
    """A server that sends `head` at once, then `then` one byte every 0.3 s (a whole response would take minutes)."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                continue
            with connection:
                connection.recv(65536)
                try:
                    connection.sendall(head)
                    for byte in then:
                        if stop.wait(0.3):
                            break
                        connection.sendall(bytes([byte]))
                except OSError:
                    pass

    threading.Thread(target=serve, daemon=True).start()
    return listener


RESPONSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"


@pytest.mark.parametrize("head, then", [(RESPONSE_HEAD, b" " * 1000), (b"", RESPONSE_HEAD + b" " * 1000)], ids=["body", "headers"])
def test_a_response_that_trickles_in_ends_at_the_deadline(tmp_path, head, then):
    stop = threading.Event()
    listener = _trickling_server(stop, head, then)
    settings = ProviderSettings(base_url=f"http://127.0.0.1:{listener.getsockname()[1]}", rate_limit=1000, page_size=10, max_records=100)
    try:
        with open_provider_client(PROVIDERS["openalex"], settings, home=tmp_path, storage=cache_storage(tmp_path, 60, None),
                                  secret=None, mailto=None, timeout_seconds=5, deadline_seconds=1.0,
                                  retry=RetryPolicy(max_attempts=1)) as client, pytest.raises(ProviderRequestError) as error:
            client.get(PageRequest("/works", ()), cache_key="trickle")
    finally:
        stop.set()
        listener.close()
    assert "RequestDeadlineExceeded" in str(error.value) and "not complete after 1 s" in str(error.value)


class _RawBody(httpx.SyncByteStream):
    """A body as it comes off the wire, still in its Content-Encoding (httpx decodes `content=` at once)."""

    def __init__(self, data: bytes):
        self.data = data

    def __iter__(self):
        yield self.data


def _gzip_labelled(data: bytes) -> httpx.Response:
    return httpx.Response(200, headers={"content-encoding": "gzip"}, stream=_RawBody(data))


def test_a_body_that_is_not_the_gzip_it_claims_is_retried_then_reported(tmp_path):
    answers = iter([_gzip_labelled(b'{"results": []}'), _gzip_labelled(gzip.compress(b'{"results": []}'))])
    with _client(tmp_path, httpx.MockTransport(lambda request: next(answers))) as client:
        assert client.get(PageRequest("/works", ()), cache_key="gz").body == b'{"results": []}'
    always_bad = httpx.MockTransport(lambda request: _gzip_labelled(b"plain"))
    with _client(tmp_path / "2", always_bad) as client, pytest.raises(ProviderRequestError) as error:
        client.get(PageRequest("/works", ()), cache_key="gz2")
    assert "could not be decoded after 2 attempts" in str(error.value)


def test_a_capped_retry_after_is_said_in_the_log(tmp_path):
    answers = iter([httpx.Response(429, headers={"retry-after": "600"}), httpx.Response(200, json={"results": []})])
    warnings = []
    log = type("Log", (), {"warning": lambda self, message: warnings.append(message)})()
    with _client(tmp_path, httpx.MockTransport(lambda request: next(answers)),
                 retry=RetryPolicy(max_attempts=2, backoff_seconds=0.01, max_wait_seconds=0.05), log=log) as client:
        client.get(PageRequest("/works", ()), cache_key="ra")
    assert len(warnings) == 1 and "asked to wait 600 s; waits are capped at SCHOLAR_PIPELINE_" in warnings[0]


def test_a_damaged_landed_page_is_healed_by_the_next_fetch(pipeline_env, simulator):
    manifest = recorded_manifest(materialize(DAY, "crossref"))
    landing = LandingZone(home() / "landing")
    page_file = landing.page_path(manifest.pages[1].sha256)
    page_file.write_bytes(page_file.read_bytes()[:100])  # truncated on disk

    rerun = materialize(DAY, "crossref")

    assert rerun.success and all(p.from_cache for p in recorded_manifest(rerun).pages)
    assert landing.read_page(manifest.pages[1].sha256)  # whole again


def test_a_reader_holding_the_duckdb_file_makes_the_write_wait_not_fail(pipeline_env, simulator, tmp_path):
    materialize(DAY, "openalex")
    with dg.instance_for_test() as instance:
        # Fetched first, so that the landing starts while the reader surely still holds the file.
        materialize("2024-03-02", "openalex", instance=instance, selection=[dg.AssetKey(["sim_search", "raw"])])
        reader = subprocess.Popen([sys.executable, "-c", (
            "import duckdb, sys, time; con = duckdb.connect(sys.argv[1], read_only=True); print('open', flush=True); time.sleep(4)"),
            str(home() / "scholar.duckdb")], stdout=subprocess.PIPE, text=True)
        assert reader.stdout.readline().strip() == "open"
        result = materialize("2024-03-02", "openalex", instance=instance, selection=[dg.AssetKey(["sim_search", "works"])])
        messages = [e.user_message for e in instance.all_logs(result.run_id)]
    reader.wait(timeout=30)
    assert result.success and query_db("SELECT count(DISTINCT partition_date) FROM works")[0][0] == 2
    assert any("waiting for another process to release" in m for m in messages)


@pytest.mark.parametrize("glitched_total", [0, 10_000])
def test_an_empty_page_whose_total_moved_is_never_taken_as_the_end(pipeline_env, simulator, glitched_total):
    """A backend glitch answers page 3 with no records and another total: the answer changed under the chain, so the
    chain is fetched again from its first page and lands every record, instead of ending short with a warning."""
    api = simulator.apis["openalex"]
    served, calls = api.routes["/works"], []

    def glitch_on_the_third_call(params):
        response = served(params)
        calls.append(params.get("cursor"))
        if len(calls) == 3:
            page = json.loads(response.body)
            page["results"], page["meta"]["count"] = [], glitched_total
            response.body = json.dumps(page).encode()
        return response

    api.routes["/works"] = glitch_on_the_third_call
    result = materialize(DAY, "openalex")
    day = dt.date.fromisoformat(DAY)
    assert result.success and calls.count(["*"]) == 2  # the first page asked twice: the chain was fetched again
    landed = [r[0] for r in query_db("SELECT provider_id FROM works")]
    assert sorted(landed) == sorted(api.record_ids(day, day, SEARCH.text))
    assert all(c.passed for c in result.get_asset_check_evaluations())


def _parallel_crossref_days(tmp_path: Path, sim: ProviderSimulator, settings: ProviderSettings, mailto: str | None):
    """Three days fetched at once from the simulator's Crossref, each in a client of its own sharing one home (so one
    rate limiter): (the records of each day, the simulator's request log)."""
    crossref, days, fetched = PROVIDERS["crossref"], [dt.date(2024, 3, d) for d in (1, 2, 3)], {}

    def fetch(day: dt.date) -> None:
        with open_provider_client(crossref, settings, home=tmp_path, storage=cache_storage(tmp_path / str(day), 3600, None),
                                  secret=None, mailto=mailto, timeout_seconds=5,
                                  retry=RetryPolicy(max_attempts=20, backoff_seconds=0.01)) as client:
            fetched[day] = fetch_partition(client, crossref, settings, LandingZone(tmp_path / "landing"), query="q",
                                           text=SEARCH.text, day=day, mailto=mailto)

    threads = [threading.Thread(target=fetch, args=(day,)) for day in days]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    expected = {day: len(sim.apis["crossref"].record_ids(day, day, SEARCH.text)) for day in days}
    assert {day: sum(page.records for page in f.pages) for day, f in fetched.items()} == expected
    return sim.requests_for("crossref")


@pytest.mark.parametrize("max_in_flight", [None, 3])
def test_fetches_of_one_provider_in_parallel_keep_to_its_cap_on_requests_in_flight(tmp_path, max_in_flight):
    """Crossref's public pool takes one request at a time and refuses a second with a 429, whatever the rate. Three
    days fetched at once, each answer taking 0.15 s (the period at 50/s is 0.02 s): with its default cap (one) no
    request meets another at the provider; raised to three, requests overlap and are refused."""
    with ProviderSimulator(corpus=Corpus(seed=11, min_per_day=40, max_per_day=40), rate_limits={"crossref": 50},
                           answer_seconds={"crossref": 0.15}) as sim:
        settings = dataclasses.replace(PROVIDERS["crossref"].default_settings(None, keyed=False),
                                       base_url=sim.base_url("crossref"), rate_limit=50.0, page_size=10)
        settings = dataclasses.replace(settings, max_in_flight=max_in_flight or settings.max_in_flight)
        requests = _parallel_crossref_days(tmp_path, sim, settings, mailto=None)
    if max_in_flight is None:
        assert settings.max_in_flight == 1 and {r.in_flight for r in requests} == {1} and {r.status for r in requests} == {200}
    else:
        assert max(r.in_flight for r in requests) > 1 and 429 in {r.status for r in requests}


def test_with_a_contact_address_crossref_is_fetched_within_its_polite_pool(tmp_path):
    """`mailto=` puts the requests in Crossref's polite pool (10 a second, five at a time): the defaults that come with
    SCHOLAR_PIPELINE_MAILTO use it, requests overlap, and none is refused."""
    with ProviderSimulator(corpus=Corpus(seed=11, min_per_day=40, max_per_day=40), answer_seconds={"crossref": 0.3}) as sim:
        settings = dataclasses.replace(PROVIDERS["crossref"].default_settings("me@example.org", keyed=False),
                                       base_url=sim.base_url("crossref"), page_size=10)
        requests = _parallel_crossref_days(tmp_path, sim, settings, mailto="me@example.org")
    assert (settings.rate_limit, settings.max_in_flight) == (10.0, 5)
    assert max(r.in_flight for r in requests) > 1 and {r.status for r in requests} == {200}
    assert all(r.params["mailto"] == ["me@example.org"] for r in requests)
