"""The rate limit held across machines: the SQLite limiter's two steps, each one atomic Lua script in Redis.

The SQLite limiter (ratelimit.py) holds across the processes of one machine; machines
that fetch from the same provider share one Redis instead. The same rules, keyed by
provider under `scholar-pipeline:rate:{<provider>}:*` (one hash slot, for Redis Cluster):
1. reserve: the caller's slot is a period after the previous reservation (GCRA's
   theoretical arrival time) or after the last send, whichever is later: callers get
   slots in the order they ask, so every process on every machine gets its share.
2. confirm, on waking at the slot: send only if a period has passed since the last
   confirmed send and fewer than n = ceil(rate) sends can have arrived within the last
   n/rate seconds; else wait and ask again. A send counts as arriving until `transit`
   seconds after it, or until its answer comes back (`sending`).
Both scripts read Redis's own clock (`TIME`) and hand back waits, never times, so the
machines' clocks need not agree. A process killed while queued leaves one unused slot
(one period), not a stall: there is no reservation row to clean up.

Redis unreachable or slow (`timeout` seconds per command, no retries): the run fails with
an error naming the server (`fallback="fail"`, the default), or this machine limits alone
with the SQLite limiter (`fallback="local"`) and says so once, asking Redis again only
every `retry_redis` seconds (a Redis that drops packets costs `timeout` per try); a run
never hangs on it.
With the local fallback, machines no longer see each other's sends, so together they may
exceed the limit until Redis is back: the providers then answer 429, which the client
retries.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from scholar_pipeline.client.masking import mask_credentials
from scholar_pipeline.client.ratelimit import KEEP_SENDS, SqliteRateLimiter

KEY_PREFIX = "scholar-pipeline:rate"

# KEYS: tat, last_sent. ARGV: period. Returns the seconds until the caller's slot.
RESERVE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1e6
local period = tonumber(ARGV[1])
local slot = math.max(now, tonumber(redis.call('GET', KEYS[1]) or '0'), tonumber(redis.call('GET', KEYS[2]) or '0') + period)
redis.call('SET', KEYS[1], string.format('%.6f', slot + period), 'EX', math.ceil(slot + period - now) + 60)
return string.format('%.6f', slot - now)
"""

# KEYS: last_sent, send log (sorted set: send id -> latest arrival), send counter.
# ARGV: period, n, window seconds, transit, seconds a send is kept. Returns {wait, send id or ''}.
CONFIRM = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1e6
local period, n, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local transit, keep = tonumber(ARGV[4]), tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - math.max(window, keep))
local wait = tonumber(redis.call('GET', KEYS[1]) or '0') + period - now
local recent = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. (now - window), '+inf', 'WITHSCORES')
local count = #recent / 2
if count >= n then
  wait = math.max(wait, tonumber(recent[(count - n) * 2 + 2]) + window - now)
end
if wait > 0 then
  return {string.format('%.6f', wait), ''}
end
redis.call('SET', KEYS[1], string.format('%.6f', now), 'EX', math.ceil(period + keep))
local send = redis.call('INCR', KEYS[3])
redis.call('ZADD', KEYS[2], string.format('%.6f', now + transit), send)
redis.call('EXPIRE', KEYS[2], math.ceil(window + keep))
redis.call('EXPIRE', KEYS[3], math.ceil(window + keep))
return {'0', tostring(send)}
"""

# KEYS: send log. ARGV: send id. The answer is back: the send arrived by now, if that is sooner than it counted.
ANSWERED = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1e6
redis.call('ZADD', KEYS[1], 'XX', 'LT', string.format('%.6f', now), ARGV[1])
return 1
"""


class RateLimiterUnavailable(RuntimeError):
    """Redis did not answer and the fallback is `fail`; the message names the server, never its password."""


class RedisRateLimiter:
    """`acquire` and `sending` as `SqliteRateLimiter` has them, for every machine sharing `url`."""

    def __init__(self, url: str, *, fallback: SqliteRateLimiter | None = None, transit: float = 0.1, log=None,
                 long_wait: float = 5.0, timeout: float = 5.0, retry_redis: float = 30.0):
        self.shown = mask_credentials(url)
        self.client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                           retry_on_timeout=False, retry=None)
        self.reserve_script = self.client.register_script(RESERVE)
        self.confirm_script = self.client.register_script(CONFIRM)
        self.answered_script = self.client.register_script(ANSWERED)
        self.fallback, self.transit, self.log, self.long_wait, self.retry_redis = fallback, transit, log, long_wait, retry_redis
        self._fell_back = threading.Event()  # said once per outage, not once per request
        self._redis_again_at = 0.0  # time.monotonic() before which the local fallback is used without asking Redis

    def acquire(self, key: str, rate: float, log=None) -> float:
        with self.sending(key, rate, log) as waited:
            return waited

    @contextmanager
    def sending(self, key: str, rate: float, log=None) -> Iterator[float]:
        """Wait for the turn of this machine's caller, yield the seconds waited, and count the send as arrived when
        the block ends without an exception (the answer came back)."""
        log = log if log is not None else self.log
        send = None
        try:
            if self.fallback is None or time.monotonic() >= self._redis_again_at:
                waited, send = self._acquire(key, rate, log)
        except redis.RedisError as error:
            if self.fallback is None:
                raise RateLimiterUnavailable(
                    f"the {key} rate limit is shared through Redis at {self.shown}, which did not answer "
                    f"({type(error).__name__}: {mask_credentials(str(error))}). Start Redis, or set "
                    "SCHOLAR_PIPELINE_RATE_LIMIT_FALLBACK=local to limit each machine on its own meanwhile.") from None
            self._say_fallback(key, error, log)
            self._redis_again_at = time.monotonic() + self.retry_redis
        if send is None:
            with self.fallback.sending(key, rate, log) as waited:
                yield waited
            return
        if self._fell_back.is_set():
            self._fell_back.clear()
            _say(log, f"Redis at {self.shown} answers again: the {key} rate limit is shared across machines again")
        yield waited
        try:
            self.answered_script(keys=[self._key(key, "sends")], args=[send])
        except redis.RedisError:  # the send keeps counting for `transit` seconds: safe, only a little slower
            pass

    def _acquire(self, key: str, rate: float, log) -> tuple[float, str]:
        started = time.monotonic()
        period = 1.0 / rate
        n, window = SqliteRateLimiter.window(rate)
        delay = float(self.reserve_script(keys=[self._key(key, "tat"), self._key(key, "last_sent")], args=[period]))
        if delay > self.long_wait:
            _say(log, f"waiting {delay:.1f} s for a {key} rate-limit slot ({rate:g} requests/s across every machine "
                      f"using Redis at {self.shown})")
        time.sleep(delay)
        while True:
            wait, send = self.confirm_script(
                keys=[self._key(key, "last_sent"), self._key(key, "sends"), self._key(key, "send_ids")],
                args=[period, n, window, self.transit, KEEP_SENDS])
            if send:
                return time.monotonic() - started, send.decode() if isinstance(send, bytes) else str(send)
            time.sleep(float(wait))

    @staticmethod
    def _key(provider: str, part: str) -> str:
        return f"{KEY_PREFIX}:{{{provider}}}:{part}"

    def _say_fallback(self, key: str, error: Exception, log) -> None:
        if not self._fell_back.is_set():
            self._fell_back.set()
            _say(log, f"Redis at {self.shown} did not answer ({type(error).__name__}); the {key} rate limit holds on "
                      "this machine alone (SCHOLAR_PIPELINE_RATE_LIMIT_FALLBACK=local) until it does", warning=True)


def _say(log, message: str, warning: bool = False) -> None:
    if log is None:
        return
    method = getattr(log, "warning" if warning else "info", None)
    (method or log)(message)
