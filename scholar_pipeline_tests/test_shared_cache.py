"""The Redis-backed response cache (SCHOLAR_PIPELINE_CACHE_URL) against the real Redis on loopback."""

import uuid

import httpx
import pytest
import redis

from scholar_pipeline.client.provider_client import RetryPolicy
from scholar_pipeline.client.stack import cache_storage, open_provider_client
from scholar_pipeline.providers import PROVIDERS
from scholar_pipeline.providers.base import PageRequest
from scholar_pipeline.settings import ProviderSettings

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def redis_url():
    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except redis.ConnectionError:
        pytest.fail("Redis is not running on 127.0.0.1:6379 (.ci/run starts it)")
    return REDIS_URL


def test_two_clients_share_the_cache_and_it_holds_no_secret(tmp_path, redis_url):
    seen = []
    network = httpx.MockTransport(lambda request: seen.append(request) or httpx.Response(200, json={"results": []}))
    settings = ProviderSettings(base_url="http://api.test", rate_limit=1000, page_size=10, max_records=10)
    key = f"test-{uuid.uuid4()}"
    pages = []
    for machine in ("a", "b"):  # two processes or machines, one Redis
        with open_provider_client(
            PROVIDERS["openalex"], settings, home=tmp_path / machine, storage=cache_storage(tmp_path, 60, redis_url),
            secret="sk-redis-secret", mailto=None, timeout_seconds=5, retry=RetryPolicy(max_attempts=1), network=network,
        ) as client:
            pages.append(client.get(PageRequest("/works", (("q", key),)), cache_key=key))
    assert [p.from_cache for p in pages] == [False, True] and len(seen) == 1
    stored = _stored_values(redis.Redis.from_url(redis_url), "scholar-pipeline*")
    assert any(key.encode() in value for value in stored)  # the scan does see what the cache stored
    assert not any(b"sk-redis-secret" in value for value in stored)


def _stored_values(client: redis.Redis, pattern: str) -> list[bytes]:
    """Every value under `pattern` as Redis returns it (GET, LRANGE, ...), not DUMP's compressed serialization; a key
    that went between SCAN and TYPE (another test's teardown, an expiry) has type `none` and no value."""
    read = {b"string": lambda k: [client.get(k)], b"list": lambda k: client.lrange(k, 0, -1),
            b"zset": lambda k: client.zrange(k, 0, -1), b"set": lambda k: list(client.smembers(k)),
            b"hash": lambda k: [v for pair in client.hgetall(k).items() for v in pair],
            b"stream": lambda k: [v for _, fields in client.xrange(k) for pair in fields.items() for v in pair]}
    return [value or b"" for key in client.scan_iter(pattern) for value in read.get(client.type(key), lambda k: [])(key)]
