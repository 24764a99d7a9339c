"""Simulated PLOS Search API `/search`: Solr JSON, `fq` date windows, `start`/`rows` paging, Solr error bodies.

Only PLOS works are served: the corpus' works with a DOI from the publisher "Public
Library of Science" (the PLOS ONE venue). Answers look like the recorded ones: Solr's
indented JSON without a `responseHeader` (PLOS omits it), `response.numFound`, `start`,
`docs` with only the `fl` fields (`maxScore` and `score` only when `fl` asks for `score`),
and PLOS's quirks: abstracts as a list of one string wrapped in line breaks or ending in a
space (or `[""]`), inline tags in some `title_display`, a missing `journal` now and then,
empty multi-valued fields left out. Without `fq=doc_type:full`, section-level partial
documents (ids like `…/introduction`) come back too, as they do from the real API.

Of the PLOS works in the `fq` window, those the words of `q` find are served
(`search_words`: the letters and digits are the words, an escape is not, operators are
syntax; `Corpus.works_matching` decides). `q` is parsed as Lucene reads it: a quote or parenthesis
without its partner, an operator without an operand or an unknown `field:` prefix gets
Solr's 400 error body. `rows` above 1000 is refused the same way.
Over the rate limit (10 requests a minute at PLOS), the answer is 503 "Service Unavailable",
the overload page PLOS sends.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import re

from scholar_pipeline.simulator.common import BadRequest, SimResponse, single
from scholar_pipeline.simulator.corpus import Corpus, SimWork, search_words
from scholar_pipeline.simulator.record_faults import JsonRecords

MAX_ROWS = 1000
MAX_WINDOW_DAYS = 400  # the simulator builds its corpus day by day
PUBLISHER = "Public Library of Science"
DEFAULT_FIELDS = ("id", "journal", "eissn", "publication_date", "article_type", "author_display", "abstract", "title_display", "score")
# Fields the simulated index knows; `field:` in `q` or `fq` with any other name is Solr's "undefined field".
KNOWN_FIELDS = frozenset(DEFAULT_FIELDS) | {
    "everything", "title", "author", "body", "subject", "doc_type", "journal_key", "volume", "issue", "elocation_id",
    "counter_total_all", "cross_published_journal_key", "introduction", "results_and_discussion", "materials_and_methods",
}
SECTIONS = ("introduction", "materials_and_methods", "results_and_discussion")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?Z")
_RANGE = re.compile(r"publication_date:([\[{])\s*(\S+)\s+TO\s+(\S+)\s*([\]}])")
_OVERLOAD_PAGE = ("<html><head><title>503 Service Unavailable</title></head><body><h1>Service Unavailable</h1>"
                  "<p>The server cannot process the request due to a high load</p></body></html>")


def _solr_error(params: dict[str, list[str]], message: str, root: str = "org.apache.solr.common.SolrException") -> BadRequest:
    """Solr's error body, with the `responseHeader` Solr puts on errors (QTime varies from call to call)."""
    echoed = {name: values[-1] if len(values) == 1 else values for name, values in params.items()}
    payload = {
        "responseHeader": {"status": 400, "QTime": random.randint(0, 4), "params": echoed},
        "error": {"metadata": ["error-class", "org.apache.solr.common.SolrException", "root-error-class", root],
                  "msg": message, "code": 400},
    }
    return BadRequest(SimResponse(400, (json.dumps(payload, ensure_ascii=False, indent=2) + "\n").encode(), "application/json;charset=utf-8"))


class PlosApi:
    name = "plos"
    records = JsonRecords(("response", "docs"), abstract="abstract", retyped="title_display")  # where faults on records act (record_faults.py)
    # Requests per second for the simulator's 1-second window: 10 a minute. Below one, the window
    # lets one request a second through (it cannot count a whole minute).
    default_rate_limit = 10 / 60
    in_flight_limit = 5  # connections per IP (its FAQ)

    def __init__(self, corpus: Corpus):
        self.corpus = corpus
        self.routes = {"/search": self.search}

    def record_ids(self, first: dt.date, last: dt.date, text: str | None = None) -> list[str]:
        return [w.doi for w in self._matching(search_words(text), first, last)]

    def _matching(self, words: frozenset[str], first: dt.date, last: dt.date) -> list[SimWork]:
        return [w for w in self.corpus.works_matching(words, first, last, self.name) if w.doi and w.publisher == PUBLISHER]

    def search(self, params: dict[str, list[str]]) -> SimResponse:
        q = single(params, "q")
        if not q or not q.strip():
            raise _solr_error(params, "org.apache.solr.search.SyntaxError: Cannot parse '': Encountered \"<EOF>\" at line 1, column 0.",
                              "org.apache.solr.parser.ParseException")
        _check_query(params, q)
        start, rows = _count(params, "start", "0"), _count(params, "rows", "10")
        if rows > MAX_ROWS:
            raise _solr_error(params, f"rows={rows} exceeds the maximum of {MAX_ROWS} documents per request")
        window, full_only = None, False
        for fq in params.get("fq", []):
            if fq.strip() == "doc_type:full":
                full_only = True
            elif fq.strip().startswith("publication_date:"):
                window = _window(params, fq.strip())
            else:
                _check_query(params, fq)
        sort = single(params, "sort")
        if sort not in (None, "id asc"):
            raise _solr_error(params, f"Can't determine a Sort Order (asc or desc) in sort spec '{sort}'")
        # Solr's default order is by relevance; `id asc` is the stable order a pager asks for.
        order = (lambda doc: doc[0].doi) if sort else (lambda doc: -_score(doc, q))
        docs = sorted(self._docs(search_words(q), window, full_only), key=order)
        fields = _fields(params)
        page = [_render(doc, fields, q) for doc in docs[start:start + rows]]
        max_score = max((_score(doc, q) for doc in docs), default=0.0) if "score" in fields else None
        return SimResponse(200, _solr_json(len(docs), start, page, max_score), "application/json;charset=utf-8")

    def _docs(self, words: frozenset[str], window: tuple[dt.datetime, dt.datetime] | None,
              full_only: bool) -> list[tuple[SimWork, str | None]]:
        """(work, section) pairs the words find in the window: the article itself (section None), then its sections unless full_only."""
        if window is None:
            return []
        low, high = window
        works = [w for w in self._matching(words, low.date(), high.date()) if low <= _published(w) <= high]
        return [(w, section) for w in works for section in (None, *(() if full_only else SECTIONS[: 1 + w.serial % 3]))]

    @staticmethod
    def rate_limited() -> SimResponse:
        return SimResponse(503, _OVERLOAD_PAGE.encode(), "text/html")


def _published(w: SimWork) -> dt.datetime:
    return dt.datetime.combine(w.published, dt.time(), dt.timezone.utc)


def _count(params: dict[str, list[str]], name: str, default: str) -> int:
    value = single(params, name, default) or default
    if not re.fullmatch(r"-?\d+", value):
        raise _solr_error(params, f"For input string: \"{value}\"", "java.lang.NumberFormatException")
    if int(value) < 0:
        raise _solr_error(params, f"'{name}' parameter cannot be negative")
    return int(value)


def _fields(params: dict[str, list[str]]) -> tuple[str, ...]:
    fl = single(params, "fl")
    if not fl:
        return DEFAULT_FIELDS
    return tuple(f for f in re.split(r"[,\s]+", fl) if f)


def _window(params: dict[str, list[str]], fq: str) -> tuple[dt.datetime, dt.datetime]:
    match = _RANGE.fullmatch(fq)
    if not match:
        raise _solr_error(params, f"org.apache.solr.search.SyntaxError: Cannot parse '{fq}': a date field needs a range [A TO B]",
                          "org.apache.solr.parser.ParseException")
    opening, low_text, high_text, closing = match.groups()
    bounds = []
    for text in (low_text, high_text):
        if not _DATE.fullmatch(text):
            raise _solr_error(params, f"Invalid Date String:'{text}'")
        bounds.append(dt.datetime.fromisoformat(text.replace("Z", "+00:00")))
    low, high = bounds
    if opening == "{":
        low += dt.timedelta(microseconds=1)
    if closing == "}":
        high -= dt.timedelta(microseconds=1)
    if (high - low).days > MAX_WINDOW_DAYS:
        raise _solr_error(params, f"the simulator serves publication_date windows of at most {MAX_WINDOW_DAYS} days")
    return low, high


def _check_query(params: dict[str, list[str]], q: str) -> None:
    """Refuse what Lucene's standard query parser cannot parse, with Solr's error body."""
    plain = re.sub(r"\\.", "_", q)  # escaped characters are text
    problem = None
    if plain.count('"') % 2:
        problem = "Lexical error: a quote opens a phrase that never ends"
    else:
        outside = re.sub(r'"[^"]*"', " _ ", plain)
        depth = 0
        for character in outside:
            depth += (character == "(") - (character == ")")
            if depth < 0:
                break
        tokens = re.findall(r"[()]|[^\s()]+", outside)
        fields = re.findall(r"(?:^|[\s(])[+\-!]?([^\s():\"]+):", outside)
        unknown = [f for f in fields if f not in KNOWN_FIELDS and f != "*"]
        unranged = re.sub(r"[\[{]\S+ TO \S+[\]}]", " _ ", outside)
        if depth != 0:
            problem = "Encountered \")\"" if depth < 0 else "Encountered \"<EOF>\" (a parenthesis is not closed)"
        elif unknown:
            raise _solr_error(params, f"undefined field {unknown[0]}")
        elif re.search(r"[\[\]{}]", unranged):
            problem = "Encountered a bracket that opens or closes no range [A TO B]"
        elif unranged.count("/") % 2:
            problem = "Lexical error: a regular expression (/.../) never ends"
        else:
            problem = _dangling_operator(tokens)
    if problem:
        raise _solr_error(params, f"org.apache.solr.search.SyntaxError: Cannot parse '{q}': {problem}", "org.apache.solr.parser.ParseException")


def _dangling_operator(tokens: list[str]) -> str | None:
    binary = {"AND", "OR", "&&", "||"}
    for index, token in enumerate(tokens):
        before = tokens[index - 1] if index else None
        after = tokens[index + 1] if index + 1 < len(tokens) else None
        if token in binary and (before is None or before in binary | {"NOT", "("} or after is None or after in binary | {")"}):
            return f"Encountered \"<{token}>\" without an operand"
        if token == "NOT" and (after is None or after in binary | {"NOT", ")"}):
            return "Encountered \"<NOT>\" without an operand"
    return None


def _score(doc: tuple[SimWork, str | None], q: str) -> float:
    """Deterministic per document and query, as a relevance score is for an unchanged index."""
    w, section = doc
    digest = hashlib.sha256(f"{q}:{w.serial}/{section}".encode()).digest()
    return round(1 + int.from_bytes(digest[:4], "big") / 2**32 * 15, 6)


def _render(doc: tuple[SimWork, str | None], fields: tuple[str, ...], q: str) -> dict:
    w, section = doc
    full = section is None
    values: dict = {"id": w.doi if full else f"{w.doi}/{section}", "doc_type": "full" if full else "partial"}
    if w.serial % 17:  # a few PLOS records carry no `journal` (3 of 100 in a recorded page)
        values["journal"] = w.venue
    values.update(eissn="1932-6203", publication_date=f"{w.published.isoformat()}T00:00:00Z",
                  article_type="Research Article" if w.work_type == "article" else "Perspective")
    if full:
        if w.authors:  # Solr leaves an empty multi-valued field out
            values["author_display"] = [a.name for a in w.authors]
            values["author"] = values["author_display"]
        if w.abstract:
            values["abstract"] = [f"\n{w.abstract}\n" if w.serial % 2 else f"{w.abstract} "]
        elif w.serial % 3 == 0:
            values["abstract"] = [""]
        first, _, rest = w.title.partition(" ")
        values["title_display"] = f"<i>{first}</i> {rest}" if w.serial % 7 == 0 else w.title
        values["title"] = w.title
    values["score"] = _score(doc, q)
    return {name: values[name] for name in fields if name in values}


def _solr_json(found: int, start: int, docs: list[dict], max_score: float | None) -> bytes:
    """Solr's indented JSON as PLOS sends it (the layout of the recorded pages, UTF-8 unescaped)."""

    def value(v) -> str:
        if isinstance(v, list):
            return "[" + ",\n          ".join(json.dumps(x, ensure_ascii=False) for x in v) + "]"
        return json.dumps(v, ensure_ascii=False)

    rendered = ",".join("\n      {\n        " + ",\n        ".join(f'"{k}":{value(v)}' for k, v in doc.items()) + "}" for doc in docs)
    score = "" if max_score is None else f'"maxScore":{max_score},'
    return f'{{\n  "response":{{"numFound":{found},"start":{start},{score}"docs":[{rendered}]\n  }}}}\n'.encode()
