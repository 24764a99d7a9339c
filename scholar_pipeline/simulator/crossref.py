"""Simulated Crossref `/works`: pub-date filters, `query` words, rows ≤ 1000, offset ≤ 10,000, scroll cursors.

Only works with a DOI are served (Crossref holds no others), and of those the ones the
words of `query` find (`Corpus.works_matching`): all of the window when there is no `query`.
The journal version of an arXiv e-print names it under `relation.has-preprint` by its arXiv DOI.

Like the real API, a cursor is a server-side scroll: the same cursor string comes back on
every page and each use moves it on; it expires five minutes after its last use. The body
for an expired cursor is not documented; this one follows Crossref's validation-failure shape.
"""

from __future__ import annotations

import datetime as dt
import html
import random
import re
import secrets
import threading
import time

from scholar_pipeline.simulator.common import BadRequest, SimResponse, single
from scholar_pipeline.simulator.corpus import Corpus, SimWork, search_words
from scholar_pipeline.simulator.identifiers import arxiv_doi
from scholar_pipeline.simulator.record_faults import JsonRecords

MAX_ROWS = 1000
MAX_OFFSET = 10_000


def _failure(kind: str, value: str, message: str) -> BadRequest:
    return BadRequest(SimResponse.json(400, {"status": "failed", "message-type": "validation-failure",
                                             "message": [{"type": kind, "value": value, "message": message}]}))


class CrossrefApi:
    name = "crossref"
    records = JsonRecords(("message", "items"), abstract="abstract", retyped="title")  # where faults on records act (record_faults.py)
    default_rate_limit = 5.0
    in_flight_limit = 1  # the public pool's `x-concurrency-limit`
    # A request carrying `mailto=` is served by the polite pool: 10 a second, five at a time (provider_facts.md).
    POLITE = {"rate": 10.0, "in_flight": 5}

    @staticmethod
    def polite(params: dict[str, list[str]]) -> bool:
        return bool(single(params, "mailto"))

    def __init__(self, corpus: Corpus, cursor_ttl_seconds: float = 300.0):
        self.corpus, self.cursor_ttl = corpus, cursor_ttl_seconds
        self.routes = {"/works": self.works}
        self._scrolls: dict[str, dict] = {}
        self._lock = threading.Lock()

    def expire_cursors(self) -> None:
        """Every open scroll expires at once (the `expired-cursor` fault), as five idle minutes would do."""
        with self._lock:
            self._scrolls.clear()

    def record_ids(self, first: dt.date, last: dt.date, text: str | None = None) -> list[str]:
        return [w.doi for w in self._matching(search_words(text), first, last)]

    def _matching(self, words: frozenset[str], first: dt.date, last: dt.date) -> list[SimWork]:
        return [w for w in self.corpus.works_matching(words, first, last, self.name) if w.doi]

    def works(self, params: dict[str, list[str]]) -> SimResponse:
        first, last = _window(single(params, "filter", ""))
        rows_text = single(params, "rows", "20")
        if not re.fullmatch(r"\d+", rows_text) or int(rows_text) > MAX_ROWS:
            raise _failure("integer-not-valid", rows_text, f"Integer specified as {rows_text} but must be a positive integer less than or equal to {MAX_ROWS}. ")
        rows = int(rows_text)
        works = self._matching(search_words(single(params, "query")), first, last)
        cursor = single(params, "cursor")
        if cursor is not None:
            offset, cursor = self._scroll(cursor, rows)
        else:
            offset = int(single(params, "offset", "0"))
            if offset > MAX_OFFSET:
                raise _failure("integer-not-valid", str(offset), f"Offset specified as {offset} is too large")
        message = {
            "facets": {}, "total-results": len(works), "items": [render(w) for w in works[offset:offset + rows]],
            "items-per-page": rows, "query": {"start-index": offset, "search-terms": single(params, "query")},
        }
        if cursor is not None:
            message["next-cursor"] = cursor
        pool = ({"x-rate-limit-limit": "10", "x-concurrency-limit": "5", "x-api-pool": "polite-array"} if self.polite(params)
                else {"x-rate-limit-limit": "5", "x-concurrency-limit": "1", "x-api-pool": "public-array"})
        return SimResponse.json(200, {"status": "ok", "message-type": "work-list", "message-version": "1.0.0", "message": message},
                                {**pool, "x-rate-limit-interval": "1s"})

    def _scroll(self, cursor: str, rows: int) -> tuple[int, str]:
        now = time.monotonic()
        with self._lock:
            if cursor == "*":
                cursor = "DnF1ZXJ5VGhlbkZldGNo" + secrets.token_urlsafe(24)
                self._scrolls[cursor] = {"offset": 0, "used": now}
            state = self._scrolls.get(cursor)
            if state is None or now - state["used"] > self.cursor_ttl:
                raise _failure("cursor-not-valid", cursor[:40], "Cursor is not valid or has expired (cursors expire 5 minutes after last use)")
            offset = state["offset"]
            state.update(offset=offset + rows, used=now)
        return offset, cursor

    @staticmethod
    def rate_limited() -> SimResponse:
        return SimResponse.text(429, "429 Too Many Requests: too many requests in a given amount of time")


def _window(value: str) -> tuple[dt.date, dt.date]:
    filters = dict(part.partition(":")[::2] for part in filter(None, value.split(",")))
    try:
        return _day(filters.get("from-pub-date", "1900")), _day(filters.get("until-pub-date", "1900"), end=True)
    except ValueError:
        raise _failure("date-not-valid", value, "Date filter must be YYYY, YYYY-MM or YYYY-MM-DD") from None


def _day(value: str, end: bool = False) -> dt.date:
    parts = [int(p) for p in value.split("-")]
    if len(parts) == 3:
        return dt.date(*parts)
    if len(parts) == 2:
        first = dt.date(parts[0], parts[1], 1)
        return (first.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(days=1) if end else first
    return dt.date(parts[0], 12, 31) if end else dt.date(parts[0], 1, 1)


def _date_parts(day: dt.date) -> dict:
    return {"date-parts": [[day.year, day.month, day.day]]}


def _indexed() -> dict:
    """Crossref re-indexes works all the time, so `indexed` differs between two fetches of an unchanged work."""
    return _timestamp(dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(seconds=random.randint(0, 3 * 86400)))


def _moment(day: dt.date, seconds: int) -> dict:
    return _timestamp(dt.datetime.combine(day, dt.time(), dt.timezone.utc) + dt.timedelta(seconds=seconds))


def _timestamp(moment: dt.datetime) -> dict:
    """A Crossref timestamp (`indexed`, `created`, `deposited`): date parts, ISO time and milliseconds since 1970."""
    return {"date-parts": [[moment.year, moment.month, moment.day]], "date-time": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "timestamp": int(moment.timestamp() * 1000)}


def _licenses(w: SimWork) -> list[dict]:
    """Licences as publishers deposit them (the recorded pages): most works carry a text-and-data-mining licence of
    the publisher's, which licenses no reading (181 of 260 recorded items hold nothing else); an open work adds the
    Creative Commons licence of its version of record, some after the publisher's own terms, and some starting days
    after `issued` (the online date); Elsevier-style closed works a Creative Commons one for the accepted manuscript,
    two years on."""
    def license_(url: str, version: str, delay: int) -> dict:
        return {"URL": url, "content-version": version, "delay-in-days": delay,
                "start": _moment(w.published + dt.timedelta(days=delay), 0)}

    licenses = [license_(TDM_LICENSES[w.serial % len(TDM_LICENSES)], "tdm", 0)] if w.serial % 4 else []
    if w.license:
        if w.serial % 9 == 0:
            licenses.append(license_("https://www.example-publisher.org/terms-of-use", "vor", 0))
        licenses.append(license_(f"https://creativecommons.org/licenses/{w.license.removeprefix('cc-')}/4.0/", "vor", w.serial % 3))
    elif w.serial % 6 == 1:
        licenses.append(license_("http://creativecommons.org/licenses/by-nc-nd/4.0/", "am", 727))
    return licenses


TDM_LICENSES = ("http://doi.wiley.com/10.1002/tdm_license_1.1", "https://www.elsevier.com/tdm/userlicense/1.0/",
                "https://www.springernature.com/gp/researchers/text-and-data-mining")


def render(w: SimWork) -> dict:
    references = w.serial % 40
    item = {
        "indexed": _indexed(),
        "reference-count": references,
        "references-count": references,
        "content-domain": {"domain": [], "crossmark-restriction": False},
        "created": _moment(w.published, w.serial % 86400),
        "deposited": _moment(w.published + dt.timedelta(days=1 + w.serial % 30), w.serial % 86400),
        "source": "Crossref",
        "member": str(300 + w.serial % 1000),
        "prefix": w.doi.split("/", 1)[0],
        "score": round(10 + (w.serial % 1000) / 100, 6),
        "publisher": w.publisher,
        "DOI": w.doi.upper() if w.serial % 5 == 0 else w.doi,  # Crossref DOIs come in either case
        "type": "journal-article" if w.work_type == "article" else w.work_type,
        "title": [w.title if w.serial % 7 else f"<i>{w.title}</i>"],
        **({"author": [
            {"given": a.given, "family": a.family, "sequence": "first" if i == 0 else "additional",
             "affiliation": [{"name": a.affiliation}] if a.affiliation else [],
             **({"ORCID": f"https://orcid.org/{a.orcid}", "authenticated-orcid": False} if a.orcid else {})}
            for i, a in enumerate(w.authors)
        ]} if w.authors else {}),  # Crossref leaves the key out, never sends []
        "container-title": [w.venue],
        "published": _date_parts(w.published),
        "issued": _date_parts(w.published),
        "published-online": _date_parts(w.published),
        "is-referenced-by-count": w.cited_by,
        "URL": f"https://doi.org/{w.doi}",
        "language": w.language,
    }
    if w.abstract:
        item["abstract"] = f"<jats:title>Abstract</jats:title><jats:p>{html.escape(w.abstract, quote=False)}</jats:p>"
    licenses = _licenses(w)
    if licenses:
        item["license"] = licenses
    if w.arxiv_id and w.work_type != "preprint":  # a journal version names its arXiv e-print, as publishers deposit it
        item["relation"] = {"has-preprint": [{"id-type": "doi", "id": arxiv_doi(w.arxiv_id), "asserted-by": "subject"}]}
    return item
