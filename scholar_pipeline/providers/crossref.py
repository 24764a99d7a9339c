"""Crossref `/works`: publication-date filter, cursor paging with `rows`, JATS abstracts.

Wire format: {"status": "ok", "message": {"total-results", "items": [...], "next-cursor"}}.
Cursors expire five minutes after use and the same cursor string may come back on every
page, so paging ends when a page holds fewer items than `rows` (or none).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from scholar_pipeline.providers.base import Credential, PageInfo, PageRequest, Provider, load_json, require
from scholar_pipeline.settings import ProviderSettings
from scholar_pipeline.text import bare_doi, bare_orcid, partial_date, plain_text

MAX_ROWS = 1000
# `published` is Crossref's earliest of print and online; the rest are fallbacks.
DATE_FIELDS = ("published", "issued", "published-print", "published-online")


class Crossref(Provider):
    name = "crossref"
    # Public pool since Dec 2025: 5 requests/s, one at a time (polite pool, with mailto: 10/s).
    defaults = ProviderSettings(base_url="https://api.crossref.org", rate_limit=5.0, page_size=500, max_records=200_000)
    credential = Credential(env="CROSSREF_PLUS_TOKEN", header="Crossref-Plus-API-Token", header_prefix="Bearer ")

    def first_request(self, text: str, day: dt.date, page_size: int, mailto: str | None) -> PageRequest:
        params = [
            ("query", text),
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

    def parse_records(self, body: bytes) -> list[dict[str, Any]]:
        return [_item(it) for it in _message(body)["items"]]


def _message(body: bytes) -> dict[str, Any]:
    page = load_json("crossref", body)
    require("crossref", isinstance(page, dict) and page.get("status") == "ok", "`status` is not ok", body)
    message = page.get("message")
    require("crossref", isinstance(message, dict) and isinstance(message.get("items"), list), "no `message.items` list", body)
    return message


def _item(it: dict[str, Any]) -> dict[str, Any]:
    published, precision = _first_date(it)
    licenses = it.get("license") or ()
    license_url = next((lic.get("URL") for lic in licenses if lic.get("content-version") == "vor"), None) or next(
        (lic.get("URL") for lic in licenses), None
    )
    doi = bare_doi(it.get("DOI"))
    return {
        "provider": "crossref",
        "provider_id": doi,
        "doi": doi,
        "title": plain_text(_first(it.get("title"))),
        "abstract": plain_text(it.get("abstract")),
        "authors": [_author(a) for a in it.get("author") or ()],
        "publication_date": published,
        "publication_date_precision": precision,
        "venue": plain_text(_first(it.get("container-title"))),
        "publisher": it.get("publisher"),
        "work_type": it.get("type"),
        "language": it.get("language"),
        # Crossref has no OA flag; an open (Creative Commons) licence is evidence of one.
        "is_oa": True if any("creativecommons.org" in (lic.get("URL") or "") for lic in licenses) else None,
        "oa_url": None,
        "license": license_url,
        "cited_by_count": it.get("is-referenced-by-count"),
        "url": it.get("URL"),
    }


def _first(values: list[str] | None) -> str | None:
    return values[0] if values else None


def _first_date(it: dict[str, Any]) -> tuple[dt.date | None, str | None]:
    for field in DATE_FIELDS:
        parts = ((it.get(field) or {}).get("date-parts") or [[None]])[0] or [None]
        if parts[0]:
            return partial_date(*parts[:3])
    return None, None


def _author(author: dict[str, Any]) -> dict[str, Any]:
    name = " ".join(p for p in (author.get("given"), author.get("family")) if p) or author.get("name")
    return {
        "name": name,
        "orcid": bare_orcid(author.get("ORCID")),
        "affiliations": [a["name"] for a in author.get("affiliation") or () if a.get("name")],
    }
