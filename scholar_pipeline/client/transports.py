"""httpx transports stacked under the cache: credentials, the rate limit, the whole body within a deadline.

The order matters. The cache stores the request object it hands down, so credentials
must be added *below* it, on a new request, or the API key would be written into the
cache (hishel keeps the full URL and headers of every entry). On the way back up the
same layer masks the secret wherever the provider echoed it (`Invalid api_key …`, a
request URL quoted in the body), so neither the cache nor the landing zone nor an error
message ever holds it. The rate limit sits below the cache too, so that cache hits cost
no slot.
"""

from __future__ import annotations

import datetime as dt
import httpx

from scholar_pipeline.client.deadline import request_deadline
from scholar_pipeline.client.masking import MASK, MASKED_HEADER, mask_secret, secret_forms
from scholar_pipeline.client.ratelimit import SqliteRateLimiter
from scholar_pipeline.client.redis_ratelimit import RedisRateLimiter
from scholar_pipeline.providers.base import Credential

# Stamped on every response below the cache, so a page replayed from it keeps the time it was really fetched.
FETCHED_AT_HEADER = "x-scholar-pipeline-fetched-at"


class CredentialsTransport(httpx.BaseTransport):
    def __init__(self, inner: httpx.BaseTransport, credential: Credential | None, secret: str | None):
        self.inner, self.credential, self.secret = inner, credential, secret

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if not (self.credential and self.secret):
            return self.inner.handle_request(request)
        url, headers = request.url, request.headers.copy()
        if self.credential.query_param:
            url = url.copy_add_param(self.credential.query_param, self.secret)
        if self.credential.header:
            headers[self.credential.header] = self.credential.header_prefix + self.secret
        authenticated = httpx.Request(request.method, url, headers=headers, stream=request.stream, extensions=request.extensions)
        return self._without_secret(self.inner.handle_request(authenticated))

    def _without_secret(self, response: httpx.Response) -> httpx.Response:
        """The response with every echo of the secret masked, in the body and the headers."""
        forms = secret_forms(self.secret)
        body, headers = response.read(), list(response.headers.multi_items())
        if not any(form.encode() in body or any(form in value for _, value in headers) for form in forms):
            return response
        masked = sum(body.count(form.encode()) for form in forms)
        for form in forms:
            body = body.replace(form.encode(), MASK.encode())
        headers = [(name, mask_secret(value, self.secret)) for name, value in headers] + [(MASKED_HEADER, str(masked))]
        return httpx.Response(response.status_code, headers=headers, content=body, extensions=response.extensions)

    def close(self) -> None:
        self.inner.close()


class WholeBodyTransport(httpx.BaseTransport):
    """Read each response whole and decoded, within the request's deadline, and stamp when it arrived.

    The deadline is enforced at the socket (`deadline.py`): headers or a body trickling in
    cannot stretch a request past it. Decoding here means a body that is not the gzip it
    claims fails as a retryable `httpx.DecodingError` on this attempt, not later in a parser.
    """

    def __init__(self, inner: httpx.BaseTransport, deadline_seconds: float):
        self.inner, self.deadline_seconds = inner, deadline_seconds

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with request_deadline(request, self.deadline_seconds):
            response = self.inner.handle_request(request)
            try:
                if response.is_stream_consumed:  # a test double built from content, decoded already
                    body = response.content
                else:  # a response built from content reads it at once, decoding its Content-Encoding
                    body = httpx.Response(response.status_code, headers=response.headers, content=b"".join(response.iter_raw())).content
            finally:
                response.close()
        headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")]
        headers.append((FETCHED_AT_HEADER, dt.datetime.now(dt.timezone.utc).isoformat()))
        return httpx.Response(response.status_code, headers=headers, content=body, extensions=response.extensions)

    def close(self) -> None:
        self.inner.close()


class RateLimitedTransport(httpx.BaseTransport):
    def __init__(self, inner: httpx.BaseTransport, limiter: SqliteRateLimiter | RedisRateLimiter, key: str, rate: float,
                 in_flight: int | None = None):
        self.inner, self.limiter, self.key, self.rate, self.in_flight = inner, limiter, key, rate, in_flight

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        # The answer back (the whole body: WholeBodyTransport below): the request has arrived and is no longer in flight.
        with self.limiter.sending(self.key, self.rate, in_flight=self.in_flight):
            return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()
