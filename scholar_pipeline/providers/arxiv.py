"""arXiv `/query`: a submittedDate window ANDed with the search, start/max_results paging, Atom XML.

Wire format (Atom 1.0, parsed with lxml): a `feed` holding `opensearch:totalResults`,
`opensearch:startIndex` and `opensearch:itemsPerPage`, then one `entry` per e-print with
`id` (`http://arxiv.org/abs/2401.01234v2`), `title`, `summary`, `published` (v1),
`updated` (this version), `author/name` (+ `arxiv:affiliation`), `arxiv:doi`,
`arxiv:journal_ref`, `arxiv:comment`, categories and links (abs page, pdf, doi).

Requests: `search_query=(<terms>) AND submittedDate:[YYYYMMDD0000 TO YYYYMMDD2359]` (GMT
minutes), sorted by submission date ascending, so offset paging walks a stable order.
`search_terms` rewrites the saved search into arXiv's query syntax (see there).

Paging: `start` (0-based) moves on by the records received; a page is asked for while
`start` is below `opensearch:totalResults`, at most `MAX_RESULTS` at a time. arXiv serves
no record past `MAX_TOTAL` of one query, so a day reporting more fails on its first page
with `PartitionTooLarge`, saying to narrow the search, rather than landing part of the day.

Errors arXiv sends as data, each a `MalformedPage` (the fetch evicts the page and fails
the partition with the message):
- a feed whose only entry is titled `Error` (its id under `/api/errors`), also with
  status 200; the message is its `summary`;
- an empty page where records remain: after a page that reported more records, or with a
  total above zero. The live API sends such pages now and then (with totalResults 0);
  taken as the end they would drop the rest of the day silently. On a day's first page
  the anomaly looks like an empty day, so the fetch asks for an empty first page once more
  (`doubts_empty_first_page`) and takes the day as empty only when it comes empty again;
- a total below the records this page reaches, or a `startIndex` that is not the start asked for.

Records: `provider_id` is the id with its version (`2202.12139v1`), `arxiv_id` the id without
it (`2202.12139`, `hep-th/9901001`: what the other providers name), the DOI comes from
`arxiv:doi` (the first when several are listed), title and abstract are plain text (arXiv
does not mark them up; LaTeX such as `$\\alpha$` stays as written) unwrapped to one line,
`publication_date` is `published` (the v1 submission, day precision, GMT), `url` the
abs page and `oa_url` the pdf. Every e-print is free to read, so `is_oa` is True;
`license` is `arxiv:license` when a feed carries it (the recorded feeds do not). arXiv
has no citation counts, languages or ORCIDs.

Bad values: each entry is read into a dict (element name -> text, or a dict of its
attributes/children, lists for repeated elements) and goes through `RecordReader`, so the
rule in normalize.py holds as for the JSON providers: an element that should hold text but
holds elements, or a single-valued element given twice, is read as null and reported under
its element name (`arxiv:doi`, `author[1].name`); an entry without an abs-page `id` fails
its page (RecordError).
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from typing import Any

from lxml import etree

from scholar_pipeline.providers.base import (
    MalformedPage, PageInfo, PageRequest, ParsedRecords, PartitionTooLarge, Provider, RecordReader, SearchTextError, add_child, read_records,
    require,
)
from scholar_pipeline.providers.boolean_query import QueryLanguage
from scholar_pipeline.settings import ProviderSettings
from scholar_pipeline.text import bare_doi, plain_text, read_iso_date

MAX_RESULTS = 2000  # per call (user manual §3.1.1.2)
MAX_TOTAL = 30_000  # start + max_results never beyond this for one query

ATOM, ARXIV, OPENSEARCH = "http://www.w3.org/2005/Atom", "http://arxiv.org/schemas/atom", "http://a9.com/-/spec/opensearch/1.1/"
_PREFIXES = {ATOM: "", ARXIV: "arxiv:", OPENSEARCH: "opensearch:"}
NS = {"atom": ATOM, "arxiv": ARXIV, "opensearch": OPENSEARCH}
# Elements an entry may hold several of: always read as lists, even when there is one.
_REPEATED = frozenset({"author", "link", "category", "arxiv:affiliation"})

# arXiv's search_query syntax: field prefixes, boolean operators (upper case), quotes, parentheses.
FIELD_PREFIXES = frozenset({"ti", "au", "abs", "co", "jr", "cat", "rn", "id", "all", "submitteddate", "lastupdateddate"})
# Letters and digits make a word; any other character separates (`COVID-19` is the phrase "COVID 19").
QUERY_LANGUAGE = QueryLanguage("arxiv", re.compile(r"[^\W_]+"), field_prefix="all:", not_operator="ANDNOT")
_FIELD_PREFIX = re.compile(r"^([A-Za-z]+):")


class Arxiv(Provider):
    name = "arxiv"
    # "No more than one request every three seconds, and a single connection at a time" (terms of use).
    defaults = ProviderSettings(base_url="https://export.arxiv.org/api", rate_limit=1 / 3, page_size=500, max_records=MAX_TOTAL,
                                max_in_flight=1)
    doubts_empty_first_page = True  # its anomalous empty pages come on a day's first page too: an empty day costs two requests

    def first_request(self, text: str, day: dt.date, page_size: int, mailto: str | None) -> PageRequest:
        stamp = f"{day:%Y%m%d}"
        query = f"{self.search_terms(text)} AND submittedDate:[{stamp}0000 TO {stamp}2359]"
        params = (("search_query", query), ("sortBy", "submittedDate"), ("sortOrder", "ascending"),
                  ("start", "0"), ("max_results", str(min(page_size, MAX_RESULTS))))
        return PageRequest("/query", params)

    def search_terms(self, text: str) -> str:
        """The text in arXiv's query syntax, meaning what it means at the other providers; parenthesized when compound.

        Every word is searched in all fields (`all:word`) and the words must all occur, as
        at OpenAlex: adjacent terms are joined by AND. A word holding other characters is
        searched as the phrase of its letter-and-digit pieces (`COVID-19` as `all:"COVID 19"`,
        so no `-`, `:` or `+` reaches arXiv's parser); a quoted phrase stays a phrase.
        `AND`, `OR` and parentheses are kept, `NOT` becomes arXiv's `ANDNOT`, and where AND
        and OR mix, the AND runs are parenthesized (AND binds tighter). Refused
        (SearchTextError): a text without a word, an unmatched quote or parenthesis, an
        operator without a term on each side, a NOT that follows no term (arXiv has only
        ANDNOT), arXiv field prefixes (`ti:`, `au:`...: another provider reads them as words)
        and `*` (a wildcard to arXiv, not elsewhere).
        """
        super().search_terms(text)
        for raw in text.replace("(", " ").replace(")", " ").split():
            prefix = _FIELD_PREFIX.match(raw)
            if prefix and prefix.group(1).lower() in FIELD_PREFIXES and not raw.startswith('"'):
                raise SearchTextError(f"{text!r}: `{prefix.group(0)}` is arXiv's field syntax, which the other providers read as "
                                      "a word; write the words alone (arXiv searches them in every field)")
        if "*" in text:
            raise SearchTextError(f"{text!r}: arXiv reads `*` as a wildcard and the other providers do not; write whole words")
        return QUERY_LANGUAGE.write_operand(text)

    def inspect(self, request: PageRequest, body: bytes) -> PageInfo:
        feed = _feed(body)
        entries, total = len(feed.entries), feed.total
        start = int(request.param("start") or 0)
        if feed.start is not None and feed.start != start:
            raise MalformedPage(f"arxiv answered start={start} with a page that starts at {feed.start}")
        if not entries and (start > 0 or total > 0):
            raise MalformedPage(
                f"arxiv sent an empty page at start={start} although {'the page before reported more' if start else f'it reports {total} records'} "
                f"(this page says totalResults={total}); the live API does this now and then, and taking it as the end would "
                "drop the rest of the day"
            )
        if total < start + entries:
            raise MalformedPage(f"arxiv reports totalResults={total} on a page holding records {start + 1} to {start + entries}")
        if total > MAX_TOTAL:
            raise PartitionTooLarge(
                f"arxiv reports {total} records for this search and day, more than the {MAX_TOTAL} its API serves for one "
                "query; narrow the saved search (more or more specific words) so that a day holds fewer"
            )
        following = None
        if start + entries < total:
            size = int(request.param("max_results") or MAX_RESULTS)
            following = request.with_param("start", str(start + entries)).with_param("max_results", str(min(size, MAX_TOTAL - start - entries)))
        return PageInfo(records=entries, total=total, next_request=following)

    def raw_records(self, body: bytes) -> list[Any]:
        return [_element_value(e) for e in _feed(body).entries]

    def read_raw_records(self, raw_records: list[Any]) -> ParsedRecords:
        return read_records(self.name, "feed.entry", raw_records, _entry)


class _Feed:
    def __init__(self, root: etree._Element, body: bytes):
        self.entries = root.findall("atom:entry", NS)
        total = root.findtext("opensearch:totalResults", namespaces=NS)
        require("arxiv", total is not None and total.strip().isdigit(), f"`opensearch:totalResults` is {total!r}, not a count", body)
        self.total = int(total)
        start = root.findtext("opensearch:startIndex", namespaces=NS)
        self.start = int(start) if start is not None and start.strip().isdigit() else None


def _feed(body: bytes) -> _Feed:
    """The Atom feed in `body`; MalformedPage for anything else, and for arXiv's `Error` feed."""
    # No DTDs, no entities from outside, no network: a feed needs none of them.
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, remove_comments=True, remove_pis=True)
    try:
        root = etree.fromstring(body, parser)
    except etree.XMLSyntaxError as error:
        raise MalformedPage(f"arxiv answered with a body that is not XML ({error}); starts with {body[:120]!r}") from None
    require("arxiv", root.tag == f"{{{ATOM}}}feed", f"the root element is {root.tag!r}, not an Atom feed", body)
    entries = root.findall("atom:entry", NS)
    if len(entries) == 1:
        entry = entries[0]
        entry_id = (entry.findtext("atom:id", "", NS) or "").strip()
        if (entry.findtext("atom:title", "", NS) or "").strip() == "Error" and "/abs/" not in entry_id:
            message = plain_text(entry.findtext("atom:summary", "", NS)) or "no message"
            raise MalformedPage(f"arxiv refused the request: {message} ({entry_id or 'no error id'})")
    return _Feed(root, body)


@functools.lru_cache(maxsize=256)
def _key(tag: str) -> str:
    """`{http://arxiv.org/schemas/atom}doi` as `arxiv:doi`; remembered, since every element of a feed asks."""
    namespace, _, local = tag[1:].partition("}") if tag.startswith("{") else ("", "", tag)
    prefix = _PREFIXES.get(namespace)
    return local if namespace == "" else f"{prefix}{local}" if prefix is not None else tag


def _element_value(element: etree._Element) -> Any:
    """An element as JSON-like data: its text; a dict of its attributes when it has only those (links,
    categories); a dict of its children when it has any (repeated ones as lists; see _REPEATED)."""
    value: dict[str, Any] = {}
    for child in element:
        tag = child.tag
        if isinstance(tag, str):  # not an entity reference left unresolved
            add_child(value, _key(tag), _element_value(child), _REPEATED)
    if value:
        return value
    attributes = element.items()
    if attributes and not (element.text or "").strip():
        return dict(attributes)
    return element.text or ""


def _arxiv_id(url: str) -> str | None:
    """`http://arxiv.org/abs/2401.01234v2` (or `.../abs/hep-th/9901001v1`) to the id with its version."""
    _, found, identifier = url.strip().partition("/abs/")
    return identifier.strip() if found and identifier.strip() else None


def _entry(r: RecordReader) -> dict[str, Any]:
    provider_id = r.identify("id", _arxiv_id)
    published = r.text("published")
    publication_date, precision = r.date(("published",), published, read_iso_date(published))
    links = [(link.text("href"), link.text("rel"), link.text("title")) for link in r.objects("link") or ()]
    abs_page = next((href for href, rel, _ in links if href and rel == "alternate"), None)
    pdf = next((href for href, _, title in links if href and title == "pdf"), None)
    authors = r.objects("author")
    doi = r.text("arxiv:doi")
    return {
        "provider": "arxiv",
        "provider_id": provider_id,
        "doi": bare_doi(doi.split()[0]) if doi and doi.split() else None,
        "pmid": None,
        "pmcid": None,
        "arxiv_id": r.identifier("arxiv_id", "id"),  # the abs-page URL, as the report shows it
        "title": plain_text(r.text("title")),
        "abstract": plain_text(r.text("summary")),
        "authors": None if authors is None else [_author(a) for a in authors],
        "publication_date": publication_date,
        "publication_date_precision": precision,
        "venue": "arXiv",
        "publisher": None,
        "work_type": "preprint",
        "language": None,
        "is_oa": True,
        "oa_url": pdf,
        "license": plain_text(r.text("arxiv:license")),
        "cited_by_count": None,
        "url": abs_page or f"https://arxiv.org/abs/{provider_id}",
    }


def _author(a: RecordReader) -> dict[str, Any]:
    affiliations = [plain_text(text) for text in a.texts("arxiv:affiliation")]
    return {"name": plain_text(a.text("name")), "orcid": None, "affiliations": [text for text in affiliations if text]}
