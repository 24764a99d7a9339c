"""A partition lands page by page through a staging Parquet file: the same rows as one table of all its pages would
give, each provider record once from the page it came first in, and no staging file left behind."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

import scholar_pipeline.defs.partition_runs as partition_runs
import scholar_pipeline.works as works
from scholar_pipeline.landing import LandingZone, Manifest, PageEntry, partition_input_hash
from scholar_pipeline.normalize import normalize_page
from scholar_pipeline.warehouse import ProvenanceRow, replace_partition
from scholar_pipeline.works import PartitionRowsError, hash_of_records, staged_rows
from scholar_pipeline_tests.conftest import real_response
from scholar_pipeline_tests.helpers import home, materialize, query_db

DAY = "2024-03-01"
OPENALEX_PAGE = json.loads(real_response("openalex/openalexpro_works_search_biodiversity_finance_per200_cursor_p1.json"))
RECORDS = OPENALEX_PAGE["results"]


def _land_pages(tmp_path, pages: list[list[dict]]) -> tuple[LandingZone, Manifest]:
    """A fetch of OpenAlex pages holding these records, in the landing zone as the fetch leaves it."""
    landing = LandingZone(tmp_path / "landing")
    entries = []
    for number, records in enumerate(pages, 1):
        body = json.dumps({**OPENALEX_PAGE, "results": records}).encode()
        entries.append(PageEntry(number=number, url=f"https://api.openalex.org/works?page={number}", status=200, headers={},
                                 sha256=landing.store_page(body), bytes=len(body), records=len(records), holds_records=True,
                                 from_cache=False, fetched_at=f"2024-03-02T10:00:{number:02d}+00:00"))
    manifest = Manifest(query="q", query_text="t", provider="openalex", partition_date=DAY, retrieved_at=entries[0].fetched_at,
                        code_version="test", input_hash=partition_input_hash([e.sha256 for e in entries]), total_reported=None,
                        pages=entries)
    return landing, manifest


def _first_of_each(pages: list[list[dict]]) -> list[tuple[str, int]]:
    """(provider id, page number) of each record's first occurrence, in page order: what must land."""
    first: dict[str, int] = {}
    for number, records in enumerate(pages, 1):
        for record in records:
            first.setdefault(record["id"].rsplit("/", 1)[-1], number)
    return list(first.items())


def _land(con, manifest, rows) -> int:
    return replace_partition(con, rows, ProvenanceRow.of(manifest, Path("manifest.json"), rows, run_id=None, raw_run_id=None,
                                                          code_version="test"))


@pytest.mark.parametrize("row_group_rows", [1, 4, works.ROW_GROUP_ROWS], ids=["a row group per page", "pages split", "one row group"])
def test_a_record_repeated_across_a_page_boundary_lands_once_from_the_page_it_came_first(tmp_path, monkeypatch, row_group_rows):
    monkeypatch.setattr(works, "ROW_GROUP_ROWS", row_group_rows)
    r = RECORDS
    pages = [r[0:3], [r[2], r[3], r[3], r[4]], [], r[5:8] + [r[0]], [r[8]]]  # across a boundary, within a page, and back
    landing, manifest = _land_pages(tmp_path, pages)
    expected = _first_of_each(pages)
    with staged_rows(landing, manifest, staging_dir=tmp_path / "staging") as rows, duckdb.connect() as con:
        assert rows.path.exists()
        landed = _land(con, manifest, rows)
        in_duckdb = con.execute("SELECT provider_id, raw_page_sha256, record_hash FROM works").fetchall()
    assert landed == len(expected) == rows.row_count == 9
    sha_of = {entry.sha256: entry.number for entry in manifest.pages}
    assert [(provider_id, sha_of[sha]) for provider_id, sha, _ in in_duckdb] == expected
    assert rows.records_parsed == sum(map(len, pages)) == 12 and rows.duplicates_dropped == 3
    whole = normalize_page("openalex", json.dumps({**OPENALEX_PAGE, "results": r[0:9]}).encode())  # each record once, in order
    assert sorted(h for *_, h in in_duckdb) == sorted(whole.column("record_hash").to_pylist())
    assert rows.output_hash == hash_of_records(whole.column("record_hash").to_pylist())
    assert rows.preview.column("doi").to_pylist() == whole.column("doi").to_pylist()[:works.PREVIEW_ROWS]
    assert not list((tmp_path / "staging").iterdir()), "the staging file is deleted once the partition landed"


def test_pages_stream_into_the_staging_file_as_they_are_read(tmp_path, monkeypatch):
    """Each page's rows are written before the next page is read: no table of the whole partition is ever built."""
    monkeypatch.setattr(works, "ROW_GROUP_ROWS", 1)
    pages = [RECORDS[i:i + 20] for i in range(0, 200, 20)]
    landing, manifest = _land_pages(tmp_path, pages)
    staging = tmp_path / "staging"
    read = works.normalize_raw_records
    written_before_each_page = []

    def normalize(provider, raw_records):
        (path,) = staging.iterdir()
        written_before_each_page.append(os.path.getsize(path))
        return read(provider, raw_records)

    monkeypatch.setattr(works, "normalize_raw_records", normalize)
    with staged_rows(landing, manifest, staging_dir=staging) as rows:
        row_groups = pq.ParquetFile(rows.path).metadata.num_row_groups
        assert pq.read_table(rows.path).num_rows == rows.row_count == 200
    assert row_groups == len(pages)
    assert all(before < after for before, after in zip(written_before_each_page, written_before_each_page[1:])), \
        f"the staging file did not grow page by page: {written_before_each_page}"


def test_the_staging_file_is_gone_after_a_failure(tmp_path):
    pages = [RECORDS[0:50], RECORDS[50:100], RECORDS[100:150]]
    landing, manifest = _land_pages(tmp_path, pages)
    staging = tmp_path / "staging"
    with pytest.raises(RuntimeError, match="DuckDB went away"), staged_rows(landing, manifest, staging_dir=staging) as rows:
        assert rows.path.exists()
        raise RuntimeError("DuckDB went away")
    assert not list(staging.iterdir())

    damaged = landing.page_path(manifest.pages[1].sha256)  # a page of the middle, damaged on disk
    damaged.write_bytes(gzip.compress(b"{}")[:-4])
    with pytest.raises(PartitionRowsError, match="page 2"), staged_rows(landing, manifest, staging_dir=staging):
        pass
    assert not list(staging.iterdir())


def test_a_swap_that_fails_half_way_keeps_the_rows_landed_before(tmp_path):
    """The DELETE, the INSERT from the staging file and the provenance row are one transaction."""
    landing, manifest = _land_pages(tmp_path, [RECORDS[0:30]])
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        with staged_rows(landing, manifest, staging_dir=tmp_path / "staging") as rows:
            assert _land(con, manifest, rows) == 30
        with pytest.raises(duckdb.IOException):  # its staging file is gone: the INSERT fails after the DELETE
            _land(con, manifest, rows)
        assert con.execute("SELECT count(*) FROM works").fetchone()[0] == 30
        assert con.execute("SELECT count(*) FROM provenance").fetchone()[0] == 1


def test_a_run_leaves_no_staging_file_whether_it_lands_or_fails(pipeline_env, simulator, monkeypatch):
    staging = home() / "staging"
    assert materialize(DAY, "openalex").success
    assert query_db("SELECT count(*) FROM works")[0][0] > 0
    assert not list(staging.iterdir())

    def failing_swap(con, rows, provenance, **options):
        assert rows.path.parent == staging and rows.path.exists()
        raise duckdb.IOException("disk full")

    monkeypatch.setattr(partition_runs, "replace_partition", failing_swap)
    assert not materialize("2024-03-02", "openalex", raise_on_error=False).success
    assert not list(staging.iterdir())
