"""The checks of a partition's rows as DuckDB holds them: each passes on good rows and fails on the fault it names."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest

from scholar_pipeline.defs.works_table_checks import (
    DOI_FORMAT, NO_DUPLICATE_KEYS, TITLES_PRESENT, WORKS_COLUMNS, table_results,
)
from scholar_pipeline_tests.test_unique_works import DAY, WORKS_SCHEMA, row

GOOD_DOIS = ["10.1002/(sici)1097-4636(199706)35:4<415::aid-jbm1>3.0.co;2-o", "10.1000.10/abc#1", "10.48550/arxiv.2401.01234"]


def results(rows: list[dict], alter: str | None = None, max_share: float = 0.1) -> dict[str, object]:
    con = duckdb.connect()
    con.register("rows", pa.Table.from_pylist(rows, schema=WORKS_SCHEMA))
    con.execute("CREATE TABLE works AS SELECT * FROM rows")
    if alter:
        con.execute(alter)
    return {r.check_name: r for r in table_results(con, "q1", "openalex", DAY, max_share)}


def good_rows() -> list[dict]:
    return [row("openalex", f"W{n}", doi=doi, title=f"Title {n}") for n, doi in enumerate([*GOOD_DOIS, None])]


def test_good_rows_pass_every_check():
    found = results(good_rows())
    assert {name: r.passed for name, r in found.items()} == dict.fromkeys([WORKS_COLUMNS, DOI_FORMAT, NO_DUPLICATE_KEYS, TITLES_PRESENT], True)
    assert found[DOI_FORMAT].metadata["rows_with_doi"].value == 3


@pytest.mark.parametrize("doi", ["10.1000/ABC", "https://doi.org/10.1000/abc", "10.1000/a b", "doi:10.1000/abc", "11.1000/x", "10.12/x"])
def test_a_malformed_doi_fails_doi_format(doi):
    found = results([*good_rows(), row("openalex", "Wbad", doi=doi, title="t")])[DOI_FORMAT]
    assert not found.passed and found.metadata["first_malformed"].value == [doi]


def test_a_provider_record_twice_in_the_partition_fails_no_duplicate_keys():
    found = results([*good_rows(), row("openalex", "W1", title="again")])[NO_DUPLICATE_KEYS]
    assert not found.passed and found.metadata["first_repeated"].value == ["W1"]


def test_too_many_rows_without_title_fail_titles_present_as_a_warning():
    rows = good_rows()
    rows[0]["title"] = None  # 1 of 4: 25 %
    assert results(rows, max_share=0.25)[TITLES_PRESENT].passed
    found = results(rows, max_share=0.2)[TITLES_PRESENT]
    assert not found.passed and found.severity.value == "WARN" and found.metadata["rows_without_title"].value == 1


@pytest.mark.parametrize("alter, what", [
    ("ALTER TABLE works DROP COLUMN venue", "missing_columns"),
    ("ALTER TABLE works ALTER cited_by_count TYPE VARCHAR", "columns_of_another_type"),
    ("UPDATE works SET record_hash = NULL WHERE provider_id = 'W0'", "nulls_in_required_columns"),
])
def test_a_missing_column_a_retyped_one_or_a_null_key_fails_works_columns(alter, what):
    found = results(good_rows(), alter)[WORKS_COLUMNS]
    assert not found.passed and found.metadata[what].value
