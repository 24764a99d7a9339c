"""The rate limit shared across machines through this machine's Redis: processes with homes of their own (so nothing
but Redis is shared, as on separate machines) never put more than the limit in any window and share it fairly; with
Redis gone a fetch fails at once naming the server, or falls back to the local limiter when told to; never hangs.

Workers run under the spawn start method, so this module imports nothing heavy at the top."""

import datetime as dt
import logging
import multiprocessing
import os
import random
import socket
import subprocess
import time
import uuid
from collections import Counter
from queue import Empty

import duckdb
import pytest
import redis

from scholar_pipeline.client.ratelimit import SqliteRateLimiter
from scholar_pipeline.client.redis_ratelimit import RateLimiterUnavailable, RedisRateLimiter
from scholar_pipeline.settings import rate_limit_fallback, rate_limit_url
from scholar_pipeline_tests.test_ratelimit import fairly_shared, holding_in_thread, most_open_at_once, slow_answers

REDIS = "redis://127.0.0.1:6379/11"  # a database of its own; every test uses keys of its own too
PASSWORD = "redis-limiter-password-5c8e1f"


def _worker(url: str, home: str, key: str, rate: float, count: int, seed: int, queue, barrier) -> None:
    """One "machine": its own home, so its own SQLite; sends through `sending` as the client does, each request arriving
    at a random moment between its send and its answer, which alone bounds it (`transit` longer than any answer takes,
    as in test_ratelimit's workers)."""
    rng = random.Random(seed)
    limiter = RedisRateLimiter(url, fallback=None, transit=5.0)
    barrier.wait(timeout=120)
    for _ in range(count):
        with limiter.sending(key, rate):
            time.sleep(rng.uniform(0, 0.06) if rng.random() < 0.5 else 0)
            queue.put((seed, time.time()))
            time.sleep(rng.uniform(0, 0.02))


def _get(queue, workers):
    while True:
        try:
            return queue.get(timeout=1)
        except Empty:
            dead = [w for w in workers if w.exitcode not in (None, 0)]
            assert not dead, f"a worker died: exit {dead[0].exitcode}"


def _max_in_any_window(times: list[float], seconds: float = 1.0) -> int:
    times = sorted(times)
    return max(sum(1 for t in times[i:] if t - start < seconds) for i, start in enumerate(times))


@pytest.fixture
def key():
    name = f"test-{uuid.uuid4().hex[:8]}"
    yield name
    client = redis.Redis.from_url(REDIS)
    for stale in client.scan_iter(f"scholar-pipeline:rate:{{{name}}}:*"):
        client.delete(stale)


def test_four_machines_share_one_limit_fairly_and_never_exceed_it(tmp_path, key):
    context = multiprocessing.get_context("spawn")
    queue, barrier = context.Queue(), context.Barrier(4)
    rate, per_process = 7.0, 10
    workers = [context.Process(target=_worker, args=(REDIS, str(tmp_path / f"home{i}"), key, rate, per_process, i, queue,
                                                     barrier)) for i in range(4)]
    for w in workers:
        w.start()
    events = [_get(queue, workers) for _ in range(4 * per_process)]
    for w in workers:
        w.join(timeout=30)
    arrivals = sorted(t for _, t in events)
    assert _max_in_any_window(arrivals) <= rate
    assert (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]) > 0.8 * rate  # and the limit is used, not wasted
    first_half = sorted(events, key=lambda e: e[1])[: len(events) // 2]
    assert set(Counter(seed for seed, _ in first_half)) == {0, 1, 2, 3}


@pytest.mark.parametrize("cap", [1, 2])
def test_requests_in_flight_across_machines_never_exceed_the_cap(key, cap):
    requests = slow_answers(REDIS, key, cap)
    assert most_open_at_once(requests) == cap and fairly_shared(requests)
    client = redis.Redis.from_url(REDIS)  # every place given back, no one left in line
    assert not client.zcard(f"scholar-pipeline:rate:{{{key}}}:in_flight") and not client.zcard(f"scholar-pipeline:rate:{{{key}}}:in_flight_line")


def test_a_place_whose_admission_answer_was_lost_is_given_back(key, monkeypatch):
    """Redis admits the caller, and the answer never arrives (a timeout): the fetch fails, and the place is not left
    held until it expires (600 s), which would stop every machine's requests to the provider."""
    limiter = RedisRateLimiter(REDIS)
    admit = limiter.admit_script

    def admitted_then_lost(*args, **kwargs):
        admit(*args, **kwargs)
        raise redis.TimeoutError("Timeout reading from socket")

    monkeypatch.setattr(limiter, "admit_script", admitted_then_lost)
    with pytest.raises(RateLimiterUnavailable, match="TimeoutError"), limiter.sending(key, rate=100.0, in_flight=1):
        pass
    assert not redis.Redis.from_url(REDIS).zcard(f"scholar-pipeline:rate:{{{key}}}:in_flight")
    entered, leave = holding_in_thread(RedisRateLimiter(REDIS), key)
    assert entered.wait(timeout=5)
    leave.set()


def test_a_place_whose_release_failed_is_dropped_by_the_next_look_of_its_process(key, monkeypatch):
    from scholar_pipeline.client.ratelimit import OWN_PLACES

    limiter = RedisRateLimiter(REDIS)
    with monkeypatch.context() as failing:
        failing.setattr(RedisRateLimiter, "_give_back", lambda self, key, place: OWN_PLACES.discard(place))
        with limiter.sending(key, rate=100.0, in_flight=1):
            pass
    assert redis.Redis.from_url(REDIS).zcard(f"scholar-pipeline:rate:{{{key}}}:in_flight") == 1  # left behind
    entered, leave = holding_in_thread(limiter, key)
    assert entered.wait(timeout=5)  # not after the place's expiry (600 s)
    leave.set()


def test_a_late_waker_pushes_the_next_sender_back(key):
    limiter = RedisRateLimiter(REDIS)
    started = time.monotonic()
    limiter.acquire(key, rate=2)
    time.sleep(0.3)
    limiter.acquire(key, rate=2)  # a period after the first send, whatever the reservation said
    limiter.acquire(key, rate=2)
    assert time.monotonic() - started >= 1.0 - 0.01


def test_redis_down_fails_at_once_naming_the_server_without_its_password(tmp_path, key):
    limiter = RedisRateLimiter(f"redis://:{PASSWORD}@127.0.0.1:{_closed_port()}/0", timeout=2)
    started = time.monotonic()
    with pytest.raises(RateLimiterUnavailable) as error:
        limiter.acquire(key, rate=5)
    assert time.monotonic() - started < 5
    message = str(error.value)
    assert "127.0.0.1" in message and "SCHOLAR_PIPELINE_RATE_LIMIT_FALLBACK=local" in message
    assert PASSWORD not in message and "redis://:***@" in message


def test_a_redis_that_never_answers_fails_within_the_timeout(key):
    with socket.socket() as silent:  # accepts the connection, never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        limiter = RedisRateLimiter(f"redis://127.0.0.1:{silent.getsockname()[1]}/0", timeout=1)
        started = time.monotonic()
        with pytest.raises(RateLimiterUnavailable, match="TimeoutError"):
            limiter.acquire(key, rate=5)
        assert time.monotonic() - started < 4


def test_redis_down_with_the_local_fallback_limits_this_machine_and_says_so_once(tmp_path, key, caplog):
    log = logging.getLogger("test_redis_ratelimit")
    local = SqliteRateLimiter(tmp_path / "rl.sqlite")
    limiter = RedisRateLimiter(f"redis://127.0.0.1:{_closed_port()}/0", fallback=local, timeout=1, log=log)
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="test_redis_ratelimit"):
        for _ in range(3):
            limiter.acquire(key, rate=4)
    assert time.monotonic() - started >= 0.5 - 0.01  # spaced by the local limiter: 3 sends at 4/s
    warnings = [r for r in caplog.records if "this machine alone" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    with local._connect() as con:
        assert con.execute("SELECT count(*) FROM rate_send_log WHERE key = ?", [key]).fetchone()[0] == 3


def test_after_an_outage_the_local_fallback_asks_redis_again_only_now_and_then(tmp_path, key, caplog):
    log = logging.getLogger("test_redis_ratelimit")
    limiter = RedisRateLimiter(REDIS, fallback=SqliteRateLimiter(tmp_path / "rl.sqlite"), log=log, retry_redis=0.5)
    asked, reserve = [], limiter.reserve_script

    def down(*args, **kwargs):
        asked.append(1)
        raise redis.ConnectionError("Redis went away")

    limiter.reserve_script = down
    with caplog.at_level(logging.INFO, logger="test_redis_ratelimit"):
        for _ in range(4):  # within half a second: Redis is asked once, the local limiter serves all four
            limiter.acquire(key, rate=20)
        assert len(asked) == 1
        limiter.reserve_script = reserve
        time.sleep(0.6)
        limiter.acquire(key, rate=20)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("this machine alone" in m for m in messages) == 1 and any("answers again" in m for m in messages)
    assert redis.Redis.from_url(REDIS).exists(f"scholar-pipeline:rate:{{{key}}}:sends")  # the last send went through Redis


def test_the_limiter_url_and_fallback_are_settings():
    assert rate_limit_url({}) is None
    assert rate_limit_url({"SCHOLAR_PIPELINE_CACHE_URL": REDIS}) == REDIS  # the shared cache's Redis by default
    assert rate_limit_url({"SCHOLAR_PIPELINE_CACHE_URL": REDIS, "SCHOLAR_PIPELINE_RATE_LIMIT_URL": "local"}) is None
    assert rate_limit_url({"SCHOLAR_PIPELINE_RATE_LIMIT_URL": "redis://other:6379/3"}) == "redis://other:6379/3"
    with pytest.raises(ValueError, match="SCHOLAR_PIPELINE_RATE_LIMIT_URL must start with one of"):
        rate_limit_url({"SCHOLAR_PIPELINE_RATE_LIMIT_URL": "http://127.0.0.1:6379"})
    assert rate_limit_fallback({}) == "fail" and rate_limit_fallback({"SCHOLAR_PIPELINE_RATE_LIMIT_FALLBACK": "Local"}) == "local"
    with pytest.raises(ValueError, match="must be `fail` or `local`"):
        rate_limit_fallback({"SCHOLAR_PIPELINE_RATE_LIMIT_FALLBACK": "ignore"})


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_two_machines_fetching_from_one_provider_stay_under_its_limit_together(pipeline_env, simulator, tmp_path):
    """Two runs, each with a home and a Dagster instance of its own (nothing on disk shared, as on two machines), fetch
    Crossref at 4 requests/s through one Redis: the provider (limit 5/s) never sees more than its limit in a second.
    Each limiting alone, they would send at 8/s together."""
    from scholar_pipeline_tests.conftest import REPO_ROOT
    from scholar_pipeline_tests.helpers import SEARCH, max_in_any_window
    from scholar_pipeline_tests.test_scenarios import _materialize_command

    client = redis.Redis.from_url(REDIS)
    for stale in client.scan_iter("scholar-pipeline:rate:{crossref}:*"):
        client.delete(stale)
    processes, days = [], ["2024-03-01", "2024-03-02"]
    for machine, day in enumerate(days):
        env = dict(os.environ) | {"SCHOLAR_PIPELINE_HOME": str(tmp_path / f"machine{machine}" / "home"),
                                  "DAGSTER_HOME": str(tmp_path / f"machine{machine}" / "dagster_home"),
                                  "SCHOLAR_PIPELINE_RATE_LIMIT_URL": REDIS, "SCHOLAR_PIPELINE_CROSSREF_PAGE_SIZE": "10"}
        os.makedirs(env["DAGSTER_HOME"])
        processes.append(subprocess.Popen(_materialize_command(f"{day}|crossref"), cwd=REPO_ROOT, env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=400)[0] for p in processes]
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-3000:]
    requests = simulator.requests_for("crossref")
    arrivals = sorted(r.at for r in requests)
    assert len(arrivals) >= 16  # enough traffic for the limit to bind
    assert max_in_any_window(arrivals) <= simulator.rate_limits["crossref"] == 5
    assert all(r.status == 200 for r in requests)
    # Both fetched at the same time (the limit was shared, not taken in turns), and each landed its day in its own home.
    spans = [[r.at for r in requests if day in str(r.params)] for day in days]
    assert max(min(span) for span in spans) < min(max(span) for span in spans)
    for machine, day in enumerate(days):
        date = dt.date.fromisoformat(day)
        with duckdb.connect(str(tmp_path / f"machine{machine}" / "home" / "scholar.duckdb"), read_only=True) as con:
            landed = sorted(r[0] for r in con.execute("SELECT provider_id FROM works").fetchall())
        assert landed == sorted(simulator.apis["crossref"].record_ids(date, date, SEARCH.text))
