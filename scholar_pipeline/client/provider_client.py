"""One provider's HTTP client: cached, authenticated below the cache, rate limited, retried.

Retries follow every provider's advice (back off on 429, 5xx, timeouts and dropped
connections); none of them documents Retry-After, so it is honoured when sent and never
required (CORE's `X-RateLimit-Retry-After` counts as one). Everything that leaves this module names the provider and a masked URL.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import time
from collections.abc import Callable
from dataclasses import dataclass

import hishel
import httpx
import tenacity

from scholar_pipeline.client.masking import MASKED_HEADER, mask_secret, mask_url
from scholar_pipeline.client.transports import FETCHED_AT_HEADER
from scholar_pipeline.client.usage import UsageCounter
from scholar_pipeline.providers.base import PageRequest

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
# Response headers worth keeping with a landed page: dates, validators and rate-limit state.
KEPT_HEADERS = ("content-type", "date", "last-modified", "etag", "retry-after", "x-api-pool", "x-concurrency-limit")
KEPT_HEADER_PREFIXES = ("x-ratelimit", "x-rate-limit", MASKED_HEADER)
RETRY_AFTER_HEADERS = ("retry-after", "x-ratelimit-retry-after")
_UNIX_TIME_FROM = 1e9  # 2001-09-09: a wait header's number above this is a time, not seconds


@dataclass(frozen=True)
class FetchedPage:
    request: PageRequest
    url: str  # as sent, minus credentials (they are added below the cache)
    status: int
    headers: dict[str, str]
    body: bytes
    from_cache: bool
    fetched_at: dt.datetime  # when the provider sent it, also for a page replayed from the cache
    # Failed attempts before this answer that may have reached the provider's handler (all but 429s, which are
    # refusals before any work): the answer to a retry of a request that moved a server-side cursor is another page.
    attempts_that_may_have_reached: int = 0


class ProviderRequestError(RuntimeError):
    """A request that failed for good; the message says which provider, URL and what to do."""

    def __init__(self, provider: str, url: str, problem: str, hint: str, status: int | None = None, body: bytes = b""):
        super().__init__(f"{provider} request failed: {problem}. URL: {mask_url(url)}. {hint}")
        self.provider, self.url = provider, mask_url(url)
        self.status, self.body = status, body  # the provider's last answer, if any (secrets masked below the cache)


class RetryableResponse(Exception):
    def __init__(self, response: httpx.Response, throttled: bool = False):
        super().__init__(f"HTTP {response.status_code}")
        self.response, self.throttled = response, throttled  # throttled: the provider's rate limit, a refusal at the door


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    backoff_seconds: float = 1.0  # first wait; doubles each attempt, with jitter
    max_wait_seconds: float = 60.0

    def wait(self, state: tenacity.RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, RetryableResponse):
            advised = advised_wait(error.response)
            if advised is not None:
                return min(advised, self.max_wait_seconds)
        return tenacity.wait_exponential_jitter(multiplier=self.backoff_seconds, max=self.max_wait_seconds, jitter=self.backoff_seconds)(state)


def advised_wait(response: httpx.Response) -> float | None:
    """The wait a response asks for, in seconds, if it asks."""
    return next((s for s in (retry_after_seconds(response.headers.get(h)) for h in RETRY_AFTER_HEADERS) if s is not None), None)


def retry_after_seconds(value: str | None) -> float | None:
    """A wait header as seconds from now: a number of seconds, a Unix time, an HTTP date or an ISO 8601 time.

    Retry-After is seconds or an HTTP date (RFC 9110); CORE's `X-RateLimit-Retry-After`
    has no documented format, so a number too large to be seconds (after 2001 as a Unix
    time) and an ISO time are read as the moment to wait for. Anything else asks for nothing.
    """
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        number = None
    if number is not None:
        return max(number - time.time(), 0.0) if number > _UNIX_TIME_FROM else max(number, 0.0)
    when = None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        try:
            when = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return max((when - dt.datetime.now(dt.timezone.utc)).total_seconds(), 0.0)


Explanation = Callable[[PageRequest, int, bytes], "str | None"]  # Provider.explain_refusal
Throttling = Callable[[int, bytes], bool]  # Provider.throttling


class ProviderClient:
    def __init__(self, provider: str, base_url: str, http: httpx.Client, storage: hishel.BaseStorage, retry: RetryPolicy,
                 secret: str | None = None, log=None, explain_refusal: Explanation | None = None,
                 throttling: Throttling | None = None):
        self.provider, self.base_url, self.http, self.storage, self.retry, self.log = provider, base_url, http, storage, retry, log
        self.secret = secret  # only to mask it in what is quoted from an exception
        self.explain_refusal, self.throttling = explain_refusal, throttling
        self.usage = UsageCounter()

    def _quoted(self, error: BaseException) -> str:
        """An exception's text, safe to show: an HTTP library may quote the header or URL that carried the key."""
        return mask_secret(str(error), self.secret)

    def url_for(self, request: PageRequest) -> str:
        return str(httpx.URL(self.base_url + request.path, params=request.params))

    def get(self, request: PageRequest, cache_key: str, refresh: bool = False) -> FetchedPage:
        """GET one page. `cache_key` names the page's place in its paging chain, not its URL:
        Crossref sends the same cursor string for every page, so two pages can share a URL.
        `refresh` drops a cached answer first."""
        url = self.url_for(request)
        if refresh:
            self.evict(cache_key)
        failures: list[BaseException] = []
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type((httpx.TransportError, httpx.DecodingError, RetryableResponse)),
            wait=self.retry.wait,
            stop=tenacity.stop_after_attempt(self.retry.max_attempts),
            before_sleep=self._report_retry(url, failures),
            reraise=True,
        )
        try:
            response = retrying(self._send, url, cache_key)
        except RetryableResponse as error:
            raise ProviderRequestError(
                self.provider, url, f"HTTP {error.response.status_code} after {self.retry.max_attempts} attempts ({_snippet(error.response)})",
                "The provider is rate limiting or failing; lower SCHOLAR_PIPELINE_"
                f"{self.provider.upper()}_RATE_LIMIT or retry the partition later.",
                status=error.response.status_code, body=error.response.content,
            ) from None
        except httpx.DecodingError as error:
            raise ProviderRequestError(
                self.provider, url, f"the body could not be decoded after {self.retry.max_attempts} attempts ({self._quoted(error)})",
                "The provider sent a body that is not in the Content-Encoding it declared; retry the partition later.",
            ) from None
        except httpx.TransportError as error:
            raise ProviderRequestError(
                self.provider, url, f"{type(error).__name__} after {self.retry.max_attempts} attempts ({self._quoted(error)})",
                f"Check that SCHOLAR_PIPELINE_{self.provider.upper()}_BASE_URL points at a reachable server.",
            ) from None
        if response.status_code != 200:
            explained = self.explain_refusal(request, response.status_code, response.content) if self.explain_refusal else None
            raise ProviderRequestError(self.provider, url, f"HTTP {response.status_code} ({_snippet(response)})",
                                       explained or self._hint(response.status_code), status=response.status_code, body=response.content)
        return FetchedPage(
            request=request,
            url=url,
            status=response.status_code,
            headers={k: v for k, v in response.headers.items() if k in KEPT_HEADERS or k.startswith(KEPT_HEADER_PREFIXES)},
            body=response.content,
            from_cache=_from_cache(response),
            fetched_at=_fetched_at(response),
            attempts_that_may_have_reached=sum(not _refused_before_any_work(error) for error in failures),
        )

    def evict(self, cache_key: str) -> None:
        """Drop a cached answer: before a live refetch, or because the provider module rejected it."""
        for entry in self.storage.get_entries(cache_key):
            self.storage.remove_entry(entry.id)

    def _hint(self, status: int) -> str:
        setting = f"SCHOLAR_PIPELINE_{self.provider.upper()}"
        if status in (401, 403):
            return f"The provider refused the credentials or the plan; check the {self.provider} API key in the environment."
        if status == 404:
            return f"Nothing answers at that path; check {setting}_BASE_URL (the API root, without the endpoint)."
        return f"The provider rejected the request; check the saved search's text and {setting}_PAGE_SIZE against the message."

    def _send(self, url: str, cache_key: str) -> httpx.Response:
        try:
            response = self.http.get(url, extensions={"caching": {"key": cache_key}})
        except (httpx.TransportError, httpx.DecodingError):
            self.usage.unanswered()
            raise
        status = response.status_code
        throttled = status == 429 or (status >= 400 and self.throttling is not None and self.throttling(status, response.read()))
        self.usage.answered(status, response.headers, _from_cache(response), throttled)
        if throttled or status in RETRYABLE_STATUS:
            response.read()
            raise RetryableResponse(response, throttled)
        return response

    def _report_retry(self, url: str, failures: list[BaseException]):
        """Before each wait: the failure noted in `failures` and said in the log."""
        def report(state: tenacity.RetryCallState) -> None:
            error = state.outcome.exception()
            failures.append(error)
            self.usage.retrying()
            if self.log is None:
                return
            advised = advised_wait(error.response) if isinstance(error, RetryableResponse) else None
            capped = (f" (it asked to wait {advised:.0f} s; waits are capped at SCHOLAR_PIPELINE_{self.provider.upper()}_MAX_RETRY_WAIT)"
                      if advised and advised > state.upcoming_sleep else "")
            self.log.warning(
                f"{self.provider}: attempt {state.attempt_number} failed ({self._quoted(error)}); retrying in "
                f"{state.upcoming_sleep:.1f}s{capped}: {mask_url(url)}"
            )
        return report


def _from_cache(response: httpx.Response) -> bool:
    return response.extensions.get("caching", {}).get("from_cache", False)  # hishel's CacheStatus


def _refused_before_any_work(error: BaseException) -> bool:
    """The provider's rate limit (a refusal at the door), or a request that never reached the server (no connection)."""
    if isinstance(error, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)):
        return True
    return isinstance(error, RetryableResponse) and error.throttled


def _fetched_at(response: httpx.Response) -> dt.datetime:
    """The stamp put on below the cache; an entry cached before stamps existed falls back to its Date header."""
    stamp = response.headers.get(FETCHED_AT_HEADER)
    if stamp:
        return dt.datetime.fromisoformat(stamp)
    try:
        return email.utils.parsedate_to_datetime(response.headers["date"])
    except (KeyError, TypeError, ValueError):
        return dt.datetime.now(dt.timezone.utc)


def _snippet(response: httpx.Response) -> str:
    text = response.content[:200].decode("utf-8", errors="replace")
    return " ".join(text.split()) or "empty body"
