"""PLOS Search API `/search` (Solr JSON): publication-date filter query, `start`/`rows` paging.

Request: `q` holds the search text (Lucene syntax, see `search_terms`), the day is a filter
query `fq=publication_date:[DT00:00:00Z TO DT23:59:59Z]`, and `fq=doc_type:full` keeps out
the section-level partial documents (ids like `…/introduction`) that Solr returns otherwise.
`fl` names exactly the fields parsed below. No key; 10 requests a minute, 300 an hour and
7,200 a day, so the default rate is the hourly one; overload answers 503, which the client retries.

Wire format: {"response": {"numFound", "start", "docs": [doc, ...]}}. The recorded answers
carry no `responseHeader` (PLOS omits it). Paging: `start` moves on by `rows` while the
pages come back full and `start + rows` is below `numFound`; an empty or short page before
`numFound` is refused (`paging.offset_page_end`).

Text fields, decided on the recorded pages (`scholar_pipeline_tests/data/real_responses/plos`):
- `abstract` (a list of strings, one per abstract) is plain text: the recorded abstracts
  hold bare `<` and `&` ("p<0.001", "p < 0.05", "IHDS I & II", "Results & conclusions"),
  never a tag or an entity, so PLOS has already turned its JATS into text. Markup
  conversion would misread "p<0.05 and x>3"; only whitespace is tidied (the recorded ones
  start and end with line breaks and indentation).
- `title_display` is markup: it keeps the article's inline tags ("How <i>Jaminan Kesehatan
  Nasional</i> (JKN) coverage ...") next to bare `&` ("Racial/Ethnic inequality &
  contemporary ..."), which the markup conversion keeps as text since it opens no entity.
- `author_display` (a list of names) and `journal` are plain text.

Bad values follow the rule in `scholar_pipeline.normalize`: records are read through
`RecordReader` (`read_records`), so a value of the wrong type is NULL and reported, and a
record that is not an object or has no usable `id` fails its page.

Fixed values: every work in the PLOS Search API is a PLOS journal article, and PLOS
publishes open access only, so `is_oa` is True, `publisher` is "Public Library of Science"
and the DOI link serves the free full text. `license` stays NULL: no field carries it, and
PLOS publishes most articles under CC BY but works of US government employees under CC0,
which the record does not tell apart. There is no ORCID, affiliation, language or citation
count in the API, and no PMID, PMCID or arXiv id (`pmid`, `pmcid`, `arxiv_id` are NULL; the
DOI is PLOS's own 10.1371 one).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from scholar_pipeline.providers.base import (
    MalformedPage, PageInfo, PageRequest, ParsedRecords, Provider, RecordReader, SearchTextError, load_json, read_records, require,
)
from scholar_pipeline.providers.paging import offset_page_end
from scholar_pipeline.settings import ProviderSettings
from scholar_pipeline.text import bare_doi, markup_to_text, plain_text, read_iso_date

MAX_ROWS = 1000  # about 999-1000 per call (rplos#9, UNCONFIRMED); `rows` is capped here
FIELDS = ("id", "title_display", "abstract", "author_display", "publication_date", "journal", "article_type")
PUBLISHER = "Public Library of Science"

# Characters the Lucene/Solr standard query parser reads as syntax (Solr's ClientUtils.escapeQueryChars).
_SPECIAL = re.compile(r'([+\-&|!(){}\[\]^"~*?:\\/;])')
_OPERATORS = frozenset({"AND", "OR", "NOT"})


class Plos(Provider):
    name = "plos"
    # 300 requests an hour, its hourly cap (api.plos.org/solr/faq: PLOS locks out an IP over its limits); 10 a minute is
    # only its burst limit, and a backfill at that rate would pass 300 in half an hour. 7,200 a day is 300 an hour. Five
    # connections at once at most (its FAQ again).
    defaults = ProviderSettings(base_url="https://api.plos.org", rate_limit=300 / 3600, page_size=500, max_records=200_000,
                                max_in_flight=5)
    requested_fields = frozenset(FIELDS)

    def first_request(self, text: str, day: dt.date, page_size: int, mailto: str | None) -> PageRequest:
        params = (
            ("q", self.search_terms(text)),
            ("fq", f"publication_date:[{day}T00:00:00Z TO {day}T23:59:59Z]"),
            ("fq", "doc_type:full"),
            ("fl", ",".join(FIELDS)),
            # Every word must occur (as at the other providers), whatever the server's default operator is,
            # and a fixed order: by relevance, records shift across page boundaries when the index changes.
            ("q.op", "AND"),
            ("sort", "id asc"),
            ("wt", "json"),
            ("start", "0"),
            ("rows", str(min(page_size, MAX_ROWS))),
        )
        return PageRequest("/search", params)

    def search_terms(self, text: str) -> str:
        """The text as a Solr `q`: the user's words, phrases in quotes, AND / OR / NOT and parentheses; nothing else is syntax.

        Every other character Lucene reads as syntax is escaped with a backslash, so it is
        searched as written: `field:` prefixes (`COVID-19: a review` would ask for a field
        named COVID-19), `+`/`-`/`!` (required, prohibited, not), `&&`/`||`, wildcards
        `*`/`?`, `~` and `^` (fuzzy, boost), brackets (ranges), `/` (regular expressions)
        and `\\`. A quote without its partner, or parentheses that do not pair up, are
        escaped too (Solr would answer a syntax error). An operator without an operand on
        each side it needs ("fish AND", "NOT", "(OR soil)") is dropped, and so are empty
        groups and phrases. A text that keeps no word is refused.
        """
        super().search_terms(text)  # refuses a text with no letter or digit at all
        phrases = text.count('"') % 2 == 0
        tokens = _tokens(text, phrases, parentheses=True)
        if not _parentheses_pair_up(tokens):
            tokens = _tokens(text, phrases, parentheses=False)
        items = _tidy(_group(iter(tokens), phrases))
        if items and items[0] == ("op", "NOT"):
            raise SearchTextError(f"{text!r} starts with NOT: plos would match every work of the day but those; "
                                  "say what to search for first")
        if not any(map(_has_word, items)):
            raise SearchTextError(f"{text!r} holds no word to search for once PLOS's query syntax is set aside; "
                                  "plos would match every work of the day (or none)")
        return _render(items)

    def inspect(self, request: PageRequest, body: bytes) -> PageInfo:
        response = _response(body)
        docs, total = response["docs"], response["numFound"]
        start, rows = int(request.param("start") or 0), int(request.param("rows") or MAX_ROWS)
        if response.get("start") != start:
            raise MalformedPage(f"plos answered for start={response.get('start')!r} when asked for start={start}; starts with {body[:120]!r}")
        reached = offset_page_end("plos", f"start={start}", start, len(docs), rows, "numFound", total)
        following = request.with_param("start", str(reached)) if reached < total else None
        return PageInfo(records=len(docs), total=total, next_request=following)

    def raw_records(self, body: bytes) -> list[Any]:
        return _response(body)["docs"]

    def read_raw_records(self, raw_records: list[Any]) -> ParsedRecords:
        return read_records(self.name, "response.docs", raw_records, _doc)


def _response(body: bytes) -> dict[str, Any]:
    page = load_json("plos", body)
    if isinstance(page, dict) and isinstance(page.get("error"), dict):  # Solr's error body: {"error": {"msg", "code"}}
        error = page["error"]
        raise MalformedPage(f"plos answered with an error ({error.get('code')}): {str(error.get('msg'))[:300]}")
    require("plos", isinstance(page, dict) and isinstance(page.get("response"), dict), "no `response` object", body)
    response = page["response"]
    require("plos", isinstance(response.get("docs"), list), "no `response.docs` list", body)
    total = response.get("numFound")
    require("plos", isinstance(total, int) and not isinstance(total, bool) and total >= 0, "`response.numFound` is not a count", body)
    return response


def _doc(r: RecordReader) -> dict[str, Any]:
    doi = r.identify("id", bare_doi)
    value = r.text("publication_date")
    published, precision = r.date(("publication_date",), value, read_iso_date(value))
    return {
        "provider": "plos",
        "provider_id": doi,
        "doi": doi,
        "pmid": None,
        "pmcid": None,
        "arxiv_id": None,
        "title": markup_to_text(r.text("title_display")),
        "abstract": plain_text(" ".join(r.texts("abstract"))),
        "authors": [{"name": plain_text(name), "orcid": None, "affiliations": []} for name in r.texts("author_display")],
        "publication_date": published,
        "publication_date_precision": precision,
        "venue": plain_text(r.text("journal")),
        "publisher": PUBLISHER,
        "work_type": plain_text(r.text("article_type")),
        "language": None,
        "is_oa": True,
        "oa_url": f"https://doi.org/{doi}",
        "license": None,
        "cited_by_count": None,
        "url": f"https://doi.org/{doi}",
    }


# The search text's structure: ("word", escaped text), ("phrase", '"..."'), ("op", "AND"), ("group", [items]).


def _tokens(text: str, phrases: bool, parentheses: bool) -> list[str]:
    """Phrases in quotes (when the quotes pair up), parentheses (when they pair up) and words; the rest is a word's."""
    pattern = (r'"[^"]*"|' if phrases else "") + (r"[()]|" if parentheses else "") + r"[^\s" + ("()" if parentheses else "") + ('"' if phrases else "") + "]+"
    return re.findall(pattern, text)


def _parentheses_pair_up(tokens: list[str]) -> bool:
    depth = 0
    for token in tokens:
        depth += (token == "(") - (token == ")")
        if depth < 0:
            return False
    return depth == 0


def _group(tokens, phrases: bool) -> list[tuple[str, Any]]:
    """Tokens up to the matching `)` as items, groups nested."""
    items: list[tuple[str, Any]] = []
    for token in tokens:
        if token == "(":
            items.append(("group", _group(tokens, phrases)))
        elif token == ")":
            return items
        elif token in _OPERATORS:
            items.append(("op", token))
        elif phrases and token[0] == '"':  # inside a phrase only `\` and `"` are syntax
            items.append(("phrase", '"' + " ".join(token[1:-1].replace("\\", "\\\\").split()) + '"'))
        else:
            items.append(("word", _SPECIAL.sub(r"\\\1", token)))
    return items


def _has_word(item: tuple[str, Any]) -> bool:
    kind, value = item
    if kind == "group":
        return any(map(_has_word, value))
    return kind != "op" and any(c.isalnum() for c in value)


def _tidy(items: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """Items without empty groups or phrases, and without an operator that lacks an operand.

    NOT needs an operand after it; AND and OR need one before and an operand or NOT after.
    Dropping one operator can leave another without its operand, so this runs until stable.
    """
    items = [(kind, _tidy(value) if kind == "group" else value) for kind, value in items]
    items = [item for item in items if item[0] == "op" or _has_word(item)]
    while True:
        kept: list[tuple[str, Any]] = []
        for index, (kind, value) in enumerate(items):
            following = items[index + 1] if index + 1 < len(items) else None
            if kind == "op" and value == "NOT" and (following is None or following[0] == "op"):
                continue
            if kind == "op" and value != "NOT" and (not kept or kept[-1][0] == "op" or following is None
                                                     or following in (("op", "AND"), ("op", "OR"))):
                continue
            kept.append((kind, value))
        if kept == items:
            return kept
        items = kept


def _render(items: list[tuple[str, Any]]) -> str:
    return " ".join(f"({_render(value)})" if kind == "group" else value for kind, value in items)
