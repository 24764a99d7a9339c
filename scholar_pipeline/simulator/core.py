"""Simulated CORE API v3 `/search/works/`: a publishedDate window in `q`, `limit`/`offset`, scrolling, Bearer keys.

Only what CORE aggregates is served: the corpus' open works (a license, or a preprint),
with CORE's quirks: numeric ids, authors as "Family, Given", a DOI now and then as a
doi.org link, `publishedDate` with `T00:00:00`, `language` as {code, name}, `journals` as
a list, repository `downloadUrl`s (empty for a record of metadata only), titles and abstracts as repositories deliver
them (`<i>` in some titles, `<p>` around some abstracts), `arxivId` for an e-print (and for the journal version of
one) and `pubmedId` for what it harvests from PubMed Central, null otherwise. `q` must hold `publishedDate>=D AND
publishedDate<E` (or `<=E`); its other words select the works (`Corpus.works_matching`).

Paging: `limit` ≤ 100 (more is a 504, as observed), `offset` + `limit` ≤ 10,000;
`scroll=true` starts a scroll whose `scrollId` each next call passes, for any depth.
Without `Authorization: Bearer <key>` the answer is 401. Over the rate limit: 429 with
`X-RateLimitRemaining: 0` and `X-RateLimit-Retry-After` in seconds. Error bodies are
`{"message": ...}` (UNCONFIRMED, as CORE's are: provider_facts.md §7).
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import threading

from scholar_pipeline.simulator.common import BadRequest, SimResponse, single
from scholar_pipeline.simulator.corpus import Corpus, SimWork, search_words
from scholar_pipeline.simulator.record_faults import JsonRecords

MAX_LIMIT = 100
OFFSET_CEILING = 10_000
_WINDOW = re.compile(r"publishedDate\s*>=\s*(\d{4}-\d{2}-\d{2})\s+AND\s+publishedDate\s*(<=?)\s*(\d{4}-\d{2}-\d{2})")


def _error(status: int, message: str) -> BadRequest:
    return BadRequest(SimResponse.json(status, {"message": message}))


class CoreApi:
    name = "core"
    records = JsonRecords(("results",), abstract="abstract", retyped="title")  # where faults on records act (record_faults.py)
    default_rate_limit = 10 / 60

    def __init__(self, corpus: Corpus):
        self.corpus = corpus
        self.routes = {"/search/works": self.search_works}
        self._scrolls: dict[str, list[SimWork]] = {}
        self._positions: dict[str, int] = {}
        self._lock = threading.Lock()

    def expire_cursors(self) -> None:
        """Every open scroll expires at once (the `expired-cursor` fault)."""
        with self._lock:
            self._scrolls.clear()
            self._positions.clear()

    def record_ids(self, first: dt.date, last: dt.date, text: str | None = None) -> list[str]:
        return [str(core_id(w)) for w in self._matching(search_words(text), first, last)]

    def _matching(self, words: frozenset[str], first: dt.date, last: dt.date) -> list[SimWork]:
        return [w for w in self.corpus.works_matching(words, first, last, self.name) if w.license or w.work_type == "preprint"]

    def authenticate(self, headers: dict[str, str]) -> SimResponse | None:
        authorization = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        if not re.fullmatch(r"Bearer \S{16,}", authorization):
            return SimResponse.json(401, {"message": "Invalid or missing API key. Register at https://core.ac.uk/services/api"})
        return None

    def search_works(self, params: dict[str, list[str]]) -> SimResponse:
        limit = _count(params, "limit", "10")
        if limit > MAX_LIMIT:
            return SimResponse.text(504, "Gateway Time-out")
        scroll_id = single(params, "scrollId")
        if scroll_id is not None:
            works, offset = self._continue(scroll_id, limit)
        else:
            works = self._query(single(params, "q") or "")
            if single(params, "scroll") == "true":
                scroll_id, offset = self._start(works, limit), 0
            else:
                offset = _count(params, "offset", "0")
                if offset + limit > OFFSET_CEILING:
                    raise _error(400, f"offset + limit must not exceed {OFFSET_CEILING}; use scroll=true to go deeper")
        payload = {"totalHits": len(works), "limit": limit, "offset": offset, "scrollId": scroll_id,
                   "results": [render(w) for w in works[offset:offset + limit]]}
        return SimResponse.json(200, payload)

    def _query(self, q: str) -> list[SimWork]:
        match = _WINDOW.search(q)
        if not match:
            raise _error(400, "The simulator needs q to hold publishedDate>=YYYY-MM-DD AND publishedDate<YYYY-MM-DD")
        if q.count('"') % 2 or q.count("(") != q.count(")"):
            raise _error(400, f"Query parse error: unbalanced quotes or parentheses in {q!r}")
        first, operator, end = match.groups()
        last = dt.date.fromisoformat(end) - dt.timedelta(days=operator == "<")
        words = search_words(q[:match.start()] + " " + q[match.end():])
        return sorted(self._matching(words, dt.date.fromisoformat(first), last), key=core_id)

    def _start(self, works: list[SimWork], limit: int) -> str:
        scroll_id = secrets.token_urlsafe(24)
        with self._lock:
            self._scrolls[scroll_id], self._positions[scroll_id] = works, limit
        return scroll_id

    def _continue(self, scroll_id: str, limit: int) -> tuple[list[SimWork], int]:
        with self._lock:
            if scroll_id not in self._scrolls:
                raise _error(400, "Invalid or expired scrollId")
            offset = self._positions[scroll_id]
            self._positions[scroll_id] = offset + limit
            return self._scrolls[scroll_id], offset

    def rate_limited(self) -> SimResponse:
        wait = max(1, round(1 / self.default_rate_limit))
        return SimResponse.json(429, {"message": "Too many requests, please slow down."},
                                {"X-RateLimitRemaining": "0", "X-RateLimit-Retry-After": str(wait), "X-RateLimit-Limit": "10"})


def _count(params: dict[str, list[str]], name: str, default: str) -> int:
    value = single(params, name, default) or default
    if not re.fullmatch(r"\d+", value):
        raise _error(400, f"'{name}' must be a non-negative integer")
    return int(value)


def core_id(w: SimWork) -> int:
    """A generated work's id is 9 digits from its serial; a planted work's is its serial (10 digits, above them all)."""
    return w.serial if w.planted else 100_000_000 + w.serial % 900_000_000


def render(w: SimWork) -> dict:
    identifier = core_id(w)
    first, _, rest = w.title.partition(" ")
    title = f"<i>{first}</i> {rest}" if w.serial % 5 == 0 else w.title
    abstract = f"<p>{w.abstract}</p>" if w.abstract and w.serial % 3 == 0 else w.abstract
    return {
        "id": identifier,
        "doi": (f"https://doi.org/{w.doi}" if w.serial % 4 == 0 else w.doi) if w.doi else None,
        "title": title,
        "abstract": abstract,
        "authors": [{"name": f"{a.family}, {a.given}"} for a in w.authors],
        "contributors": [],
        "yearPublished": w.published.year,
        "publishedDate": f"{w.published.isoformat()}T00:00:00",
        "publisher": w.publisher,
        "journals": [{"title": w.venue, "identifiers": []}] if w.work_type != "preprint" else [],
        "documentType": "preprint" if w.work_type == "preprint" else "research",
        "language": {"code": w.language, "name": {"en": "English", "de": "German", "es": "Spanish"}.get(w.language, w.language)},
        "downloadUrl": "" if w.serial % 6 == 0 else f"https://core.ac.uk/download/{identifier}.pdf",  # metadata only
        "citationCount": w.cited_by,
        "arxivId": w.arxiv_id,  # of the e-print, also on a journal version's record
        "pubmedId": w.pmid if w.pmcid else None,  # known for what CORE harvests from PubMed Central
    }
