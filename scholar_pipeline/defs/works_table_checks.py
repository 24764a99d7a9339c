"""Checks of a partition's rows as DuckDB holds them after the swap: columns and types, DOIs, keys, titles.

They read the table, not what the landing meant to write, in the landing's own connection
(`partition_runs.py`), so a table altered by hand or by an older version is caught too.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg
import duckdb

from scholar_pipeline.schema import WORKS_SCHEMA

WORKS_COLUMNS = "works_columns"
DOI_FORMAT = "doi_format"
NO_DUPLICATE_KEYS = "no_duplicate_keys"
TITLES_PRESENT = "titles_present"

TABLE_CHECK_DESCRIPTIONS = {
    WORKS_COLUMNS: "Table `works` has every column of the schema with its type, and the partition no NULL in a column "
                   "that identifies or traces a row.",
    DOI_FORMAT: "Every DOI of the partition is bare and lower case: `10.<registrant>/<suffix>`, no spaces, no resolver.",
    NO_DUPLICATE_KEYS: "No provider record has two rows in the partition (query, provider, day, provider_id).",
    TITLES_PRESENT: "The share of rows without a title stays at or under SCHOLAR_PIPELINE_MAX_NULL_TITLE_SHARE "
                    "(default 0.1) (WARN).",
}
REQUIRED = ["query", "provider", "partition_date", "provider_id", "record_hash", "raw_page_sha256", "retrieved_at"]
# Crossref's own pattern is stricter ([-._;()/:A-Z0-9]); real DOIs also hold <, >, # and [ ] (SICIs), so only spaces,
# a resolver prefix or upper case are refused.
DOI_PATTERN = r"^10\.[0-9]{4,9}(\.[0-9]+)*/[^\s]+$"
SHOWN = 5


def table_results(con: duckdb.DuckDBPyConnection, query: str, provider: str, day: dt.date,
                  max_null_title_share: float) -> list[dg.AssetCheckResult]:
    partition = "FROM works WHERE query = ? AND provider = ? AND partition_date = ?"
    params = [query, provider, day]
    return [works_columns(con, partition, params), doi_format(con, partition, params),
            no_duplicate_keys(con, partition, params), titles_present(con, partition, params, max_null_title_share)]


def works_columns(con: duckdb.DuckDBPyConnection, partition: str, params: list) -> dg.AssetCheckResult:
    expected = _duckdb_types(con)
    found = {name: sql_type for name, sql_type, *_ in con.execute("DESCRIBE works").fetchall()}
    missing = sorted(set(expected) - set(found))
    retyped = {name: f"{found[name]} (expected {expected[name]})" for name in expected if name in found and found[name] != expected[name]}
    nulls = dict(zip(REQUIRED, con.execute(
        f"SELECT {', '.join(f'count(*) FILTER (WHERE {c} IS NULL)' for c in REQUIRED if c in found)} {partition}", params
    ).fetchone())) if not missing else {}
    null_columns = {name: count for name, count in nulls.items() if count}
    return dg.AssetCheckResult(
        check_name=WORKS_COLUMNS, passed=not (missing or retyped or null_columns),
        metadata={"missing_columns": dg.MetadataValue.json(missing), "columns_of_another_type": dg.MetadataValue.json(retyped),
                  "nulls_in_required_columns": dg.MetadataValue.json(null_columns)},
    )


def doi_format(con: duckdb.DuckDBPyConnection, partition: str, params: list) -> dg.AssetCheckResult:
    bad, examples, with_doi = con.execute(
        f"SELECT count(*) FILTER (WHERE NOT ok), list(doi ORDER BY doi) FILTER (WHERE NOT ok)[1:{SHOWN}], count(doi) "
        f"FROM (SELECT doi, regexp_full_match(doi, '{DOI_PATTERN}') AND doi = lower(doi) AS ok {partition} AND doi IS NOT NULL)",
        params,
    ).fetchone()
    return dg.AssetCheckResult(
        check_name=DOI_FORMAT, passed=bad == 0,
        metadata={"rows_with_doi": with_doi, "malformed_dois": bad, "first_malformed": dg.MetadataValue.json(examples or [])},
    )


def no_duplicate_keys(con: duckdb.DuckDBPyConnection, partition: str, params: list) -> dg.AssetCheckResult:
    repeated, examples = con.execute(
        f"SELECT count(*), list(provider_id ORDER BY provider_id)[1:{SHOWN}] FROM "
        f"(SELECT provider_id {partition} GROUP BY provider_id HAVING count(*) > 1)", params,
    ).fetchone()
    return dg.AssetCheckResult(
        check_name=NO_DUPLICATE_KEYS, passed=repeated == 0,
        metadata={"provider_ids_repeated": repeated, "first_repeated": dg.MetadataValue.json(examples or [])},
    )


def titles_present(con: duckdb.DuckDBPyConnection, partition: str, params: list, max_share: float) -> dg.AssetCheckResult:
    rows, untitled = con.execute(f"SELECT count(*), count(*) FILTER (WHERE title IS NULL) {partition}", params).fetchone()
    share = untitled / rows if rows else 0.0
    return dg.AssetCheckResult(
        check_name=TITLES_PRESENT, passed=share <= max_share, severity=dg.AssetCheckSeverity.WARN,
        metadata={"rows": rows, "rows_without_title": untitled, "share_without_title": round(share, 4),
                  "max_share": max_share},
    )


def _duckdb_types(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """WORKS_SCHEMA's columns with the types DuckDB gives them, as `DESCRIBE works` shows them."""
    con.register("expected_works", WORKS_SCHEMA.empty_table())
    try:
        return {name: sql_type for name, sql_type, *_ in con.execute("DESCRIBE SELECT * FROM expected_works").fetchall()}
    finally:
        con.unregister("expected_works")
