"""SCHOLAR_PIPELINE_CACHE_KEY: the HTTP cache encrypted at rest, in SQLite and in the real Redis on loopback.

Real fetches from the provider simulator through the project's client; the stored rows and Redis values are read
raw (neither backend compresses them) and must hold none of the page's bytes."""

import datetime as dt
import json
import logging
import sqlite3
import uuid
from contextlib import closing

import pytest
import redis
from cryptography.fernet import Fernet

from scholar_pipeline.client.encrypted_storage import FRAME_END, SEALED_HEADER, CacheKeyMismatch
from scholar_pipeline.client.provider_client import RetryPolicy
from scholar_pipeline.client.stack import REDIS_KEY_PREFIX, cache_storage, open_provider_client
from scholar_pipeline.defs.resources import scholar_api_from_env
from scholar_pipeline.providers import PROVIDERS
from scholar_pipeline.settings import ProviderSettings
from scholar_pipeline_tests.helpers import SEARCH, files_containing

KEY_SETTING = "SCHOLAR_PIPELINE_CACHE_KEY"
REDIS_URL = "redis://127.0.0.1:6379/0"
OPENALEX = PROVIDERS["openalex"]
TEST_KEYS = "encryption-test-"
# 25 records make a page of about 130 KB: its one sealed frame (base64) spans two of the backends' 128 KiB chunks.
REQUEST = OPENALEX.first_request(SEARCH.text, dt.date(2024, 3, 1), 25, None)


@pytest.fixture(autouse=True)
def secret_scan(request):
    """The suite's secret scan (conftest.py) knows the provider keys only: from here on it reads this variable too."""
    scan = request.config.pluginmanager.get_plugin("secret_scan")
    if scan is not None and KEY_SETTING not in scan.secret_env:
        scan.secret_env += (KEY_SETTING,)
    return scan


@pytest.fixture
def new_key(secret_scan):
    """Fernet keys for a test, each one looked for by the secret scan: it reads the variable between test phases only,
    so a key set and replaced within one, or one of a comma-separated list, would escape it."""
    scan = secret_scan

    def make() -> str:
        key = Fernet.generate_key().decode()
        if scan is not None:
            scan.keys.setdefault(key, set()).add(KEY_SETTING)
        return key

    return make


@pytest.fixture(params=["sqlite", "redis"])
def backend(request):
    """None for SQLite under the home, or the loopback Redis (its entries found by this test's own cache keys)."""
    if request.param == "sqlite":
        yield None
        return
    server = redis.Redis.from_url(REDIS_URL)
    try:
        server.ping()
    except redis.ConnectionError:
        pytest.fail("Redis is not running on 127.0.0.1:6379 (.ci/run starts it)")
    yield REDIS_URL
    for index in server.scan_iter(f"{REDIS_KEY_PREFIX}:idx:{TEST_KEYS}*"):
        ids = [member.decode() for member in server.zrange(index, 0, -1)]
        server.delete(index, *(f"{REDIS_KEY_PREFIX}:{kind}:{id_}" for id_ in ids for kind in ("entry", "stream", "stream_done")))


@pytest.fixture
def cache_key():
    """A chain key of this test alone, so that the shared Redis's other entries (the suite runs in parallel) stay out."""
    return f"{TEST_KEYS}{uuid.uuid4()}"


def _fetch(tmp_path, simulator, backend, cache_key):
    settings = ProviderSettings(base_url=simulator.base_url("openalex"), rate_limit=1000, page_size=25, max_records=1000)
    with open_provider_client(OPENALEX, settings, home=tmp_path, storage=cache_storage(tmp_path, 3600, backend), secret=None,
                              mailto=None, timeout_seconds=10, retry=RetryPolicy(max_attempts=1)) as client:
        return client.get(REQUEST, cache_key=cache_key)


def _stored(tmp_path, backend, cache_key) -> list[tuple[bytes, bytes]]:
    """Each stored entry of `cache_key` as (head, body): the request-and-response blob and its body chunks joined."""
    if backend is None:
        with closing(sqlite3.connect(tmp_path / "cache" / "http" / "responses.sqlite")) as con:
            rows = con.execute("SELECT id, data FROM entries WHERE cache_key = ?", (cache_key.encode(),)).fetchall()
            chunks = [con.execute("SELECT chunk_data FROM streams WHERE entry_id = ? ORDER BY chunk_number", (id_,)).fetchall()
                      for id_, _ in rows]
        return [(data, b"".join(c for (c,) in chunked)) for (_, data), chunked in zip(rows, chunks)]
    server = redis.Redis.from_url(backend)
    ids = [member.decode() for member in server.zrange(f"{REDIS_KEY_PREFIX}:idx:{cache_key}", 0, -1)]
    return [(server.get(f"{REDIS_KEY_PREFIX}:entry:{id_}"), b"".join(server.lrange(f"{REDIS_KEY_PREFIX}:stream:{id_}", 0, -1)))
            for id_ in ids]


def _storage_chunks(tmp_path, backend, cache_key) -> int:
    if backend is None:
        with closing(sqlite3.connect(tmp_path / "cache" / "http" / "responses.sqlite")) as con:
            return con.execute("SELECT count(*) FROM streams JOIN entries ON entries.id = streams.entry_id WHERE cache_key = ?",
                               (cache_key.encode(),)).fetchone()[0]
    server = redis.Redis.from_url(backend)
    return sum(server.llen(f"{REDIS_KEY_PREFIX}:stream:{m.decode()}") for m in server.zrange(f"{REDIS_KEY_PREFIX}:idx:{cache_key}", 0, -1))


def test_a_fetched_page_is_stored_encrypted_and_served_from_the_cache(tmp_path, simulator, backend, cache_key, monkeypatch, new_key, caplog):
    caplog.set_level(logging.DEBUG)
    key = new_key()
    monkeypatch.setenv(KEY_SETTING, key)

    first = _fetch(tmp_path, simulator, backend, cache_key)
    second = _fetch(tmp_path, simulator, backend, cache_key)

    assert (first.from_cache, second.from_cache) == (False, True) and len(simulator.requests_for("openalex")) == 1
    assert second.body == first.body and second.headers == first.headers and second.fetched_at == first.fetched_at
    title = json.loads(first.body)["results"][0]["title"].encode()
    [(head, body)] = _stored(tmp_path, backend, cache_key)
    for needle in (title, b"urban heat", SEARCH.text.encode(), b"large%20language", b"application/json", b"x-ratelimit"):
        assert needle not in head and needle not in body, needle  # no body, no header, no query text
    assert SEALED_HEADER.encode() in head and _storage_chunks(tmp_path, backend, cache_key) >= 2
    # What was stored is the page, sealed frame by frame: opened with the key (less each frame's body id and number),
    # it is the body served.
    opened = b"".join(Fernet(key.encode()).decrypt(frame)[16 + 8:] for frame in body.split(FRAME_END)[:-1])
    assert opened == first.body and title in first.body
    if backend is None:
        assert files_containing(tmp_path, title) == []  # nor anywhere else in the home (WAL, page slack)
    assert key not in caplog.text


def test_without_a_key_the_cache_is_plain_as_before(tmp_path, simulator, cache_key, monkeypatch):
    monkeypatch.delenv(KEY_SETTING, raising=False)
    first = _fetch(tmp_path, simulator, None, cache_key)
    second = _fetch(tmp_path, simulator, None, cache_key)
    assert (first.from_cache, second.from_cache) == (False, True) and second.body == first.body
    [(head, body)] = _stored(tmp_path, None, cache_key)
    assert body == first.body and SEALED_HEADER.encode() not in head and b"x-ratelimit" in head


def test_a_wrong_key_is_a_clear_error_not_a_refetch(tmp_path, simulator, backend, cache_key, monkeypatch, new_key):
    monkeypatch.setenv(KEY_SETTING, new_key())
    _fetch(tmp_path, simulator, backend, cache_key)
    other = new_key()
    monkeypatch.setenv(KEY_SETTING, other)

    with pytest.raises(CacheKeyMismatch) as error:
        _fetch(tmp_path, simulator, backend, cache_key)

    message = str(error.value)
    assert "written with another key" in message and f"Set {KEY_SETTING} to the key" in message and "or clear the cache" in message
    where = str(tmp_path / "cache" / "http" / "responses.sqlite") if backend is None else f"Redis 127.0.0.1:6379 db 0 (keys {REDIS_KEY_PREFIX}:*)"
    assert where in message and other not in message
    assert len(simulator.requests_for("openalex")) == 1  # nothing was fetched again over it
    assert len(_stored(tmp_path, backend, cache_key)) == 1  # and the entry is still there for the right key


def test_encrypted_entries_read_without_a_key_are_an_error(tmp_path, simulator, cache_key, monkeypatch, new_key):
    monkeypatch.setenv(KEY_SETTING, new_key())
    _fetch(tmp_path, simulator, None, cache_key)
    monkeypatch.delenv(KEY_SETTING)
    with pytest.raises(CacheKeyMismatch, match=f"holds encrypted entries but {KEY_SETTING} is not set"):
        _fetch(tmp_path, simulator, None, cache_key)
    assert len(simulator.requests_for("openalex")) == 1


def test_a_plain_entry_is_replaced_by_an_encrypted_one_once_a_key_is_set(tmp_path, simulator, cache_key, monkeypatch, new_key):
    monkeypatch.delenv(KEY_SETTING, raising=False)
    _fetch(tmp_path, simulator, None, cache_key)
    monkeypatch.setenv(KEY_SETTING, new_key())
    refetched = _fetch(tmp_path, simulator, None, cache_key)
    cached = _fetch(tmp_path, simulator, None, cache_key)
    assert (refetched.from_cache, cached.from_cache) == (False, True) and len(simulator.requests_for("openalex")) == 2
    assert cached.body == refetched.body  # the simulator's meta differs between answers: this one is the refetch
    heads = [head for head, _ in _stored(tmp_path, None, cache_key)]
    with closing(sqlite3.connect(tmp_path / "cache" / "http" / "responses.sqlite")) as con:
        visible = con.execute("SELECT count(*) FROM entries WHERE cache_key = ? AND expires_at > 1", (cache_key.encode(),)).fetchone()[0]
    assert visible == 1 and sum(SEALED_HEADER.encode() in head for head in heads) == 1  # the plain one is hidden, then reclaimed


def test_a_key_list_rotates_old_entries_stay_readable(tmp_path, simulator, cache_key, monkeypatch, new_key):
    old, new = new_key(), new_key()
    monkeypatch.setenv(KEY_SETTING, old)
    first = _fetch(tmp_path, simulator, None, cache_key)
    monkeypatch.setenv(KEY_SETTING, f"{new},{old}")
    again = _fetch(tmp_path, simulator, None, cache_key)
    assert again.from_cache and again.body == first.body and len(simulator.requests_for("openalex")) == 1


@pytest.mark.parametrize("table, column, problem", [("streams", "entry_id", "holds another entry's data"),
                                                     ("entries", "cache_key", "stored under another cache key")])
def test_entries_or_bodies_swapped_do_not_open(tmp_path, simulator, monkeypatch, new_key, table, column, problem):
    """Someone with write access swaps two entries' bodies, or their cache keys: each still decrypts, but belongs to
    the other entry, and must not be served as this one."""
    monkeypatch.setenv(KEY_SETTING, new_key())
    _fetch(tmp_path, simulator, None, "a")
    _fetch(tmp_path, simulator, None, "b")
    with closing(sqlite3.connect(tmp_path / "cache" / "http" / "responses.sqlite")) as con, con:
        ids = dict(con.execute("SELECT cache_key, id FROM entries").fetchall())
        values = (ids[b"a"], ids[b"b"]) if column == "entry_id" else (b"a", b"b")
        con.execute("PRAGMA foreign_keys = OFF")  # streams rows briefly point at no entry
        for old, new in ((values[0], b"moving"), (values[1], values[0]), (b"moving", values[1])):
            con.execute(f"UPDATE {table} SET {column} = ? WHERE {column} = ?", (new, old))
    with pytest.raises(CacheKeyMismatch, match=problem):
        _fetch(tmp_path, simulator, None, "a")


MALFORMED = {
    "not base64": "this-is-not-a-fernet-key-at-all!",
    "trailing newline": Fernet.generate_key().decode() + "\n",
    "too short": Fernet.generate_key().decode()[:40],
    "second of a list": Fernet.generate_key().decode() + ",sk-pasted-another-secret-here",
}


@pytest.mark.parametrize("raw", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_key_fails_before_any_request_without_showing_it(tmp_path, simulator, monkeypatch, raw):
    monkeypatch.setenv(KEY_SETTING, raw)
    monkeypatch.setenv("SCHOLAR_PIPELINE_HOME", str(tmp_path))
    monkeypatch.setenv("SCHOLAR_PIPELINE_OPENALEX_BASE_URL", simulator.base_url("openalex"))
    with pytest.raises(ValueError) as error, scholar_api_from_env().client(OPENALEX):
        pass
    message = str(error.value)
    assert message.startswith(KEY_SETTING) and all(part.strip() not in message for part in raw.split(","))
    assert simulator.requests_for("openalex") == []
