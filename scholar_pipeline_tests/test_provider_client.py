"""The HTTP stack: retries, Retry-After, cache hits, and credentials that never reach the cache."""

import datetime as dt
import time
import os

import httpx
import pytest
import tenacity

from scholar_pipeline.client.masking import check_secret, mask_url
from scholar_pipeline.client.provider_client import ProviderRequestError, RetryableResponse, RetryPolicy, retry_after_seconds
from scholar_pipeline.client.stack import cache_storage, open_provider_client
from scholar_pipeline.providers import PROVIDERS
from scholar_pipeline.providers.base import PageRequest
from scholar_pipeline.settings import ProviderSettings
from scholar_pipeline_tests.helpers import files_containing

SETTINGS = ProviderSettings(base_url="http://api.test", rate_limit=1000, page_size=10, max_records=100)
REQUEST = PageRequest("/works", (("filter", "x"),))


def _client(tmp_path, network, secret=None):
    return open_provider_client(
        PROVIDERS["openalex"], SETTINGS, home=tmp_path, storage=cache_storage(tmp_path, 3600, None), secret=secret,
        mailto="me@example.org", timeout_seconds=5, retry=RetryPolicy(max_attempts=4, backoff_seconds=0.01), network=network,
    )


def test_retries_429_and_5xx_then_succeeds(tmp_path):
    answers = iter([httpx.Response(429, text="Rate exceeded."), httpx.Response(503), httpx.Response(200, json={"ok": 1})])
    seen = []
    network = httpx.MockTransport(lambda request: seen.append(request) or next(answers))
    with _client(tmp_path, network) as client:
        page = client.get(REQUEST, cache_key="k1")
    assert page.status == 200 and page.body == b'{"ok":1}' and len(seen) == 3


def test_gives_up_with_a_clear_error_after_the_last_attempt(tmp_path):
    network = httpx.MockTransport(lambda request: httpx.Response(500, text="upstream error"))
    with _client(tmp_path, network) as client, pytest.raises(ProviderRequestError) as error:
        client.get(REQUEST, cache_key="k2")
    message = str(error.value)
    assert "openalex" in message and "HTTP 500 after 4 attempts" in message and "upstream error" in message


def test_second_request_is_served_from_cache_without_secrets_in_it(tmp_path):
    seen = []
    network = httpx.MockTransport(lambda request: seen.append(request) or httpx.Response(200, json={"results": []}))
    with _client(tmp_path, network, secret="sk-cache-test") as client:
        first = client.get(REQUEST, cache_key="chain#1")
        second = client.get(REQUEST, cache_key="chain#1")
    assert (first.from_cache, second.from_cache) == (False, True) and len(seen) == 1
    assert seen[0].url.params["api_key"] == "sk-cache-test"  # added on the way out...
    assert "mailto:me@example.org" in seen[0].headers["user-agent"]
    assert files_containing(tmp_path, b"sk-cache-test") == []  # ...below the cache, which never stores it
    assert "sk-cache-test" not in first.url


def test_retry_after_is_honoured_when_sent():
    assert retry_after_seconds("3") == 3.0
    soon = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=30)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert 25 <= retry_after_seconds(soon) <= 30
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    # CORE's X-RateLimit-Retry-After has no documented format: a Unix time and an ISO time are moments to wait for.
    assert 55 <= retry_after_seconds(str(int(time.time()) + 60)) <= 60
    in_ten_minutes = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=10)).isoformat()
    assert 590 <= retry_after_seconds(in_ten_minutes) <= 600
    assert 590 <= retry_after_seconds(in_ten_minutes.replace("+00:00", "Z")) <= 600
    assert retry_after_seconds("2001-01-01T00:00:00") == 0.0  # a moment past asks for no wait
    policy = RetryPolicy(backoff_seconds=0.5, max_wait_seconds=10)
    state = tenacity.RetryCallState(None, None, (), {})
    state.attempt_number = 1
    state.set_exception((RetryableResponse, RetryableResponse(httpx.Response(429, headers={"retry-after": "7"})), None))
    assert policy.wait(state) == 7
    state.set_exception((RetryableResponse, RetryableResponse(httpx.Response(429, headers={"retry-after": "700"})), None))
    assert policy.wait(state) == 10  # capped
    state.set_exception((RetryableResponse, RetryableResponse(httpx.Response(503)), None))
    assert 0.5 <= policy.wait(state) <= 1.0  # no header: exponential backoff with jitter


def test_urls_are_masked_wherever_a_secret_parameter_appears():
    assert mask_url("http://x/works?filter=a&api_key=abc123&cursor=*") == "http://x/works?filter=a&api_key=***&cursor=*"
    assert mask_url("http://x/search?q=1&API_KEY=s3cret") == "http://x/search?q=1&API_KEY=***"
    assert mask_url("http://x/works?keyword=soil") == "http://x/works?keyword=soil"


def test_a_cache_url_that_is_not_redis_is_refused_not_ignored(tmp_path):
    with pytest.raises(ValueError, match="SCHOLAR_PIPELINE_CACHE_URL must start with"):
        cache_storage(tmp_path, 60, "memcached://127.0.0.1:11211")


def test_each_client_closes_its_cache_and_limiter_files(tmp_path):
    """A long-lived process (the daemon, a code server) opens a client per run: nothing may stay open."""
    def open_files() -> list[str]:
        return [os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd") if os.path.exists(f"/proc/self/fd/{fd}")]

    network = httpx.MockTransport(lambda request: httpx.Response(200, json={"results": []}))
    for n in range(5):
        with _client(tmp_path, network) as client:
            client.get(REQUEST, cache_key=f"fd{n}")
    assert [f for f in open_files() if str(tmp_path) in f] == []


def test_an_exception_quoting_the_secret_is_masked(tmp_path):
    """h11 quotes a header it refuses, token and all; the error that reaches the event log must not."""
    def refuse(request):
        raise httpx.LocalProtocolError(f"Illegal header value b'{request.url.params['api_key']}'")

    with _client(tmp_path, httpx.MockTransport(refuse), secret="sk-quoted-by-h11") as client, pytest.raises(ProviderRequestError) as error:
        client.get(REQUEST, cache_key="quoted")
    assert "LocalProtocolError" in str(error.value) and "sk-quoted-by-h11" not in str(error.value) and "***" in str(error.value)


@pytest.mark.parametrize("secret, problem", [("sk-key\n", "whitespace"), ("none", "shorter than 16"), ("ab\x00cdefghij", "control")])
def test_a_key_that_cannot_be_real_is_refused_without_showing_it(secret, problem):
    with pytest.raises(ValueError) as error:
        check_secret("OPENALEX_API_KEY", secret)
    assert "OPENALEX_API_KEY" in str(error.value) and problem in str(error.value) and secret.strip() not in str(error.value)
