"""What a provider client spent: requests that left the machine, cache hits, retries, errors, and the quota the
provider reports in its headers (OpenAlex's `X-RateLimit-*`, its USD budget included; CORE's `X-RateLimitRemaining`).

A client counts as it goes; a fetch takes the difference of two snapshots, so each
partition gets its own figures even though one client fetches a provider's days in turn.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

REMAINING_HEADERS = ("x-ratelimit-remaining", "x-ratelimitremaining")  # OpenAlex; CORE (no hyphen)
LIMIT_HEADERS = ("x-ratelimit-limit",)
COST_USD_HEADER = "x-ratelimit-cost-usd"
REMAINING_USD_HEADER = "x-ratelimit-remaining-usd"
COUNTS = ("requests", "cache_hits", "retries", "errors", "throttled")


@dataclass(frozen=True)
class Usage:
    requests: int = 0  # attempts sent to the provider (answered or not), retries included; cache hits are not
    cache_hits: int = 0
    retries: int = 0  # attempts after the first for the same page
    errors: int = 0  # attempts that failed: an error status, or no answer
    throttled: int = 0  # the provider's rate-limit refusals among the errors (429s, OpenAlex's 403 "Rate limit exceeded")
    cost_usd: float = 0.0  # what the provider said the requests cost (OpenAlex)
    quota_remaining: int | None = None  # the provider's count of requests or credits left, as last reported
    quota_limit: int | None = None
    remaining_usd: float | None = None  # OpenAlex's daily budget left, as last reported

    def minus(self, earlier: Usage) -> Usage:
        """What was spent since `earlier`; the quota as it stands now."""
        spent = {name: getattr(self, name) - getattr(earlier, name) for name in COUNTS}
        return replace(self, **spent, cost_usd=round(self.cost_usd - earlier.cost_usd, 6))

    def as_dict(self) -> dict:
        return asdict(self)


class UsageCounter:
    """The running totals of one client (one thread uses it: a client fetches one provider's partitions in turn)."""

    def __init__(self) -> None:
        self.usage = Usage()

    def answered(self, status: int, headers, from_cache: bool, throttled: bool) -> None:
        """An answer; `throttled`: the provider's rate limit (a 429, or what the provider sends instead)."""
        if from_cache:
            self._add(cache_hits=1)
            return
        failed = status >= 400
        self._add(requests=1, errors=int(failed), throttled=int(throttled), cost_usd=_float(headers.get(COST_USD_HEADER)) or 0.0)
        quota = {"quota_remaining": _first_int(headers, REMAINING_HEADERS), "quota_limit": _first_int(headers, LIMIT_HEADERS),
                 "remaining_usd": _float(headers.get(REMAINING_USD_HEADER))}
        self.usage = replace(self.usage, **{name: value for name, value in quota.items() if value is not None})

    def unanswered(self) -> None:
        """A request that got no answer (no connection, a timeout, a body cut off)."""
        self._add(requests=1, errors=1)

    def retrying(self) -> None:
        self._add(retries=1)

    def snapshot(self) -> Usage:
        return self.usage

    def _add(self, **amounts) -> None:
        self.usage = replace(self.usage, **{name: getattr(self.usage, name) + amount for name, amount in amounts.items()})


def _first_int(headers, names: tuple[str, ...]) -> int | None:
    for name in names:
        value = _float(headers.get(name))
        if value is not None:
            return int(value)
    return None


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:  # a provider's header in a form we do not know: no figure rather than a wrong one
        return None

