"""Each asset check on `<name>/works` fails when what it guards goes wrong, and looks at what landed."""

import dataclasses
import json

import dagster as dg
import pyarrow.parquet as pq
import pytest

import scholar_pipeline.defs.partition_runs as partition_runs
import scholar_pipeline.defs.works_checks as works_checks
import scholar_pipeline.works
from scholar_pipeline.defs.works_checks import ALL_CHECKS
from scholar_pipeline.landing import Manifest, PageEntry
from scholar_pipeline_tests.helpers import materialize, query_db

DAY = "2024-03-01"


def _check(result, name: str):
    (evaluation,) = [c for c in result.get_asset_check_evaluations() if c.check_name == name]
    return evaluation


def _serve_with(simulator, change_first_result):
    """Wrap the simulated OpenAlex /works so that the first record of the first page is changed."""
    api = simulator.apis["openalex"]
    served = api.routes["/works"]

    def changed(params):
        response = served(params)
        page = json.loads(response.body)
        if page["results"] and params.get("cursor") == ["*"]:
            change_first_result(page["results"][0])
            response.body = json.dumps(page).encode()
        return response

    api.routes["/works"] = changed


def test_clean_partition_passes_every_check(pipeline_env, simulator):
    """(`schema_drift` on a clean partition of every provider: test_drift.py.)"""
    result = materialize(DAY, "openalex")
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == dict.fromkeys(ALL_CHECKS, True)


def test_no_records_lost_fails_when_a_row_vanishes_between_fetch_and_duckdb(pipeline_env, simulator, monkeypatch):
    keep_unique, pages = scholar_pipeline.works._first_of_each_record, []

    def dedup_that_loses_the_first_record(ids, seen):
        pages.append(ids)
        keep = keep_unique(ids, seen)
        return keep[1:] if len(pages) == 1 else keep

    monkeypatch.setattr(scholar_pipeline.works, "_first_of_each_record", dedup_that_loses_the_first_record)
    result = materialize(DAY, "openalex")
    check = _check(result, "no_records_lost")
    assert not check.passed
    landed = query_db("SELECT count(*) FROM works")[0][0]
    assert check.metadata["rows_in_duckdb"].value == landed == check.metadata["records_fetched"].value - 1


def test_no_records_lost_counts_the_rows_in_duckdb_not_the_rows_meant_for_it(pipeline_env, simulator, monkeypatch, tmp_path):
    """The rows that reach DuckDB lose one on the way (the staging file read without its first row): the summary of
    the staged rows still says every record, the count after the commit does not."""
    replace_partition = partition_runs.replace_partition

    def land_all_but_the_first_row(con, rows, provenance, **options):
        fewer = tmp_path / "fewer.parquet"
        pq.write_table(pq.read_table(rows.path).slice(1), fewer)
        return replace_partition(con, dataclasses.replace(rows, path=fewer), provenance, **options)

    monkeypatch.setattr(partition_runs, "replace_partition", land_all_but_the_first_row)
    check = _check(materialize(DAY, "openalex"), "no_records_lost")
    assert not check.passed
    assert check.metadata["rows_in_duckdb"].value == query_db("SELECT count(*) FROM works")[0][0] == check.metadata["records_fetched"].value - 1


def test_publication_dates_in_window_reports_a_record_from_another_day(pipeline_env, simulator):
    _serve_with(simulator, lambda work: work.update(publication_date="2023-12-31"))
    result = materialize(DAY, "openalex")
    check = _check(result, "publication_dates_in_window")
    assert not check.passed and check.metadata["outside_window"].value == 1
    assert query_db("SELECT count(*) FROM works WHERE publication_date = DATE '2023-12-31'")[0][0] == 1  # kept, not dropped


@pytest.mark.parametrize("field, value", [("cited_by_count", "many"), ("authorships", "abc")])
def test_values_well_typed_reports_a_value_of_the_wrong_type(pipeline_env, simulator, field, value):
    _serve_with(simulator, lambda work: work.update({field: value}))
    result = materialize(DAY, "openalex")
    check = _check(result, "values_well_typed")
    assert not check.passed and check.metadata["values_repaired"].value == 1
    assert field in check.metadata["first_problems"].value
    assert _check(result, "no_records_lost").passed  # the record itself landed


def test_matches_provider_total_reads_the_total_of_a_manifest_from_before_per_page_totals():
    manifest = Manifest(query="q", query_text="t", provider="openalex", partition_date="2024-03-01", retrieved_at="x",
                        code_version="raw-v1", input_hash="h", total_reported=999,
                        pages=[PageEntry(number=1, url="u", status=200, headers={}, sha256="s", bytes=1, records=5,
                                         holds_records=True, from_cache=False, fetched_at="x")])
    check = works_checks.matches_provider_total(manifest, repeated=0)
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR  # 994 records of the day are missing
    more = dataclasses.replace(manifest, total_reported=4)  # records added while paging: a warning
    assert works_checks.matches_provider_total(more, repeated=0).severity == dg.AssetCheckSeverity.WARN


def test_schema_drift_warns_of_a_field_that_no_real_record_has(pipeline_env, simulator):
    _serve_with(simulator, lambda work: work.update(grant_ids=["G1"]))
    result = materialize(DAY, "openalex")
    check = _check(result, "schema_drift")
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["drifted_fields"].value["new"] == ["grant_ids"] and check.metadata["new_fields"].value == 1
    assert _check(result, "no_records_lost").passed  # the record itself landed
