"""`review_counts`: what a systematic review reports in the PRISMA 2020 identification box, per saved search.

For each saved search, over all its landed days (`period` 'all') and over each calendar year
of them, one row per provider and one for all providers (`provider` '(all)'):
- `records_identified`: the records the provider returned for the search, summed over the
  partitions' last landings (`provenance.records_fetched`, a record repeated by paging included);
- `duplicates_within_provider`: records identified less the works they are (a record repeated
  by paging or on several days, two records of one work at the same provider);
- `duplicates_across_providers` (the '(all)' row): the works each provider found, summed,
  less the unique works: works found by more than one provider, counted once;
- `unique_records`: the works found (by this provider, or by any).
So on the '(all)' row, identified = within + across + unique. Everything is computed from
`provenance`, `works` and `unique_works` (itself a function of `works`).
"""

from __future__ import annotations

import duckdb

ALL_PROVIDERS = "(all)"

REVIEW_COUNTS_SQL = f"""
WITH landed AS (
    SELECT query, provider, partition_date, records_fetched FROM provenance
    QUALIFY row_number() OVER (PARTITION BY query, provider, partition_date ORDER BY landed_at DESC) = 1
),
found AS (  -- each source row of a work: which search found it, where, on which day
    SELECT s.query, s.provider, s.partition_date, u.work_id
    FROM unique_works u, unnest(u.sources) AS t(s)
),
periods AS (
    SELECT DISTINCT query, 'all' AS period, NULL::INTEGER AS year FROM landed
    UNION ALL SELECT DISTINCT query, CAST(year(partition_date) AS VARCHAR), year(partition_date) FROM landed
),
identified AS (
    SELECT p.query, p.period, l.provider, sum(l.records_fetched) AS records_identified,
           min(l.partition_date) AS first_date, max(l.partition_date) AS last_date
    FROM periods p JOIN landed l ON l.query = p.query AND (p.year IS NULL OR year(l.partition_date) = p.year)
    GROUP BY ALL
),
per_provider AS (
    SELECT p.query, p.period, f.provider, count(DISTINCT f.work_id) AS unique_records
    FROM periods p JOIN found f ON f.query = p.query AND (p.year IS NULL OR year(f.partition_date) = p.year)
    GROUP BY ALL
),
overall AS (
    SELECT p.query, p.period, count(DISTINCT f.work_id) AS unique_records
    FROM periods p JOIN found f ON f.query = p.query AND (p.year IS NULL OR year(f.partition_date) = p.year)
    GROUP BY ALL
),
provider_rows AS (
    SELECT i.query, i.period, i.first_date, i.last_date, i.provider, i.records_identified::BIGINT AS records_identified,
           (i.records_identified - coalesce(pp.unique_records, 0))::BIGINT AS duplicates_within_provider,
           NULL::BIGINT AS duplicates_across_providers, coalesce(pp.unique_records, 0)::BIGINT AS unique_records
    FROM identified i LEFT JOIN per_provider pp USING (query, period, provider)
)
SELECT * FROM (
    SELECT * FROM provider_rows
    UNION ALL
    SELECT r.query, r.period, min(r.first_date), max(r.last_date), '{ALL_PROVIDERS}', sum(r.records_identified)::BIGINT,
           sum(r.duplicates_within_provider)::BIGINT,
           (sum(r.unique_records) - coalesce(any_value(o.unique_records), 0))::BIGINT,
           coalesce(any_value(o.unique_records), 0)::BIGINT
    FROM provider_rows r LEFT JOIN overall o USING (query, period)
    GROUP BY r.query, r.period
)
ORDER BY query, period <> 'all', period, provider = '{ALL_PROVIDERS}', provider
"""


def build_review_counts(con: duckdb.DuckDBPyConnection) -> int:
    """Replace table `review_counts` from `provenance` and `unique_works`; returns its rows."""
    con.execute(f"CREATE OR REPLACE TABLE review_counts AS {REVIEW_COUNTS_SQL}")
    return con.execute("SELECT count(*) FROM review_counts").fetchone()[0]


def review_counts_markdown(con: duckdb.DuckDBPyConnection) -> str:
    """The 'all' period of every saved search as one markdown table per search, for the materialization's metadata."""
    rows = con.execute(
        "SELECT query, provider, records_identified, duplicates_within_provider, duplicates_across_providers, "
        "unique_records, first(first_date) OVER whole, first(last_date) OVER whole FROM review_counts "
        f"WHERE period = 'all' WINDOW whole AS (PARTITION BY query ORDER BY provider = '{ALL_PROVIDERS}' DESC) "
        f"ORDER BY query, provider = '{ALL_PROVIDERS}', provider"
    ).fetchall()
    lines, current = [], None
    for query, provider, identified, within, across, unique, first, last in rows:
        if query != current:
            current = query
            lines.append(f"\n**{query}** ({first} to {last})\n\n| provider | identified | duplicates within provider "
                         "| duplicates across providers | unique |\n|---|---:|---:|---:|---:|")
        across_text = "" if across is None else f"{across:,}"
        lines.append(f"| {provider} | {identified:,} | {within:,} | {across_text} | {unique:,} |")
    return "\n".join(lines).strip() or "No partition has landed yet."
