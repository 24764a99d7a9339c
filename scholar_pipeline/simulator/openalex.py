"""Simulated OpenAlex `/works`: filters, per_page ≤ 100, cursor and page paging, its error bodies.

The words of the `*.search` filters (`title_and_abstract.search:...`) select the works, as
`Corpus.works_matching` decides; without one, every work of the window is served. `ids` holds
the DOI and PMID as OpenAlex's URLs (`_ids`).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import random
import re

from scholar_pipeline.simulator.common import BadRequest, SimResponse, single
from scholar_pipeline.simulator.corpus import Corpus, SimWork, search_words
from scholar_pipeline.simulator.record_faults import JsonRecords

MAX_PER_PAGE = 100
PAGE_MODE_CEILING = 10_000
# The free key's daily allowance as OpenAlex's headers state it: calls, and the USD budget a list call draws on.
DAILY_CALLS, DAILY_USD, LIST_CALL_USD = 100_000, 1.0, 0.0001
KNOWN_FILTERS = {"from_publication_date", "to_publication_date", "title_and_abstract.search", "default.search", "title.search"}


def _error(message: str) -> BadRequest:
    return BadRequest(SimResponse.json(400, {"error": "Invalid query parameters error.", "message": message}))


class OpenAlexApi:
    name = "openalex"
    records = JsonRecords(("results",), abstract="abstract_inverted_index", retyped="title")  # where faults on records act (record_faults.py)
    default_rate_limit = 100.0

    def __init__(self, corpus: Corpus):
        self.corpus = corpus
        self.routes = {"/works": self.works}
        self.calls, self.spent_usd = 0, 0.0

    def _quota_headers(self, cost_usd: float) -> dict[str, str]:
        """OpenAlex's `X-RateLimit-*` headers (provider_facts.md): what is left of today's calls and USD budget, what
        this call cost, and the seconds until the budget resets at midnight UTC; they move with every call."""
        self.calls += 1
        self.spent_usd += cost_usd
        now = dt.datetime.now(dt.timezone.utc)
        midnight = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), dt.timezone.utc)
        return {"x-ratelimit-limit": str(DAILY_CALLS), "x-ratelimit-remaining": str(max(DAILY_CALLS - self.calls, 0)),
                "x-ratelimit-reset": str(int((midnight - now).total_seconds())), "x-ratelimit-credits-used": "1",
                "x-ratelimit-limit-usd": f"{DAILY_USD:g}", "x-ratelimit-remaining-usd": f"{max(DAILY_USD - self.spent_usd, 0):.4f}",
                "x-ratelimit-cost-usd": f"{cost_usd:g}"}

    def record_ids(self, first: dt.date, last: dt.date, text: str | None = None) -> list[str]:
        return [f"W{w.serial}" for w in self.corpus.works_matching(search_words(text), first, last, self.name)]

    def works(self, params: dict[str, list[str]]) -> SimResponse:
        filters = _filters(single(params, "filter", ""))
        try:
            first = dt.date.fromisoformat(filters.get("from_publication_date", "1900-01-01"))
            last = dt.date.fromisoformat(filters.get("to_publication_date", "1900-01-01"))
        except ValueError as error:
            raise _error(f"Invalid date in filter: {error}") from None
        per_page = _int(single(params, "per_page") or single(params, "per-page") or "25", "per_page")
        if not 1 <= per_page <= MAX_PER_PAGE:
            raise _error(f"per-page parameter must be between 1 and {MAX_PER_PAGE}")
        words = search_words(" ".join(value for key, value in filters.items() if key.endswith(".search")))
        works = self.corpus.works_matching(words, first, last, self.name)
        # Timing and cost vary from call to call, as the real API's do; nothing else in an unchanged answer does.
        cost = random.choice([LIST_CALL_USD, LIST_CALL_USD, 2 * LIST_CALL_USD])
        meta = {"count": len(works), "db_response_time_ms": random.randint(4, 60), "page": None, "per_page": per_page,
                "next_cursor": None, "groups_count": None, "cost_usd": cost}
        cursor = single(params, "cursor")
        if cursor is not None:
            offset = _decode_cursor(cursor)
            results = works[offset:offset + per_page]
            # Like the real API: a cursor on every non-empty page, null once a page comes back empty.
            meta["next_cursor"] = _encode_cursor(offset + per_page) if results else None
        else:
            page = _int(single(params, "page", "1"), "page")
            if page * per_page > PAGE_MODE_CEILING:
                raise _error("Maximum results size of 10,000 records is exceeded. Cursor pagination is required for records beyond 10,000.")
            results = works[(page - 1) * per_page: page * per_page]
            meta["page"] = page
        return SimResponse.json(200, {"meta": meta, "results": [render(w) for w in results], "group_by": []},
                                self._quota_headers(cost))

    @staticmethod
    def rate_limited() -> SimResponse:
        return SimResponse.json(429, {"error": "Rate limit exceeded", "message": "Too many requests; slow down."})


def _filters(value: str) -> dict[str, str]:
    out = {}
    for part in filter(None, value.split(",")):
        key, _, val = part.partition(":")
        if key not in KNOWN_FILTERS:
            raise _error(f"{key} is not a valid field. Valid fields are {sorted(KNOWN_FILTERS)}")
        out[key] = val
    return out


def _int(value: str, name: str) -> int:
    if not re.fullmatch(r"\d+", value or ""):
        raise _error(f"{name} must be an integer")
    return int(value)


def _encode_cursor(offset: int) -> str:
    return base64.b64encode(json.dumps(["sim", offset]).encode()).decode()


def _decode_cursor(cursor: str) -> int:
    if cursor == "*":
        return 0
    try:
        return int(json.loads(base64.b64decode(cursor))[1])
    except (ValueError, IndexError, TypeError):
        raise _error("Invalid cursor") from None


def _inverted_index(text: str) -> dict[str, list[int]]:
    index: dict[str, list[int]] = {}
    for position, word in enumerate(text.split()):
        index.setdefault(word, []).append(position)
    return index


def render(w: SimWork) -> dict:
    doi_url = f"https://doi.org/{w.doi}" if w.doi else None
    oa = w.license is not None
    # One work in ten has no matched source (41 of 200 in the recorded page): its venue is then only the name the
    # metadata gave. Its open copy is then a repository's, whose licence is on that copy alone (the recorded page
    # holds 55 open works, 11 with a licence on the primary location).
    matched = w.serial % 10 != 3
    location = {
        "id": f"doi:{w.doi}" if w.doi else None, "is_oa": oa and matched, "landing_page_url": doi_url, "pdf_url": None,
        "source": {"id": "https://openalex.org/S1", "display_name": w.venue, "host_organization_name": w.publisher,
                   "type": "journal"} if matched else None,
        "license": w.license if matched else None, "license_id": _LICENSE_IDS.get(w.license) if matched else None,
        "version": "publishedVersion", "is_accepted": True, "is_published": True, "raw_source_name": w.venue,
    }
    best_oa = location if matched else {
        "id": f"pmh:repository.example.org:{w.serial}", "is_oa": True, "landing_page_url": f"https://repository.example.org/{w.serial}",
        "pdf_url": None, "source": None, "license": w.license, "license_id": _LICENSE_IDS.get(w.license),
        "version": "publishedVersion", "is_accepted": True, "is_published": True, "raw_source_name": None}
    return {
        "id": f"https://openalex.org/W{w.serial}",
        "doi": doi_url,
        "title": w.title,
        "display_name": w.title,
        "publication_year": w.published.year,
        "publication_date": w.published.isoformat(),
        "ids": _ids(w, doi_url),
        "language": w.language,
        "primary_location": location,
        "type": w.work_type,
        "open_access": {"is_oa": oa, "oa_status": "gold" if oa else "closed", "oa_url": doi_url if oa else None, "any_repository_has_fulltext": False},
        "authorships": [
            {
                "author_position": "first" if i == 0 else "middle",
                "author": {"id": f"https://openalex.org/A{w.serial}{i}", "display_name": a.name, "orcid": f"https://orcid.org/{a.orcid}" if a.orcid else None},
                "institutions": [{"id": "https://openalex.org/I1", "display_name": a.affiliation, "country_code": None, "type": "education"}] if a.affiliation else [],
                "raw_author_name": a.name,
                "raw_affiliation_strings": [a.affiliation] if a.affiliation else [],
            }
            for i, a in enumerate(w.authors)
        ],
        "cited_by_count": w.cited_by,
        "best_oa_location": best_oa if oa else None,
        "abstract_inverted_index": _inverted_index(w.abstract) if w.abstract else None,
        "updated_date": "2026-11-01T00:00:00",
        "created_date": w.published.isoformat(),
        **_described(w, location),
    }


def _ids(w: SimWork, doi_url: str | None) -> dict:
    """`ids` as OpenAlex writes them: URLs, only the ones it has (a recorded page shows `pmid` on 18 of 200 records).

    OpenAlex also sends `pmcid` (`https://www.ncbi.nlm.nih.gov/pmc/articles/5113961`, digits without `PMC`, as
    live answers and its docs show it); it is left out here because no recorded page holds it, so the schema-drift
    baseline (providers/baselines/openalex.json) does not know it and a clean run would report it as a new field.
    """
    return {"openalex": f"https://openalex.org/W{w.serial}", **({"doi": doi_url} if doi_url else {}),
            **({"pmid": f"https://pubmed.ncbi.nlm.nih.gov/{w.pmid}"} if w.pmid else {})}


_LICENSE_IDS = {"cc-by": "https://openalex.org/licenses/cc-by", "cc-by-nc": "https://openalex.org/licenses/cc-by-nc"}
_TOPICS = [
    ("T10181", "Natural Language Processing Techniques", "1702", "Artificial Intelligence", "17", "Computer Science", "3", "Physical Sciences"),
    ("T12072", "Machine Learning and Algorithms", "1702", "Artificial Intelligence", "17", "Computer Science", "3", "Physical Sciences"),
    ("T10010", "Soil Carbon and Nitrogen Dynamics", "1111", "Soil Science", "11", "Agricultural and Biological Sciences", "1", "Life Sciences"),
]


def _described(w: SimWork, location: dict) -> dict:
    """What OpenAlex says of a work beyond what the pipeline reads: topics, counts, lists of ids; present on every real
    record, so the simulated ones carry them too (the schema-drift check compares the shapes)."""
    topic_id, topic, subfield_id, subfield, field_id, field, domain_id, domain = _TOPICS[w.serial % len(_TOPICS)]
    score = round(0.9 + (w.serial % 97) / 1000, 4)
    topic = {"id": f"https://openalex.org/{topic_id}", "display_name": topic, "score": score,
             "subfield": {"id": f"https://openalex.org/subfields/{subfield_id}", "display_name": subfield},
             "field": {"id": f"https://openalex.org/fields/{field_id}", "display_name": field},
             "domain": {"id": f"https://openalex.org/domains/{domain_id}", "display_name": domain}}
    first_page = 1 + w.serial % 400
    return {
        "primary_topic": topic, "topics": [topic],
        "keywords": [{"id": f"https://openalex.org/keywords/{subfield.lower().replace(' ', '-')}", "display_name": subfield, "score": score}],
        "concepts": [{"id": f"https://openalex.org/C{field_id}0", "wikidata": f"https://www.wikidata.org/wiki/Q{field_id}0",
                      "display_name": field, "level": 0, "score": score}],
        "sustainable_development_goals": [], "mesh": [], "funders": [], "awards": [],
        "apc_list": None if w.license is None else {"value": 2000 + w.serial % 1500, "currency": "USD", "value_usd": 2000 + w.serial % 1500},
        "apc_paid": None,
        "biblio": {"volume": str(1 + w.serial % 60), "issue": str(1 + w.serial % 12), "first_page": str(first_page), "last_page": str(first_page + 12)},
        "fwci": round(w.cited_by / 7, 3), "citation_normalized_percentile": None, "cited_by_percentile_year": None,
        "counts_by_year": [{"year": 2026, "cited_by_count": w.cited_by}] if w.cited_by else [],
        "corresponding_author_ids": [f"https://openalex.org/A{w.serial}0"] if w.authors else [], "corresponding_institution_ids": [],
        "institutions": [], "institutions_distinct_count": sum(1 for a in w.authors if a.affiliation), "countries_distinct_count": 0,
        "has_content": {"pdf": False, "grobid_xml": False},
        "indexed_in": [*(["crossref"] if w.doi else []), *(["pubmed"] if w.pmid else [])],
        "is_paratext": False, "is_retracted": False, "is_xpac": False,
        "locations": [location], "locations_count": 1,
        "referenced_works": [f"https://openalex.org/W{w.serial // 3}"], "referenced_works_count": 1,
        "related_works": [f"https://openalex.org/W{w.serial // 5}", f"https://openalex.org/W{w.serial // 7}"],
    }
