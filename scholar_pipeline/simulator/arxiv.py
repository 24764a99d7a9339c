"""Simulated arXiv `/query`: Atom feeds shaped like the recorded ones, submittedDate windows, start/max_results.

- `search_query` must hold one `submittedDate:[YYYYMMDDTTTT TO YYYYMMDDTTTT]` window (GMT,
  to the minute, checked strictly like the live backend since Nov 2025). Of the works
  submitted in it, those the words of the rest of the query find are served (field prefixes
  are set aside here, operators by `search_words`; `Corpus.works_matching` decides). That rest is
  checked for arXiv's syntax too (field prefixes, balanced quotes and parentheses).
- A malformed query gets arXiv's `Error` feed (one entry titled `Error`, its id under
  `/api/errors#`, the message in `summary`) with status 200, as the live API sends it at
  times; a bad `start` or `max_results` gets the same feed with status 400.
- Paging: `start` (0-based) and `max_results` (default 10). At most `MAX_PER_CALL` entries
  come back per call, and none past the `MAX_TOTAL`-th of a query (`max_results` above
  `MAX_TOTAL` is a 400). Provider facts §8 leave 2000 < max_results ≤ 30,000 unconfirmed:
  here such a call is served 2000 entries.
- Order: `sortBy=submittedDate|lastUpdatedDate|relevance` (relevance: corpus order),
  `sortOrder=ascending|descending`, so offset paging walks a stable order.
- Over the rate limit: HTTP 429 with the plain-text body `Rate exceeded.` and no Retry-After.
- What varies per call, as on the live feed: the feed's `updated`. Everything else of an
  unchanged answer is byte-identical.
- `empty_page_at`: starts answered once with an empty page and totalResults 0, the anomaly
  the live API shows now and then.

Every generated work is an e-print here (a preprint, or an article its authors posted too).
Each gets an arXiv id `YYMM.NNNNN` from its submission month, day and place among
all of the day's works (so the same id whatever the search; a preprint's is the `arxiv_id`
other providers name it by), a version (v1-v3: the feed lists the latest only), a
submission time within its day (GMT), and, for some, a DOI and journal reference (a
published e-print), affiliations, a comment and a hard-wrapped title or abstract, as in
real feeds. A planted work (planted.py) keeps its own id and may list several versions as
entries of their own (`…v1`, `…v2`), as two fetches before and after a revision hold it.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
import threading
from dataclasses import dataclass
from urllib.parse import quote

from lxml import etree

from scholar_pipeline.simulator.common import BadRequest, SimResponse, single
from scholar_pipeline.simulator.corpus import Corpus, SimWork, search_words
from scholar_pipeline.simulator.identifiers import arxiv_id_for
from scholar_pipeline.simulator.record_faults import XmlRecords

MAX_PER_CALL = 2000
MAX_TOTAL = 30_000
ATOM, ARXIV, OPENSEARCH = "http://www.w3.org/2005/Atom", "http://arxiv.org/schemas/atom", "http://a9.com/-/spec/opensearch/1.1/"
NSMAP = {"opensearch": OPENSEARCH, "arxiv": ARXIV, None: ATOM}  # the recorded feeds' order
CONTENT_TYPE = "application/atom+xml; charset=utf-8"

_WINDOW = re.compile(r"submittedDate:\[(\d{12}) TO (\d{12})\]")
_FIELD = re.compile(r"(?<![\w\"])([A-Za-z]+):")
_KNOWN_FIELDS = {"ti", "au", "abs", "co", "jr", "cat", "rn", "id", "all"}
CATEGORIES = {"language model": "cs.CL", "soil microbiome": "q-bio.PE", "graph neural network": "cs.LG", "climate adaptation": "physics.ao-ph",
              "protein folding": "q-bio.BM", "systematic review": "stat.ME", "federated learning": "cs.DC", "coral reef": "q-bio.PE",
              "gene expression": "q-bio.GN", "urban heat island": "physics.soc-ph"}


@dataclass(frozen=True)
class ArxivEntry:
    work: SimWork
    arxiv_id: str  # without version
    version: int
    submitted: dt.datetime  # GMT, v1
    updated: dt.datetime  # this version

    @property
    def versioned_id(self) -> str:
        return f"{self.arxiv_id}v{self.version}"


def _error_feed(status: int, slug: str, message: str) -> BadRequest:
    """arXiv's error answer: a feed with one entry titled `Error` (user manual §3.4)."""
    feed = _feed_element("", 0, 1, 1)
    entry = etree.SubElement(feed, f"{{{ATOM}}}entry")
    error_id = f"http://arxiv.org/api/errors#{slug}"
    _text(entry, "id", error_id)
    _text(entry, "title", "Error")
    _text(entry, "summary", message)
    _text(entry, "updated", dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    etree.SubElement(entry, f"{{{ATOM}}}link", href=error_id, rel="alternate", type="text/html")
    author = etree.SubElement(entry, f"{{{ATOM}}}author")
    _text(author, "name", "arXiv api core")
    return BadRequest(SimResponse(status, _serialize(feed), CONTENT_TYPE))


class ArxivApi:
    name = "arxiv"
    records = XmlRecords("entry", abstract="summary", retyped="published")  # where faults on records act (record_faults.py)
    default_rate_limit = 1 / 3  # one request every three seconds (terms of use)
    in_flight_limit = 1  # "a single connection at a time"

    def __init__(self, corpus: Corpus):
        self.corpus = corpus
        self.routes = {"/query": self.query}
        self.empty_page_at: set[int] = set()
        self._lock = threading.Lock()

    def record_ids(self, first: dt.date, last: dt.date, text: str | None = None) -> list[str]:
        return [e.versioned_id for e in self._entries(search_words(text), first, last)]

    def _entries(self, words: frozenset[str], first: dt.date, last: dt.date) -> list[ArxivEntry]:
        """The entries these words find, numbered by their place among all of the day's works."""
        out = []
        for offset in range(max((last - first).days + 1, 0)):
            day = first + dt.timedelta(days=offset)
            out += [entry for n, w in enumerate(self.corpus.works_on(day)) if w.held_by(self.name) and self.corpus.matches(words, w)
                    for entry in _entries_for(w, day, n)]
        return out

    def query(self, params: dict[str, list[str]]) -> SimResponse:
        search_query = single(params, "search_query", "")
        start = _integer(single(params, "start", "0"), "start")
        max_results = _integer(single(params, "max_results", "10"), "max_results")
        if max_results > MAX_TOTAL:
            raise _error_feed(400, "max_results_too_large", f"max_results must be <= {MAX_TOTAL}")
        first, last = _window(search_query)
        words = search_words(_FIELD.sub(" ", _WINDOW.sub(" ", search_query)))  # `all:soil` searches soil
        entries = [e for e in self._entries(words, first.date(), last.date()) if first <= e.submitted.replace(second=0) <= last]
        entries = _ordered(entries, single(params, "sortBy", "relevance"), single(params, "sortOrder", "descending"))
        total = len(entries)
        with self._lock:
            anomaly = start in self.empty_page_at
            self.empty_page_at.discard(start)
        if anomaly:
            page, total = [], 0
        else:
            page = entries[start:min(start + min(max_results, MAX_PER_CALL), MAX_TOTAL)]
        feed = _feed_element(search_query, start, max_results, total)
        for entry in page:
            _render(feed, entry)
        return SimResponse(200, _serialize(feed), CONTENT_TYPE)

    @staticmethod
    def rate_limited() -> SimResponse:
        return SimResponse.text(429, "Rate exceeded.")


def _integer(value: str, name: str) -> int:
    if not re.fullmatch(r"-?\d+", value.strip()):
        raise _error_feed(400, f"{name}_must_be_an_integer", f"{name} must be an integer")
    number = int(value)
    if number < 0:
        raise _error_feed(400, f"{name}_must_be_non-negative", f"{name} must be >= 0")
    return number


def _window(search_query: str) -> tuple[dt.datetime, dt.datetime]:
    """The one submittedDate window of a query whose syntax holds; an Error feed (status 200) otherwise."""
    windows = _WINDOW.findall(search_query)
    rest = _WINDOW.sub(" ", search_query)
    if "submittedDate" in rest or "lastUpdatedDate" in rest:
        raise _error_feed(200, "malformed_date", "submittedDate must be written [YYYYMMDDTTTT TO YYYYMMDDTTTT] (GMT)")
    if len(windows) != 1:
        raise _error_feed(200, "no_date_window", "the simulator serves one submittedDate:[... TO ...] window per query")
    if rest.count('"') % 2 or not _balanced(rest):
        raise _error_feed(200, "malformed_query", f"malformed search_query: {search_query}")
    unknown = sorted({f for f in _FIELD.findall(re.sub(r'"[^"]*"', " ", rest)) if f not in _KNOWN_FIELDS})
    if unknown:
        raise _error_feed(200, "unknown_field", f"unknown search field(s) {', '.join(unknown)} in search_query")
    try:
        first, last = (dt.datetime.strptime(bound, "%Y%m%d%H%M") for bound in windows[0])
    except ValueError:
        raise _error_feed(200, "malformed_date", f"invalid date in submittedDate:[{windows[0][0]} TO {windows[0][1]}]") from None
    return first, last


def _balanced(text: str) -> bool:
    depth = 0
    for character in re.sub(r'"[^"]*"', " ", text):
        depth += {"(": 1, ")": -1}.get(character, 0)
        if depth < 0:
            return False
    return depth == 0


def _ordered(entries: list[ArxivEntry], sort_by: str, sort_order: str) -> list[ArxivEntry]:
    if sort_by == "submittedDate":
        entries = sorted(entries, key=lambda e: (e.submitted, e.arxiv_id))
    elif sort_by == "lastUpdatedDate":
        entries = sorted(entries, key=lambda e: (e.updated, e.arxiv_id))
    elif sort_by != "relevance":
        raise _error_feed(400, "unknown_sort", "sortBy must be one of relevance, lastUpdatedDate, submittedDate")
    if sort_order not in ("ascending", "descending"):
        raise _error_feed(400, "unknown_sort_order", "sortOrder must be ascending or descending")
    return entries[::-1] if sort_order == "descending" and sort_by != "relevance" else entries


def _entries_for(work: SimWork, day: dt.date, n: int) -> list[ArxivEntry]:
    """The work's entry, in its latest version; or one entry for each of the versions it lists (a planted work)."""
    submitted = dt.datetime.combine(day, dt.time()) + dt.timedelta(seconds=work.serial % 86_400)
    arxiv_id = work.arxiv_id or arxiv_id_for(day, n)
    return [ArxivEntry(work, arxiv_id, version, submitted, submitted + dt.timedelta(days=7 * (version - 1), minutes=work.serial % 600))
            for version in work.arxiv_versions or (1 + work.serial % 3,)]


def _text(parent: etree._Element, tag: str, text: str, namespace: str = ATOM) -> etree._Element:
    element = etree.SubElement(parent, f"{{{namespace}}}{tag}")
    element.text = text
    return element


def _stamp(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _feed_element(search_query: str, start: int, max_results: int, total: int) -> etree._Element:
    feed = etree.Element(f"{{{ATOM}}}feed", nsmap=NSMAP)
    asked = f"search_query={search_query}&id_list=&start={start}&max_results={max_results}"
    digest = base64.b64encode(hashlib.sha1(asked.encode()).digest()).decode().rstrip("=").replace("/", "+")
    _text(feed, "id", f"https://arxiv.org/api/{digest}")
    _text(feed, "title", f"arXiv Query: {asked}")
    _text(feed, "updated", _stamp(dt.datetime.now(dt.timezone.utc)))  # the one field that changes on every call
    etree.SubElement(feed, f"{{{ATOM}}}link", href=f"https://arxiv.org/api/query?search_query={quote(search_query, safe=':[]()')}"
                     f"&start={start}&max_results={max_results}&id_list=", type="application/atom+xml")
    _text(feed, "itemsPerPage", str(max_results), OPENSEARCH)
    _text(feed, "totalResults", str(total), OPENSEARCH)
    _text(feed, "startIndex", str(start), OPENSEARCH)
    return feed


def _wrapped(text: str, at: str) -> str:
    """Hard-wrapped the way older feeds are: a line break and two spaces of indentation."""
    return text.replace(at, at.rstrip() + "\n  ", 1) if at in text else text


def _render(feed: etree._Element, e: ArxivEntry) -> None:
    w = e.work
    entry = etree.SubElement(feed, f"{{{ATOM}}}entry")
    _text(entry, "id", f"http://arxiv.org/abs/{e.versioned_id}")
    _text(entry, "title", _wrapped(w.title, ": ") if w.serial % 4 == 0 else w.title)
    _text(entry, "updated", _stamp(e.updated))
    etree.SubElement(entry, f"{{{ATOM}}}link", href=f"https://arxiv.org/abs/{e.versioned_id}", rel="alternate", type="text/html")
    etree.SubElement(entry, f"{{{ATOM}}}link", href=f"https://arxiv.org/pdf/{e.versioned_id}", rel="related", type="application/pdf", title="pdf")
    abstract = w.abstract or ""
    _text(entry, "summary", _wrapped(abstract, ". ") if w.serial % 3 == 0 else abstract)
    topic = next((c for t, c in CATEGORIES.items() if t in w.title), "cs.LG")
    for category in dict.fromkeys((topic, "stat.ML" if w.serial % 2 else "cs.AI")):
        etree.SubElement(entry, f"{{{ATOM}}}category", term=category, scheme="http://arxiv.org/schemas/atom")
    _text(entry, "published", _stamp(e.submitted))
    if w.serial % 5 < 2:
        _text(entry, "comment", f"{8 + w.serial % 30} pages, {w.serial % 9} figures", ARXIV)
    etree.SubElement(entry, f"{{{ARXIV}}}primary_category", term=topic)
    published_doi = w.doi if w.doi and w.serial % 2 == 0 else None  # an e-print that appeared in a journal
    if published_doi:
        _text(entry, "journal_ref", f"{w.venue} ({w.published.year})", ARXIV)
    for author in w.authors:
        element = etree.SubElement(entry, f"{{{ATOM}}}author")
        _text(element, "name", author.name)
        if author.affiliation and w.serial % 2:
            _text(element, "affiliation", author.affiliation, ARXIV)
    if published_doi:
        _text(entry, "doi", published_doi, ARXIV)
        etree.SubElement(entry, f"{{{ATOM}}}link", rel="related", href=f"https://doi.org/{published_doi}", title="doi")


def _serialize(feed: etree._Element) -> bytes:
    etree.indent(feed, space="  ")
    return etree.tostring(feed, xml_declaration=True, encoding="UTF-8") + b"\n"
