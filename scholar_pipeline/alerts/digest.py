"""A digest: what one saved search gained, as every channel renders it.

The top works are those most providers found, then the most cited, then the newest; each
names the providers that found it for the search. The counts are the search's running
PRISMA identification counts, computed from the warehouse as `review_counts` computes them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from urllib.parse import quote

import duckdb

from scholar_pipeline.dataset.review_counts import ALL_PROVIDERS, REVIEW_COUNTS_SQL

DOI_RESOLVER = "https://doi.org/"


@dataclass(frozen=True)
class DigestWork:
    work_id: str
    title: str
    year: int | None
    venue: str | None
    doi: str | None
    url: str | None
    providers: list[str]

    @property
    def link(self) -> str | None:
        """The DOI's resolver URL (percent-encoded: SICI DOIs hold `<`, `>` and `;`), else the record's URL."""
        return DOI_RESOLVER + quote(self.doi, safe="/") if self.doi else self.url


@dataclass(frozen=True)
class ReviewCounts:
    """The PRISMA 2020 identification box of the search, over all its landed days."""

    identified: dict[str, int] = field(default_factory=dict)  # per provider
    duplicates_within: int = 0
    duplicates_across: int = 0
    unique: int = 0

    @property
    def total_identified(self) -> int:
        return sum(self.identified.values())


@dataclass(frozen=True)
class Digest:
    digest_id: str  # the same for every attempt at the same delivery: receivers may deduplicate on it
    search: str
    description: str
    channel: str
    new_works: int
    top: list[DigestWork]
    counts: ReviewCounts
    test: bool = False  # a sample sent by `scholar-pipeline alerts test`, recorded nowhere

    @property
    def more(self) -> int:
        return self.new_works - len(self.top)

    @property
    def headline(self) -> str:
        works = "new work" if self.new_works == 1 else "new works"
        return f"{'[test] ' if self.test else ''}{self.new_works:,} {works} in saved search {self.search}"

    def as_json(self) -> dict:
        return {
            "digest_id": self.digest_id, "saved_search": self.search, "description": self.description,
            "channel": self.channel, "test": self.test, "new_works": self.new_works, "more": self.more,
            "works": [{"work_id": w.work_id, "title": w.title, "year": w.year, "venue": w.venue, "doi": w.doi,
                       "link": w.link, "providers": w.providers} for w in self.top],
            "review_counts": {"records_identified": self.counts.identified,
                              "duplicates_within_provider": self.counts.duplicates_within,
                              "duplicates_across_providers": self.counts.duplicates_across,
                              "unique_records": self.counts.unique},
        }


def digest_id(query: str, channel: str, records: list[dict]) -> str:
    """A hash of what is announced to whom: a retry of a failed send carries the same id."""
    payload = json.dumps([query, channel, [[r["provider"], r["provider_id"]] for r in records]])
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def top_works(con: duckdb.DuckDBPyConnection, query: str, work_ids: list[str], limit: int) -> list[DigestWork]:
    rows = con.execute("""
        SELECT u.work_id, coalesce(u.title, '(untitled)'), year(u.publication_date), u.venue, u.doi, u.url,
               list_sort(list_distinct([s.provider FOR s IN u.sources IF s.query = $query])) AS providers
        FROM unique_works u WHERE u.work_id IN (SELECT unnest($work_ids::VARCHAR[]))
        ORDER BY len(providers) DESC, u.cited_by_count DESC NULLS LAST, u.publication_date DESC NULLS LAST, u.work_id
        LIMIT $limit
    """, {"query": query, "work_ids": work_ids, "limit": limit}).fetchall()
    return [DigestWork(*row) for row in rows]


def review_counts_of(con: duckdb.DuckDBPyConnection, query: str) -> ReviewCounts:
    rows = con.execute(
        f"SELECT provider, records_identified, duplicates_within_provider, duplicates_across_providers, unique_records "
        f"FROM ({REVIEW_COUNTS_SQL}) WHERE query = ? AND period = 'all'", [query]).fetchall()
    overall = next((row for row in rows if row[0] == ALL_PROVIDERS), None)
    if overall is None:
        return ReviewCounts()
    return ReviewCounts(identified={row[0]: row[1] for row in rows if row[0] != ALL_PROVIDERS},
                        duplicates_within=overall[2], duplicates_across=overall[3], unique=overall[4])
