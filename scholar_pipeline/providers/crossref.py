"""Crossref `/works`: publication-date filter, cursor paging with `rows`, JATS abstracts.

Wire format: {"status": "ok", "message": {"total-results", "items": [...], "next-cursor"}}.
Cursors expire five minutes after use and the same cursor string may come back on every
page, so paging ends when a page holds fewer items than `rows` (or none).

Markup: `abstract` is JATS, and `title` and `container-title` carry inline tags and
entities as deposited ("Learning Analytics &amp; Knowledge" in the recorded pages); the
rest (names, publisher, URLs) is plain text.

Identifiers: Crossref holds no PMID or PMCID. `arxiv_id` is the one an arXiv DOI names
(`10.48550/arXiv...`: arXiv registers those with DataCite, so Crossref should never send
one, but the rule is general), else the arXiv e-print a journal article names as its
preprint (see `_preprint_arxiv_id`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

from scholar_pipeline.providers.base import (
    SET_TO_NULL, Credential, PageInfo, PageRequest, ParsedRecords, Provider, RecordReader, load_json, read_records, require,
)
from scholar_pipeline.settings import ProviderSettings
from scholar_pipeline.text import bare_doi, bare_orcid, markup_to_text, read_partial_date

MAX_ROWS = 1000
# A licence's `delay-in-days` counts from `issued`, which an issue dated by its month puts on the 1st: Wiley's licences
# of the version of record start on the online date, 1 to 35 days on in the recorded pages. An embargo runs months.
OPEN_FROM_PUBLICATION_DAYS = 60
# `published` is Crossref's earliest of print and online; the rest are fallbacks.
DATE_FIELDS = ("published", "issued", "published-print", "published-online")


class Crossref(Provider):
    name = "crossref"
    # Public pool since Dec 2025: 5 requests/s, one at a time; the polite pool (mailto sent) allows 10/s, five at a time.
    defaults = ProviderSettings(base_url="https://api.crossref.org", rate_limit=5.0, page_size=500, max_records=200_000,
                                max_in_flight=1)
    POLITE_RATE_LIMIT, POLITE_IN_FLIGHT = 10.0, 5
    credential = Credential(env="CROSSREF_PLUS_TOKEN", header="Crossref-Plus-API-Token", header_prefix="Bearer ")
    cursor_moves_on_use = True  # one cursor string for the whole scroll, moved on by every request that reaches it
    drift_opaque_fields = frozenset({"relation"})  # keyed by relation type (`cites`, `is-preprint-of`...), each work its own

    def default_settings(self, mailto: str | None, keyed: bool) -> ProviderSettings:
        if not mailto:
            return self.defaults
        return replace(self.defaults, rate_limit=self.POLITE_RATE_LIMIT, max_in_flight=self.POLITE_IN_FLIGHT)

    def first_request(self, text: str, day: dt.date, page_size: int, mailto: str | None) -> PageRequest:
        params = [
            ("query", self.search_terms(text)),
            ("filter", f"from-pub-date:{day},until-pub-date:{day}"),
            ("rows", str(min(page_size, MAX_ROWS))),
            ("cursor", "*"),
        ]
        if mailto:
            params.append(("mailto", mailto))
        return PageRequest("/works", tuple(params))

    def inspect(self, request: PageRequest, body: bytes) -> PageInfo:
        message = _message(body)
        items, cursor = message["items"], message.get("next-cursor")
        full_page = len(items) >= int(request.param("rows") or MAX_ROWS)
        following = request.with_param("cursor", cursor) if cursor and items and full_page else None
        return PageInfo(records=len(items), total=message.get("total-results"), next_request=following)

    def cursor_expired(self, status: int, body: bytes) -> bool:
        """Crossref does not document the answer; a 4xx that names the cursor is read as its expiry (the simulator
        answers Crossref's validation-failure shape), any other 4xx as a refusal of the request."""
        return status in (400, 404) and b"cursor" in body.lower()

    def raw_records(self, body: bytes) -> list[Any]:
        return _message(body)["items"]

    def read_raw_records(self, raw_records: list[Any]) -> ParsedRecords:
        return read_records(self.name, "message.items", raw_records, _item)


def _message(body: bytes) -> dict[str, Any]:
    page = load_json("crossref", body)
    require("crossref", isinstance(page, dict) and page.get("status") == "ok", "`status` is not ok", body)
    message = page.get("message")
    require("crossref", isinstance(message, dict) and isinstance(message.get("items"), list), "no `message.items` list", body)
    return message


def _item(r: RecordReader) -> dict[str, Any]:
    doi = r.identify("DOI", bare_doi)
    published, precision = _first_date(r)
    license_url, license_delay = _work_license(r)
    authors = r.objects("author")
    return {
        "provider": "crossref",
        "provider_id": doi,
        "doi": doi,
        "pmid": None,
        "pmcid": None,
        "arxiv_id": r.arxiv_id_of_doi(("DOI",), doi) or _preprint_arxiv_id(r),
        "title": markup_to_text(_first(r.texts("title"))),
        "abstract": markup_to_text(r.text("abstract")),
        "authors": None if authors is None else _authors(authors),
        "publication_date": published,
        "publication_date_precision": precision,
        "venue": markup_to_text(_first(r.texts("container-title"))),
        "publisher": r.text("publisher"),
        "work_type": r.text("type"),
        "language": r.text("language"),
        # Crossref has no OA flag; an open (Creative Commons) licence of the work, in force from publication, is
        # evidence of one. One that starts later is an embargo, which a pure normalization cannot compare with today.
        "is_oa": True if license_url and _is_creative_commons(license_url) and (license_delay or 0) <= OPEN_FROM_PUBLICATION_DAYS
        else None,
        "oa_url": None,
        "license": license_url,
        "cited_by_count": r.integer("is-referenced-by-count"),
        "url": r.text("URL"),
    }


def _work_license(r: RecordReader) -> tuple[str | None, int | None]:
    """The URL and `delay-in-days` of the licence of the version of record (`content-version` `vor`, else one deposited
    for no version in particular, `unspecified`), a Creative Commons one first where a publisher deposits its own
    terms beside it. The others license something else: `am` the accepted manuscript (Elsevier deposits a Creative
    Commons one starting two years on), `tdm` text and data mining."""
    licenses = [(lic.text("content-version"), lic.text("URL"), lic.integer("delay-in-days")) for lic in r.objects("license") or ()]
    for wanted in ("vor", "unspecified"):
        candidates = [(url, delay) for version, url, delay in licenses if version == wanted and url]
        if candidates:
            return next((c for c in candidates if _is_creative_commons(c[0])), candidates[0])
    return None, None


def _is_creative_commons(url: str) -> bool:
    return "creativecommons.org" in url


def _preprint_arxiv_id(r: RecordReader) -> str | None:
    """The arXiv id of the e-print a journal article names as its preprint (`relation.has-preprint`), if any.

    Stored as the work's own arXiv id on purpose: the preprint and the article it became
    are one work to a review, so this makes the journal version merge with the arXiv
    record (`unique_works` matches on arxiv_id). An entry is `{"id-type", "id",
    "asserted-by"}`; `id-type` `arxiv` holds an arXiv id (`arXiv:2401.01234v2` too), `doi`
    one of arXiv's DOIs; other preprint servers' DOIs (bioRxiv's 10.1101/...) name none.
    """
    for preprint in r.objects("relation", "has-preprint") or ():
        id_type = (preprint.text("id-type") or "").lower()
        if id_type == "arxiv":
            arxiv_id = preprint.identifier("arxiv_id", "id")
        elif id_type == "doi":
            arxiv_id = preprint.arxiv_id_of_doi(("id",), preprint.text("id"))
        else:
            continue
        if arxiv_id:
            return arxiv_id
    return None


def _first(values: list[str]) -> str | None:
    return values[0] if values else None


def _first_date(r: RecordReader) -> tuple[dt.date | None, str | None]:
    """The first of DATE_FIELDS with a year; an impossible date is reported.

    [[2024, 2, 30]] or [[2024, 13]] is kept as its year and [[12024, 1, 5]] is NULL (the
    fields after it are not tried); [[0]] is read as null, so the next field serves.
    """
    for field in DATE_FIELDS:
        parts = _date_parts(r, field)
        if parts and parts[0]:
            return r.date((field, "date-parts"), r.value(field, "date-parts"), read_partial_date(*parts[:3]))
        if parts and parts[0] == 0:
            r.report((field, "date-parts"), r.value(field, "date-parts"), SET_TO_NULL)
    return None, None


def _date_parts(r: RecordReader, field: str) -> list[int | None]:
    """`{"date-parts": [[2024, 1, 5]]}` (or [[2024]], or [[null]] for none) as [2024, 1, 5]."""
    value = r.value(field, "date-parts")
    if value is None:
        return []
    parts = value[0] if isinstance(value, list) and value else None
    if isinstance(parts, list) and all(p is None or type(p) is int for p in parts):
        return parts
    r.report((field, "date-parts"), value, SET_TO_NULL)
    return []


def _authors(entries: list[RecordReader]) -> list[dict[str, Any]]:
    """The authors, without an entry that holds no name, ORCID or affiliation: a deposit may hold one (even before the
    author it marks `sequence: first`), which a consumer would take for an anonymous first author. Not a problem
    report: the value is well formed, and `values_well_typed` would warn on real pages."""
    return [author for author in map(_author, entries) if author["name"] or author["orcid"] or author["affiliations"]]


def _author(a: RecordReader) -> dict[str, Any]:
    name = " ".join(p for p in (a.text("given"), a.text("family")) if p) or a.text("name")
    return {
        "name": name,
        "orcid": bare_orcid(a.text("ORCID")),
        "affiliations": [n for n in (aff.text("name") for aff in a.objects("affiliation") or ()) if n],
    }
