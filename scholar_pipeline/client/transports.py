"""httpx transports stacked under the cache: credentials, then the rate limit.

The order matters. The cache stores the request object it hands down, so credentials
must be added *below* it, on a new request, or the API key would be written into the
cache (hishel keeps the full URL and headers of every entry). The rate limit sits below
the cache too, so that cache hits cost no slot.
"""

from __future__ import annotations

import httpx

from scholar_pipeline.client.ratelimit import SqliteRateLimiter
from scholar_pipeline.providers.base import Credential


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
        return self.inner.handle_request(authenticated)

    def close(self) -> None:
        self.inner.close()


class RateLimitedTransport(httpx.BaseTransport):
    def __init__(self, inner: httpx.BaseTransport, limiter: SqliteRateLimiter, key: str, rate: float):
        self.inner, self.limiter, self.key, self.rate = inner, limiter, key, rate

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.limiter.acquire(self.key, self.rate)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()
