"""`review_counts` against counts made independently, in Python, from the same `works` and `provenance` rows."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

import duckdb
import pyarrow as pa

from scholar_pipeline.dataset.review_counts import build_review_counts, review_counts_markdown
from scholar_pipeline.dataset.unique_works import build_unique_works
from scholar_pipeline.warehouse import ensure_tables
from scholar_pipeline_tests.test_unique_works import WORKS_SCHEMA, row

D1, D2, D3 = dt.date(2023, 12, 31), dt.date(2024, 1, 1), dt.date(2024, 1, 2)


def landed_rows() -> list[dict]:
    return [
        # one work at three providers, found on D1 by "soil"
        row("openalex", "W1", "soil", D1, doi="10.1/a"), row("crossref", "10.1/a", "soil", D1, doi="10.1/a"),
        row("pubmed", "1", "soil", D1, doi="10.1/a", pmid="1"),
        # the same OpenAlex record on two days, and a second OpenAlex record of the same work (by PMID)
        row("openalex", "W2", "soil", D2, pmid="2"), row("openalex", "W2", "soil", D3, pmid="2"),
        row("openalex", "W3", "soil", D3, pmid="2"),
        # a work found by Crossref alone, and the first work found again by another search
        row("crossref", "10.1/b", "soil", D2, doi="10.1/b"), row("openalex", "W1", "carbon", D2, doi="10.1/a"),
    ]


# records_fetched per partition's last landing: on D3 paging gave OpenAlex's two records three times
FETCHED = {("soil", "openalex", D1): 1, ("soil", "crossref", D1): 1, ("soil", "pubmed", D1): 1,
           ("soil", "openalex", D2): 1, ("soil", "openalex", D3): 3, ("soil", "crossref", D2): 1,
           ("carbon", "openalex", D2): 1, ("soil", "pubmed", D2): 0}


def database(rows: list[dict]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.register("rows", pa.Table.from_pylist(rows, schema=WORKS_SCHEMA))
    con.execute("CREATE TABLE works AS SELECT * FROM rows")
    ensure_tables(con)
    for (query, provider, day), fetched in FETCHED.items():
        for landing, count in enumerate((fetched + 5, fetched)):  # an earlier landing that a later one replaced
            con.execute(
                "INSERT INTO provenance (query, provider, partition_date, manifest_path, input_hash, output_hash, "
                "schema_version, code_version, retrieved_at, landed_at, records_fetched) "
                "VALUES (?, ?, ?, 'm', 'i', 'o', 's', 'c', now(), ?, ?)",
                [query, provider, day, dt.datetime(2024, 6, 1, landing, tzinfo=dt.timezone.utc), count])
    build_unique_works(con)
    build_review_counts(con)
    return con


def expected_counts(rows: list[dict], query: str, year: int | None) -> dict[str, tuple]:
    """(identified, within, across, unique) per provider and for '(all)', counted from the rows themselves."""
    def in_period(day: dt.date) -> bool:
        return year is None or day.year == year
    identified = defaultdict(int)
    for (q, provider, day), fetched in FETCHED.items():
        if q == query and in_period(day):
            identified[provider] += fetched
    work = {"W1": "a", "10.1/a": "a", "1": "a", "W2": "b", "W3": "b", "10.1/b": "c"}  # by DOI and PMID, by hand
    works_of = defaultdict(set)
    for r in rows:
        if r["query"] == query and in_period(r["partition_date"]):
            works_of[r["provider"]].add(work[r["provider_id"]])
    counts = {p: (identified[p], identified[p] - len(works_of[p]), None, len(works_of[p])) for p in identified}
    unique = len(set().union(*works_of.values()))
    total_identified = sum(identified.values())
    within = sum(c[1] for c in counts.values())
    across = sum(len(w) for w in works_of.values()) - unique
    counts["(all)"] = (total_identified, within, across, unique)
    assert total_identified == within + across + unique
    return counts


def test_review_counts_equal_counts_made_from_the_rows_for_every_search_and_period():
    rows = landed_rows()
    con = database(rows)
    for query, period, year in [("soil", "all", None), ("soil", "2023", 2023), ("soil", "2024", 2024),
                                ("carbon", "all", None), ("carbon", "2024", 2024)]:
        found = {r[0]: r[1:] for r in con.execute(
            "SELECT provider, records_identified, duplicates_within_provider, duplicates_across_providers, unique_records "
            "FROM review_counts WHERE query = ? AND period = ?", [query, period]).fetchall()}
        assert found == expected_counts(rows, query, year), (query, period)
    assert {period for (period,) in con.execute("SELECT DISTINCT period FROM review_counts WHERE query = 'carbon'").fetchall()} \
        == {"all", "2024"}
    assert con.execute("SELECT first_date, last_date FROM review_counts WHERE query = 'soil' AND period = 'all' "
                       "AND provider = '(all)'").fetchone() == (D1, D3)


def test_the_markdown_shows_each_search_with_its_total_row():
    markdown = review_counts_markdown(database(landed_rows()))
    assert markdown.index("**carbon** (2024-01-01 to 2024-01-01)") < markdown.index("**soil** (2023-12-31 to 2024-01-02)")
    assert "| openalex | 5 | 3 |  | 2 |" in markdown
    assert markdown.endswith("| (all) | 8 | 3 | 2 | 3 |")  # soil: 8 identified = 3 within + 2 across + 3 unique
