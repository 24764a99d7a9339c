"""Assemble a provider's client: cache → credentials → rate limit → whole body within a deadline → connection pool."""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Iterator

import hishel
import httpx
from hishel.httpx import CacheTransport

from scholar_pipeline.client.deadline import DeadlineHTTPTransport
from scholar_pipeline.client.encrypted_storage import EncryptedStorage
from scholar_pipeline.client.provider_client import ProviderClient, RetryPolicy
from scholar_pipeline.client.ratelimit import SqliteRateLimiter
from scholar_pipeline.client.redis_ratelimit import RedisRateLimiter
from scholar_pipeline.client.transports import CredentialsTransport, RateLimitedTransport, WholeBodyTransport
from scholar_pipeline.providers.base import Provider
from scholar_pipeline.settings import REDIS_SCHEMES, ProviderSettings, cache_key, rate_limit_fallback, rate_limit_url
REDIS_KEY_PREFIX = "scholar-pipeline"


def user_agent(mailto: str | None) -> str:
    contact = f"; mailto:{mailto}" if mailto else ""
    return f"scholar-pipeline/{version('scholar-pipeline')} (+https://github.com/scholar-pipeline/scholar-pipeline{contact})"


def cache_storage(home: Path, ttl_seconds: float, cache_url: str | None,
                  environ: Mapping[str, str] = os.environ) -> hishel.BaseStorage:
    """SQLite under the home by default; `redis://...` shares one cache between machines.

    Entries are encrypted with SCHOLAR_PIPELINE_CACHE_KEY when it is set (encrypted_storage.py). The key is read
    here, from the environment, rather than passed in: a resource's config would put it in the run config."""
    cipher = cache_key(environ)  # a malformed key fails here, before any request
    if cache_url:
        if not cache_url.startswith(REDIS_SCHEMES):
            raise ValueError(
                f"SCHOLAR_PIPELINE_CACHE_URL must start with one of {', '.join(REDIS_SCHEMES)} (a Redis server to share "
                f"the HTTP cache); got a {cache_url.partition(':')[0]!r} URL. Unset it to keep the cache in SQLite under the home."
            )
        import redis

        client = redis.Redis.from_url(cache_url)
        server = client.connection_pool.connection_kwargs  # the URL may hold a password: name the server without it
        where = server.get("path") or f"{server.get('host')}:{server.get('port')}"
        storage = hishel.RedisStorage(client=client, default_ttl=ttl_seconds, key_prefix=REDIS_KEY_PREFIX)
        return EncryptedStorage(storage, cipher, f"Redis {where} db {server.get('db', 0)} (keys {REDIS_KEY_PREFIX}:*)")
    # An absolute path in a directory of its own: hishel writes a `.gitignore` beside the database.
    path = home / "cache" / "http" / "responses.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)
    return EncryptedStorage(hishel.SqliteStorage(database_path=str(path), default_ttl=ttl_seconds), cipher, str(path))


def rate_limiter(home: Path, log=None, environ: Mapping[str, str] = os.environ,
                 deadline_seconds: float = 300.0) -> SqliteRateLimiter | RedisRateLimiter:
    """Per machine in SQLite under the home, or across machines in Redis (settings.rate_limit_url), read from the
    environment here, like the cache key: a URL with a password must not reach a resource's config. A place among the
    requests in flight is held at most twice the whole-response deadline (a request cannot take longer)."""
    expiry = 2 * deadline_seconds
    local = SqliteRateLimiter(home / "locks" / "rate_limits.sqlite", log=log, in_flight_expiry=expiry)
    url = rate_limit_url(environ)
    if url is None:
        return local
    return RedisRateLimiter(url, fallback=local if rate_limit_fallback(environ) == "local" else None, log=log,
                            in_flight_expiry=expiry)


@contextmanager
def open_provider_client(
    provider: Provider,
    settings: ProviderSettings,
    *,
    home: Path,
    storage: hishel.BaseStorage,
    secret: str | None,
    mailto: str | None,
    timeout_seconds: float,
    retry: RetryPolicy,
    deadline_seconds: float = 300.0,
    log=None,
    network: httpx.BaseTransport | None = None,
) -> Iterator[ProviderClient]:
    """`network` replaces the connection pool at the bottom of the stack (a proxy, a test double).

    `timeout_seconds` bounds each connect and socket read; `deadline_seconds` a whole response."""
    limiter = rate_limiter(home, log, deadline_seconds=deadline_seconds)
    pool = network or DeadlineHTTPTransport(limits=httpx.Limits(max_connections=4, max_keepalive_connections=4))
    transport = CacheTransport(
        next_transport=CredentialsTransport(
            RateLimitedTransport(WholeBodyTransport(pool, deadline_seconds), limiter, key=provider.name, rate=settings.rate_limit,
                                 in_flight=settings.max_in_flight),
            provider.credential,
            secret,
        ),
        storage=storage,
    )
    http = httpx.Client(transport=transport, timeout=timeout_seconds, headers={"User-Agent": user_agent(mailto)})
    try:
        yield ProviderClient(provider.name, settings.base_url, http, storage, retry, secret=secret, log=log,
                             explain_refusal=provider.explain_refusal, throttling=provider.throttling)
    finally:
        http.close()
