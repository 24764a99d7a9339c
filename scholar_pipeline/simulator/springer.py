"""Simulated Springer Nature Meta API `/meta/v2/json`: dates inside `q`, `s`/`p` paging, plan limits, its error bodies.

Only Springer works are served: the corpus' works with a DOI from a Springer venue, each
with Springer's quirks (publisher "Springer", creators as "Family, Given", counts and
`openaccess` as strings, an `onlineDate` on the day and a print `publicationDate` weeks
later). `q` must hold `onlinedatefrom:YYYY-MM-DD onlinedateto:YYYY-MM-DD`; its other words
select the works (`Corpus.works_matching`). Constraints of the Premium plan (`year:`,
`title:`, `subject:`...) and `p` above `plan_page_size` (25, the Basic plan) get the 403
"This is a premium feature"; no `api_key` gets the documented 401, no `q` or a bad
`s`/`p` the documented 400s. Over the rate limit (100 requests a minute on Basic): 429.
"""

from __future__ import annotations

import datetime as dt
import re
from urllib.parse import urlencode

from scholar_pipeline.simulator.common import BadRequest, SimResponse, single
from scholar_pipeline.simulator.corpus import Corpus, SimWork, search_words
from scholar_pipeline.simulator.record_faults import JsonRecords

BASIC_CONSTRAINTS = frozenset({"doi", "keyword", "onlinedate", "onlinedatefrom", "onlinedateto", "datefrom", "dateto", "date",
                               "issn", "isbn", "journalid", "type"})
PREMIUM_CONSTRAINTS = frozenset({"year", "subject", "language", "pub", "dateloaded", "dateloadedfrom", "dateloadedto", "title",
                                 "journal", "sort", "openaccess", "orgname", "country", "name"})
_CONSTRAINT = re.compile(r"(?<![\w\"])([A-Za-z]+):(\S*)")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _fail(status: int, error: str, message: str, description: str) -> BadRequest:
    """Springer's error body (dev.springernature.com, error handling: basic validations)."""
    return BadRequest(SimResponse.json(status, {"status": "Fail", "message": message,
                                                "error": {"error": error, "error_description": description}}))


def _premium(what: str) -> BadRequest:
    return _fail(403, "Forbidden", "This is a premium feature", f"{what} is available on the Premium plan only.")


class SpringerApi:
    name = "springer"
    records = JsonRecords(("records",), abstract="abstract", retyped="title")  # where faults on records act (record_faults.py)
    default_rate_limit = 100 / 60

    def __init__(self, corpus: Corpus, plan_page_size: int = 25):
        self.corpus, self.plan_page_size = corpus, plan_page_size
        self.routes = {"/meta/v2/json": self.meta}

    def record_ids(self, first: dt.date, last: dt.date, text: str | None = None) -> list[str]:
        return [w.doi for w in self._matching(search_words(text), first, last)]

    def _matching(self, words: frozenset[str], first: dt.date, last: dt.date) -> list[SimWork]:
        return [w for w in self.corpus.works_matching(words, first, last, self.name) if w.doi and w.publisher.startswith("Springer")]

    def meta(self, params: dict[str, list[str]]) -> SimResponse:
        if not single(params, "api_key"):
            raise _fail(401, "Unauthorized", "Authentication failed. API key is invalid or missing",
                        "API key is invalid or missing. Please check your API key and try again.")
        q = single(params, "q")
        if not q or not q.strip():
            raise _fail(400, "Bad Request", "Missing required query parameter: 'q'", "The query parameter 'q' is required.")
        start, size = _count(params, "s", "1"), _count(params, "p", "10")
        if start < 1:
            raise _fail(400, "Bad Request", "Invalid parameters found", "'s' must be a positive integer.")
        if size > self.plan_page_size:
            raise _premium(f"p={size} (more than {self.plan_page_size} records a call)")
        first, last, words = _read_query(q)
        works = sorted(self._matching(words, first, last), key=lambda w: w.doi)
        page = [render(w) for w in works[start - 1:start - 1 + size]]
        payload = {
            "apiMessage": "This JSON was provided by Springer Nature",
            "query": q,
            "result": [{"total": str(len(works)), "start": str(start), "pageLength": str(size), "recordsDisplayed": str(len(page))}],
            "records": page,
            "facets": _facets(page),
        }
        if start - 1 + size < len(works):
            payload["nextPage"] = "/meta/v2/json?" + urlencode({"q": q, "s": start + size, "p": size})
        return SimResponse.json(200, payload)

    @staticmethod
    def rate_limited() -> SimResponse:
        return SimResponse.json(429, {"status": "Fail", "message": "Rate limit exceeded",
                                      "error": {"error": "Too Many Requests", "error_description": "You have exceeded your rate limit."}})


def _count(params: dict[str, list[str]], name: str, default: str) -> int:
    value = single(params, name, default) or default
    if not re.fullmatch(r"\d+", value):
        raise _fail(400, "Bad Request", "Invalid parameters found", f"'{name}' must be a positive integer.")
    return int(value)


def _read_query(q: str) -> tuple[dt.date, dt.date, frozenset[str]]:
    """The online-date window and the search words of `q`; Springer's errors for what it refuses."""
    if q.count('"') % 2 or q.count("(") != q.count(")"):
        raise _fail(400, "Bad Request", "Invalid query", f"Unbalanced quotes or parentheses in query: {q}")
    constraints = {}
    for name, value in _CONSTRAINT.findall(q):
        name = name.lower()
        if name in PREMIUM_CONSTRAINTS:
            raise _premium(f"The constraint {name}:")
        if name not in BASIC_CONSTRAINTS:
            raise _fail(400, "Bad Request", "Invalid query", f"Unknown constraint {name}:")
        constraints[name] = value
    dates = [constraints.get("onlinedatefrom"), constraints.get("onlinedateto")]
    if not all(d and _DATE.fullmatch(d) for d in dates):
        raise _fail(400, "Bad Request", "Invalid query", "onlinedatefrom: and onlinedateto: take dates as YYYY-MM-DD, together")
    first, last = (dt.date.fromisoformat(d) for d in dates)
    return first, last, search_words(_CONSTRAINT.sub(" ", q))


def render(w: SimWork) -> dict:
    doi = w.doi
    printed = w.published + dt.timedelta(days=30 + w.serial % 90)
    is_oa = w.license is not None
    record = {
        "contentType": "Chapter" if w.work_type == "book-chapter" else "Article",
        "identifier": f"doi:{doi}",
        "language": w.language,
        "url": [{"format": "html", "platform": "web", "value": f"http://link.springer.com/openurl/fulltext?id=doi:{doi}"},
                *([{"format": "pdf", "platform": "web", "value": f"http://link.springer.com/openurl/pdf?id=doi:{doi}"}] if is_oa else []),
                {"format": "", "platform": "", "value": f"http://dx.doi.org/{doi}"}],
        "title": w.title,
        "creators": [{"creator": f"{a.family}, {a.given}", **({"ORCID": a.orcid} if a.orcid else {})} for a in w.authors],
        "publicationName": w.venue,
        "openaccess": "true" if is_oa else "false",
        "doi": doi,
        "publisher": "Springer",
        "publicationDate": printed.isoformat(),
        "publicationType": "Book" if w.work_type == "book-chapter" else "Journal",
        "genre": ["OriginalPaper", "Research"],
        "startingPage": str(1 + w.serial % 400),
        "onlineDate": w.published.isoformat(),
        "copyright": "©2024 The Author(s)" if is_oa else "©2024 Springer Nature Limited",
        "subjects": [_SUBJECTS[w.serial % len(_SUBJECTS)][1]],
        "disciplines": [{"id": _SUBJECTS[w.serial % len(_SUBJECTS)][0], "term": _SUBJECTS[w.serial % len(_SUBJECTS)][1]}],
        "keyword": [],
    }
    if w.abstract:
        record["abstract"] = w.abstract
    return record


_SUBJECTS = [("3207", "Information Storage and Retrieval"), ("1703", "Computer Science"), ("1111", "Soil Science")]


def _facets(page: list[dict]) -> list[dict]:
    languages: dict[str, int] = {}
    for record in page:
        languages[record["language"]] = languages.get(record["language"], 0) + 1
    return [{"name": "language", "values": [{"value": k, "count": str(v)} for k, v in sorted(languages.items())]}]
