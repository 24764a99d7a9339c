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
3. with a cap on requests in flight (`sending(..., in_flight=k)`), a caller first takes one
   of k places, in line as the SQLite limiter has it (first come first served; a waiter
   that has not looked for `STALE_WAITER` seconds, a place held past its expiry, a place of
   this host's dead processes or one this process no longer knows are dropped; a waiter
   dropped while paused joins the line again at its end), one Lua script per look
   (`ADMIT`); the expiry counts again from the send (`RENEW`).
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

import contextlib
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from scholar_pipeline.client.masking import mask_credentials
from scholar_pipeline.client.ratelimit import (
    HOST, IN_FLIGHT_EXPIRY, IN_FLIGHT_POLL, KEEP_SENDS, OWN_PLACES, STALE_WAITER, SqliteRateLimiter, place_abandoned,
)

KEY_PREFIX = "scholar-pipeline:rate"
IN_FLIGHT_KEYS = ("in_flight_line", "in_flight_seen", "in_flight", "in_flight_tickets")  # what ADMIT's KEYS are, in order

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

# KEYS: the line (sorted set: member -> ticket), the waiters' last looks (hash: member -> time), the places held (sorted
# set: member -> expiry), the ticket counter. ARGV: member ("host|pid|id"), cap, expiry, STALE_WAITER, members to drop
# (this host's dead processes', this process's forgotten ones) as one newline-joined string. Returns 1 once the member
# holds a place, else 0 (it is in line, its look noted).
ADMIT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1e6
local member, cap, expiry, stale = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
for gone in string.gmatch(ARGV[5], '[^\\n]+') do
  redis.call('ZREM', KEYS[1], gone)
  redis.call('HDEL', KEYS[2], gone)
  redis.call('ZREM', KEYS[3], gone)
end
if not redis.call('ZSCORE', KEYS[1], member) then
  redis.call('ZADD', KEYS[1], redis.call('INCR', KEYS[4]), member)
end
redis.call('HSET', KEYS[2], member, string.format('%.6f', now))
for _, waiter in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if tonumber(redis.call('HGET', KEYS[2], waiter) or '0') < now - stale then
    redis.call('ZREM', KEYS[1], waiter)
    redis.call('HDEL', KEYS[2], waiter)
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
local admitted = 0
if redis.call('ZRANGE', KEYS[1], 0, 0)[1] == member and redis.call('ZCARD', KEYS[3]) < cap then
  redis.call('ZREM', KEYS[1], member)
  redis.call('HDEL', KEYS[2], member)
  redis.call('ZADD', KEYS[3], string.format('%.6f', now + expiry), member)
  admitted = 1
end
for i = 1, 4 do
  redis.call('EXPIRE', KEYS[i], math.ceil(expiry + stale))
end
return admitted
"""

# KEYS: the places held. ARGV: member, expiry. The place's expiry counts from now (the send), if it is still held.
RENEW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1e6
redis.call('ZADD', KEYS[1], 'XX', string.format('%.6f', now + tonumber(ARGV[2])), ARGV[1])
return 1
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
                 long_wait: float = 5.0, timeout: float = 5.0, retry_redis: float = 30.0,
                 in_flight_expiry: float = IN_FLIGHT_EXPIRY):
        self.shown = mask_credentials(url)
        self.client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                           retry_on_timeout=False, retry=None)
        self.reserve_script = self.client.register_script(RESERVE)
        self.confirm_script = self.client.register_script(CONFIRM)
        self.answered_script = self.client.register_script(ANSWERED)
        self.admit_script = self.client.register_script(ADMIT)
        self.renew_script = self.client.register_script(RENEW)
        self.in_flight_expiry = in_flight_expiry
        self.fallback, self.transit, self.log, self.long_wait, self.retry_redis = fallback, transit, log, long_wait, retry_redis
        self._fell_back = threading.Event()  # said once per outage, not once per request
        self._redis_again_at = 0.0  # time.monotonic() before which the local fallback is used without asking Redis

    def acquire(self, key: str, rate: float, log=None) -> float:
        with self.sending(key, rate, log) as waited:
            return waited

    @contextmanager
    def sending(self, key: str, rate: float, log=None, in_flight: int | None = None) -> Iterator[float]:
        """Wait for the turn of this machine's caller (and, with `in_flight`, for fewer than that many sends of the key
        unanswered), yield the seconds waited, and count the send as arrived when the block ends without an exception
        (the answer came back)."""
        log = log if log is not None else self.log
        send = place = None
        waited_in_line = 0.0
        try:
            if self.fallback is None or time.monotonic() >= self._redis_again_at:
                if in_flight is not None:
                    place = f"{HOST}|{os.getpid()}|{uuid.uuid4().hex}"
                    waited_in_line = self._take_place(key, place, in_flight, log)
                waited, send = self._acquire(key, rate, log)
                if place is not None:
                    with contextlib.suppress(redis.RedisError):  # else it expires counting from its admission
                        self.renew_script(keys=[self._key(key, "in_flight")], args=[place, self.in_flight_expiry])
        except redis.RedisError as error:
            self._give_back(key, place)
            if self.fallback is None:
                raise RateLimiterUnavailable(
                    f"the {key} rate limit is shared through Redis at {self.shown}, which did not answer "
                    f"({type(error).__name__}: {mask_credentials(str(error))}). Start Redis, or set "
                    "SCHOLAR_PIPELINE_RATE_LIMIT_FALLBACK=local to limit each machine on its own meanwhile.") from None
            self._say_fallback(key, error, log)
            self._redis_again_at = time.monotonic() + self.retry_redis
        except BaseException:
            self._give_back(key, place)
            raise
        if send is None:
            with self.fallback.sending(key, rate, log, in_flight) as waited:
                yield waited
            return
        if self._fell_back.is_set():
            self._fell_back.clear()
            _say(log, f"Redis at {self.shown} answers again: the {key} rate limit is shared across machines again")
        try:
            yield waited_in_line + waited
            try:
                self.answered_script(keys=[self._key(key, "sends")], args=[send])
            except redis.RedisError:  # the send keeps counting for `transit` seconds: safe, only a little slower
                pass
        finally:
            self._give_back(key, place)

    def _take_place(self, key: str, place: str, cap: int, log) -> float:
        """Wait in line for one of `cap` places, as the member `place`; returns the seconds waited. An admission whose
        answer is lost is given back by `sending`, which knows the member before the first look."""
        started, said = time.monotonic(), False
        OWN_PLACES.add(place)
        keys = [self._key(key, part) for part in IN_FLIGHT_KEYS]
        while not self.admit_script(keys=keys, args=[place, cap, self.in_flight_expiry, STALE_WAITER,
                                                     "\n".join(self._not_anyones(keys))]):
            if not said and time.monotonic() - started > self.long_wait:
                said = True
                _say(log, f"waiting {time.monotonic() - started:.0f} s for one of the {cap} places among {key}'s requests "
                          f"in flight (across every machine using Redis at {self.shown})")
            time.sleep(IN_FLIGHT_POLL)
        return time.monotonic() - started

    def _not_anyones(self, keys: list[str]) -> list[str]:
        """Members in line or holding a place that are this host's dead processes', or this process's forgotten ones."""
        members = {m.decode() for m in self.client.zrange(keys[0], 0, -1) + self.client.zrange(keys[2], 0, -1)}
        return [m for m in members if place_abandoned((parts := m.rsplit("|", 2))[0], int(parts[1]), m)]

    def _give_back(self, key: str, place: str | None) -> None:
        if place is None:
            return
        OWN_PLACES.discard(place)  # first: should Redis not answer, this process's next look drops it
        line, seen, held, _ = (self._key(key, part) for part in IN_FLIGHT_KEYS)
        try:
            self.client.pipeline().zrem(held, place).zrem(line, place).hdel(seen, place).execute()
        except redis.RedisError:
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
