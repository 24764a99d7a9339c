"""OpenAlex `/works`: publication-date filter, cursor paging, abstracts from inverted indexes.

Wire format: {"meta": {"count", "next_cursor", ...}, "results": [work, ...]}. Paging ends
when `next_cursor` is null or a page comes back empty. The search text goes into a
`title_and_abstract.search` filter: plain `search=` calls cost ten times the daily budget.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from scholar_pipeline.providers.base import Credential, PageInfo, PageRequest, Provider, load_json, require
from scholar_pipeline.settings import ProviderSettings
from scholar_pipeline.text import bare_doi, bare_orcid, iso_date, plain_text

MAX_PER_PAGE = 100  # developers.openalex.org; older docs allowed 200


class OpenAlex(Provider):
    name = "openalex"
    defaults = ProviderSettings(base_url="https://api.openalex.org", rate_limit=10.0, page_size=100, max_records=200_000)
    credential = Credential(env="OPENALEX_API_KEY", query_param="api_key")

    def first_request(self, text: str, day: dt.date, page_size: int, mailto: str | None) -> PageRequest:
        # `,` separates filters and `|` means OR inside one, so neither may appear in the text.
        words = " ".join(text.replace(",", " ").replace("|", " ").split())
        filters = f"title_and_abstract.search:{words},from_publication_date:{day},to_publication_date:{day}"
        params = [("filter", filters), ("per_page", str(min(page_size, MAX_PER_PAGE))), ("cursor", "*")]
        if mailto:
            params.append(("mailto", mailto))
        return PageRequest("/works", tuple(params))

    def inspect(self, request: PageRequest, body: bytes) -> PageInfo:
        page = _page(body)
        results, cursor = page["results"], page["meta"].get("next_cursor")
        following = request.with_param("cursor", cursor) if cursor and results else None
        return PageInfo(records=len(results), total=page["meta"].get("count"), next_request=following)

    def parse_records(self, body: bytes) -> list[dict[str, Any]]:
        return [_work(w) for w in _page(body)["results"]]


def _page(body: bytes) -> dict[str, Any]:
    page = load_json("openalex", body)
    require("openalex", isinstance(page, dict) and isinstance(page.get("results"), list), "no `results` list", body)
    require("openalex", isinstance(page.get("meta"), dict), "no `meta` object", body)
    return page


def abstract_from_inverted_index(index: dict[str, list[int]] | None) -> str | None:
    """OpenAlex ships abstracts as {word: [positions]}; put the words back in order."""
    if not index:
        return None
    positioned = sorted((position, word) for word, positions in index.items() for position in positions or ())
    return plain_text(" ".join(word for _, word in positioned))


def _work(w: dict[str, Any]) -> dict[str, Any]:
    location = w.get("primary_location") or {}
    source = location.get("source") or {}
    best_oa = w.get("best_oa_location") or {}
    open_access = w.get("open_access") or {}
    published, precision = iso_date(w.get("publication_date"))
    if published is None and w.get("publication_year"):
        published, precision = iso_date(str(w["publication_year"]))
    return {
        "provider": "openalex",
        "provider_id": (w.get("id") or "").rsplit("/", 1)[-1] or None,
        "doi": bare_doi(w.get("doi")),
        "title": plain_text(w.get("title") or w.get("display_name")),
        "abstract": abstract_from_inverted_index(w.get("abstract_inverted_index")),
        "authors": [_author(a) for a in w.get("authorships") or ()],
        "publication_date": published,
        "publication_date_precision": precision,
        "venue": source.get("display_name") or location.get("raw_source_name"),
        "publisher": source.get("host_organization_name"),
        "work_type": w.get("type"),
        "language": w.get("language"),
        "is_oa": open_access.get("is_oa"),
        "oa_url": open_access.get("oa_url"),
        "license": location.get("license") or best_oa.get("license"),
        "cited_by_count": w.get("cited_by_count"),
        "url": location.get("landing_page_url") or w.get("id"),
    }


def _author(authorship: dict[str, Any]) -> dict[str, Any]:
    author = authorship.get("author") or {}
    institutions = [i.get("display_name") for i in authorship.get("institutions") or () if i.get("display_name")]
    return {
        "name": author.get("display_name") or authorship.get("raw_author_name"),
        "orcid": bare_orcid(author.get("orcid")),
        "affiliations": institutions or list(authorship.get("raw_affiliation_strings") or ()),
    }
