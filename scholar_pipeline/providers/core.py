"""CORE API v3 `/search/works/`: a publishedDate window in `q`, `limit`/`offset` paging, scrolling past 10,000.

Request: `q` is the search (see `search_terms`) ANDed with `publishedDate>=D AND
publishedDate<D+1`. CORE's query language takes `field>=value` (`yearPublished>=2020`
in its examples); the day is a half-open window so that a time of day in `publishedDate`
cannot drop a record (the day-window form is UNCONFIRMED: CORE's docs were not
retrievable, see provider_facts.md §7). The key is required and sent as `Authorization:
Bearer` (from CORE_API_KEY); without it a partition fails before any request. The path
keeps its trailing slash: without it CORE answers 301, which costs a request.

Paging: `limit` (at most 100) and `offset`, which CORE serves up to the 10,000th record.
A first page reporting more than pages of `limit` can reach below that is landed but
`superseded`: the day is fetched
again from the start by scrolling (`scroll=true`, then each page's `scrollId`), which
costs more of CORE's token budget and so is used only when needed. An empty or short
page before `totalHits` is reached is refused (MalformedPage): CORE lost the scroll or
the index moved, and taking it as the end would drop records.

Rate: CORE counts tokens per day and per minute (one a simple search; sources conflict:
10 to 25 a minute for registered keys), so the default is the lowest, 10 a minute. After
a 429 CORE may make a key wait about ten minutes, so waits between attempts may be as
long as 15 minutes here (SCHOLAR_PIPELINE_CORE_MAX_RETRY_WAIT), honouring
`X-RateLimit-Retry-After` when sent.

Wire format: {"totalHits", "limit", "offset", "scrollId", "results": [work, ...]}; fixtures
are written from the documented fields (`scholar_pipeline_tests/data/documented_shapes/core`):
- `id` is a number (the provider id as text); `doi` is bare or a doi.org link.
- `title` and `abstract` come from repository metadata (Dublin Core), which mixes HTML
  tags and entities with plain text, so both are read as markup: known tags go, entities
  are decoded, and a `<` that opens no known tag stays (`p < 0.05`).
- `authors[].name` is mostly "Family, Given" (turned to reading order); no ORCID or
  affiliation in CORE.
- `publishedDate` (ISO, often with `T00:00:00`), else `yearPublished` as a year.
- Identifiers: `pubmedId` the PMID; `arxivId` the arXiv id, else the one an arXiv DOI
  (`10.48550/arXiv.2403.10101`) or an arXiv OAI identifier in `oaiIds`
  (`oai:arXiv.org:2403.10101`) names; a PMC OAI identifier (`oai:pubmedcentral.nih.gov:
  1234567`) gives the PMCID. Each is checked (identifiers.py).
- CORE aggregates open repositories, but many of its records carry metadata only: `is_oa`
  is True, and `oa_url` the `downloadUrl`, when it has a `downloadUrl`, else NULL (not
  known). No license field. `citationCount` is the citation count.
- A record with only `yearPublished` cannot fall in a `publishedDate` window, so such
  records are not fetched; the year is read for a record that has both kinds of date empty.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from scholar_pipeline.identifiers import arxiv_id_from_oai, oai_repository, pmcid_from_oai
from scholar_pipeline.providers.base import (
    Credential, MalformedPage, PageInfo, PageRequest, ParsedRecords, Provider, RecordReader, load_json, read_records, require,
)
from scholar_pipeline.providers.boolean_query import QueryLanguage
from scholar_pipeline.providers.paging import offset_page_end
from scholar_pipeline.settings import ProviderSettings
from scholar_pipeline.text import bare_doi, markup_to_text, name_in_reading_order, plain_text, read_iso_date, read_partial_date

MAX_LIMIT = 100  # a larger `limit` is answered 504 [O]
OFFSET_CEILING = 10_000  # offset + limit never beyond this [O]; scroll for more
# Letters and digits make a word; any other character separates (`COVID-19` is the phrase "COVID 19"),
# so no `:`, `>`, `*` or `~` reaches CORE's Elasticsearch-like parser.
QUERY_LANGUAGE = QueryLanguage("core", re.compile(r"[^\W_]+"))


@dataclass(frozen=True)
class ScrollRequest(PageRequest):
    """A page of a scroll: CORE's answer does not say where in the result set it is, so the request remembers."""

    received: int = 0  # records the scroll delivered before this page


class Core(Provider):
    name = "core"
    defaults = ProviderSettings(base_url="https://api.core.ac.uk/v3", rate_limit=10 / 60, page_size=MAX_LIMIT,
                                max_records=100_000, max_retry_wait=900.0)
    credential = Credential(env="CORE_API_KEY", header="Authorization", header_prefix="Bearer ", required=True,
                            signup_url="https://core.ac.uk/services/api")
    cursor_moves_on_use = True  # a scroll hands out the next batch on every call that reaches it

    def first_request(self, text: str, day: dt.date, page_size: int, mailto: str | None) -> PageRequest:
        q = f"{self.search_terms(text)} AND publishedDate>={day} AND publishedDate<{day + dt.timedelta(days=1)}"
        return PageRequest("/search/works/", (("q", q), ("limit", str(min(page_size, MAX_LIMIT))), ("offset", "0")))

    def search_terms(self, text: str) -> str:
        """The text in CORE's query syntax: words and "phrases" with AND, OR, NOT and parentheses, as written.

        Adjacent terms are joined by an explicit AND (an Elasticsearch query string ORs
        them by default); a word holding other characters is searched as the phrase of its
        letter-and-digit pieces. Refused (SearchTextError) as in the shared boolean reader.
        """
        super().search_terms(text)
        return QUERY_LANGUAGE.write_operand(text)

    def inspect(self, request: PageRequest, body: bytes) -> PageInfo:
        page = _page(body)
        results, total = len(page["results"]), page["totalHits"]
        limit = int(request.param("limit") or MAX_LIMIT)
        if isinstance(request, ScrollRequest):
            return self._scroll_page(request, page, results, total, limit)
        offset = int(request.param("offset") or 0)
        if offset == 0 and -(-total // limit) * limit > OFFSET_CEILING:  # the last page's offset + limit would pass it
            scroll = ScrollRequest(request.path, tuple((k, v) for k, v in request.params if k != "offset") + (("scroll", "true"),))
            return PageInfo(records=0, total=total, next_request=scroll, superseded=True)
        reached = offset_page_end("core", f"offset {offset}", offset, results, limit, "totalHits", total)
        following = request.with_param("offset", str(reached)) if reached < total else None
        return PageInfo(records=results, total=total, next_request=following)

    def _scroll_page(self, request: ScrollRequest, page: dict[str, Any], results: int, total: int, limit: int) -> PageInfo:
        reached = offset_page_end("core", f"scroll position {request.received}", request.received, results, limit, "totalHits", total)
        if reached >= total:
            return PageInfo(records=results, total=total, next_request=None)
        scroll_id = page.get("scrollId")
        if not isinstance(scroll_id, str) or not scroll_id:
            raise MalformedPage(f"core sent no scrollId at record {reached} of {total}; the scroll cannot go on")
        return PageInfo(records=results, total=total, next_request=replace(request.with_param("scrollId", scroll_id), received=reached))

    def cursor_expired(self, status: int, body: bytes) -> bool:
        """An Elasticsearch scroll is kept only for a while between calls; a 4xx that names the scroll is its expiry."""
        return status in (400, 404) and b"scroll" in body.lower()

    def raw_records(self, body: bytes) -> list[Any]:
        return _page(body)["results"]

    def read_raw_records(self, raw_records: list[Any]) -> ParsedRecords:
        return read_records(self.name, "results", raw_records, _work)


def _page(body: bytes) -> dict[str, Any]:
    page = load_json("core", body)
    if isinstance(page, dict) and "results" not in page and isinstance(page.get("message"), str):
        raise MalformedPage(f"core answered with an error: {page['message'][:300]}")
    require("core", isinstance(page, dict) and isinstance(page.get("results"), list), "no `results` list", body)
    total = page.get("totalHits")
    require("core", isinstance(total, int) and not isinstance(total, bool) and total >= 0, "`totalHits` is not a count", body)
    return page


def _work(r: RecordReader) -> dict[str, Any]:
    core_id = r.identify("id", lambda value: value if value.isdigit() else None, numeric=True)
    published, precision = _published(r)
    journals = r.objects("journals") or []
    download = r.text("downloadUrl") or None
    doi = r.text("doi")
    oai_ids = r.texts("oaiIds")
    return {
        "provider": "core",
        "provider_id": core_id,
        "doi": bare_doi(doi),
        "pmid": r.identifier("pmid", "pubmedId"),
        "pmcid": _from_oai_ids(r, oai_ids, "pmcid", "pubmedcentral.nih.gov", pmcid_from_oai),
        "arxiv_id": (r.identifier("arxiv_id", "arxivId") or r.arxiv_id_of_doi(("doi",), doi)
                     or _from_oai_ids(r, oai_ids, "arxiv_id", "arxiv.org", arxiv_id_from_oai)),
        "title": markup_to_text(r.text("title")),
        "abstract": markup_to_text(r.text("abstract")),
        "authors": [{"name": name_in_reading_order(a.text("name")), "orcid": None, "affiliations": []} for a in r.objects("authors") or ()],
        "publication_date": published,
        "publication_date_precision": precision,
        "venue": plain_text(journals[0].text("title")) if journals else None,
        "publisher": plain_text(r.text("publisher")),
        "work_type": plain_text(r.text("documentType")),
        "language": plain_text(r.text("language", "code")),
        "is_oa": True if download else None,
        "oa_url": download,
        "license": None,
        "cited_by_count": r.integer("citationCount"),
        "url": f"https://core.ac.uk/works/{core_id}",
    }


def _from_oai_ids(r: RecordReader, oai_ids: list[str], column: str, repository: str, to_id: Callable[[str], str | None]) -> str | None:
    """The id of the first of the record's OAI identifiers that `repository` gave (`oai:arXiv.org:2403.10101`)."""
    for oai_id in oai_ids:
        if oai_repository(oai_id) == repository:
            return r.bare_identifier(column, ("oaiIds",), oai_id, to_id)
    return None


def _published(r: RecordReader) -> tuple[dt.date | None, str | None]:
    value = r.text("publishedDate")
    if value:
        return r.date(("publishedDate",), value, read_iso_date(value))
    year = r.integer("yearPublished")
    return r.date(("yearPublished",), year, read_partial_date(year))
