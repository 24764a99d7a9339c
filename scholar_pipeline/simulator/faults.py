"""Faults on demand, on the wire: `python -m scholar_pipeline.simulator --faults SPEC`, or `ProviderSimulator(faults=SPEC)`.

SPEC is a comma-separated list of rules `PROVIDER:FAULT[@N][xTIMES]`:
- PROVIDER: a provider name, or `*` for every provider;
- FAULT, what the provider's answer becomes:
  - `429`: the provider's own rate-limit answer (arXiv's plain text, NCBI's JSON...), no Retry-After;
  - `429-retry-after`: the same with `Retry-After: 1`;
  - `500`, `502`, `503`, `504`: that status with a short text body;
  - `reset`: the connection is closed with a TCP reset, no answer;
  - `stall`: no answer for `stall_seconds` (a client's read timeout), then the answer;
  - `slow`: the answer's body sent a few bytes at a time;
  - `truncate`: fewer bytes than the Content-Length promises, then the connection is closed;
  - `malformed`: status 200 with the body cut in half (JSON or XML that does not parse);
  - `html`: status 200 with an HTML error page, as a proxy or an overloaded front end sends;
  - `empty-page`, `missing-fields`, `wrong-types`, `new-fields`: the page answers in the wire
    format, but holds no records, or records without their abstract, with a field of another
    type, or with a field never seen before (record_faults.py); on a page of records only;
  - `expired-cursor`: every open cursor expires before this request is answered (Crossref's
    and CORE's scrolls), so a request that carries one gets the provider's expiry error;
- `@N`: from the provider's N-th request on (1-based, counting every request; default 1);
- `xTIMES`: for that many requests (default 1; `x*` for every one after).

Example: `crossref:503@2x2,openalex:reset,*:429@5` — Crossref's 2nd and 3rd requests get 503,
OpenAlex's first is reset, the 5th request to each provider is rate limited.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

STATUS_FAULTS = {"429", "429-retry-after", "500", "502", "503", "504"}
DELIVERY_FAULTS = {"reset", "stall", "slow", "truncate"}  # carried out by the HTTP handler
BODY_FAULTS = {"malformed", "html"}
RECORD_FAULTS = {"empty-page", "missing-fields", "wrong-types", "new-fields"}  # carried out by record_faults.py
EXPIRED_CURSOR = "expired-cursor"
FAULTS = STATUS_FAULTS | DELIVERY_FAULTS | BODY_FAULTS | RECORD_FAULTS | {EXPIRED_CURSOR}
_RULE = re.compile(r"(?P<provider>[a-z*]+):(?P<fault>[a-z0-9-]+?)(?:@(?P<first>[1-9]\d*))?(?:x(?P<times>[1-9]\d*|\*))?")
HTML_ERROR_PAGE = (b"<!DOCTYPE html><html><head><title>Service temporarily unavailable</title></head><body>"
                   b"<h1>Service temporarily unavailable</h1><p>Please try again later.</p></body></html>")


@dataclass(frozen=True)
class FaultRule:
    provider: str  # a name or "*"
    fault: str
    first: int = 1
    times: int | None = 1  # None: every request from `first` on

    def applies(self, provider: str, number: int) -> bool:
        return (self.provider in ("*", provider) and number >= self.first
                and (self.times is None or number < self.first + self.times))


def parse_faults(spec: str | None, providers: frozenset[str]) -> list[FaultRule]:
    """The rules of a SPEC; a ValueError that quotes the rule and says what is allowed."""
    rules = []
    for text in (part.strip() for part in (spec or "").split(",")):
        if not text:
            continue
        match = _RULE.fullmatch(text)
        if not match:
            raise ValueError(f"fault rule {text!r} is not PROVIDER:FAULT[@N][xTIMES] (e.g. crossref:503@2x3)")
        provider, fault = match["provider"], match["fault"]
        if provider != "*" and provider not in providers:
            raise ValueError(f"fault rule {text!r}: unknown provider {provider!r}; one of {sorted(providers)} or *")
        if fault not in FAULTS:
            raise ValueError(f"fault rule {text!r}: unknown fault {fault!r}; one of {sorted(FAULTS)}")
        times = None if match["times"] == "*" else int(match["times"] or 1)
        rules.append(FaultRule(provider, fault, int(match["first"] or 1), times))
    return rules


class FaultPlan:
    """Which fault, if any, each request to a provider gets: the first rule that applies to its number."""

    def __init__(self, rules: list[FaultRule]):
        self.rules = rules
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def next_fault(self, provider: str) -> str | None:
        with self._lock:
            number = self._counts[provider] = self._counts.get(provider, 0) + 1
        return next((rule.fault for rule in self.rules if rule.applies(provider, number)), None)
