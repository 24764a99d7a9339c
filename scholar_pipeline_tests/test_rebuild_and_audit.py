"""`scholar-pipeline rebuild` and `audit`: every landed row provable from the bytes it came from, offline."""

import contextlib
import datetime as dt
import gzip
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb

from scholar_pipeline.defs.works_checks import LANDING_AUDIT
from scholar_pipeline.landing import LandingZone
from scholar_pipeline import rebuild as rebuild_module
from scholar_pipeline.rebuild import Rebuilt, describe
from scholar_pipeline.warehouse_backends import DuckDBFile
from scholar_pipeline_tests.helpers import home, materialize, query_db, recorded_manifest, step_failure

BIN = Path(sys.executable).parent
DAY = "2024-03-01"


def _cli(*args: str) -> subprocess.CompletedProcess:
    """The console script as a user runs it, with the pipeline's environment."""
    return subprocess.run([str(BIN / "scholar-pipeline"), *args], env=dict(os.environ), capture_output=True, text=True, timeout=300)


def _rows() -> list[tuple]:
    return query_db("SELECT query, provider, partition_date, provider_id, record_hash, title FROM works ORDER BY ALL")


def _execute(sql: str, params=None) -> None:
    with duckdb.connect(str(home() / "scholar.duckdb")) as con:
        con.execute(sql, params or [])


def test_rebuild_offline_reproduces_every_output_hash_and_rewrites_only_what_it_must(pipeline_env, simulator):
    for provider in ("openalex", "crossref"):
        assert materialize(DAY, provider).success
    before = _rows()
    recorded = dict(query_db("SELECT provider, output_hash FROM provenance"))
    shutil.rmtree(home() / "cache")  # no HTTP cache...
    simulator.stop()  # ...and no provider

    rebuilt = _cli("rebuild")

    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    for provider, output_hash in recorded.items():
        assert f"sim_search / {provider} / {DAY}: recorded {output_hash[:16]} (provenance), rebuilt {output_hash[:16]}: equal" in rebuilt.stdout
    assert "2 partitions rebuilt, 0 written, 0 different" in rebuilt.stdout
    assert _rows() == before and query_db("SELECT count(*) FROM provenance") == [(2,)]

    # A partition landed by older normalization code is rewritten; the other is left alone.
    _execute("UPDATE provenance SET code_version = 'works-v1+works-v1' WHERE provider = 'crossref'")
    again = _cli("rebuild", "--from", DAY, "--to", DAY)
    assert again.returncode == 0 and "2 partitions rebuilt, 1 written" in again.stdout
    assert query_db("SELECT provider, count(*), count(run_id) FROM provenance GROUP BY ALL ORDER BY ALL") == [
        ("crossref", 2, 1), ("openalex", 1, 1)]  # the rewrite's provenance row has no Dagster run
    assert _rows() == before


def test_rebuild_restores_a_lost_warehouse_from_the_landing_zone(pipeline_env, simulator):
    assert materialize(DAY, "crossref").success
    before = _rows()
    (home() / "scholar.duckdb").unlink()

    rebuilt = _cli("rebuild", "--provider", "crossref", "--query", "sim_search")

    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert "(manifest)" in rebuilt.stdout and ": equal, rewritten" in rebuilt.stdout
    assert _rows() == before


def test_rebuild_says_when_rows_do_not_reproduce(pipeline_env, simulator):
    assert materialize(DAY, "openalex").success
    before = _rows()
    _execute("UPDATE provenance SET output_hash = 'f00d' || output_hash")  # as if other rows had been landed
    rebuilt = _cli("rebuild")
    assert rebuilt.returncode == 1 and "DIFFERENT, kept as it is" in rebuilt.stdout
    assert query_db("SELECT count(*) FROM provenance") == [(1,)]  # nothing written: works keeps no history
    forced = _cli("rebuild", "--force")
    assert forced.returncode == 1 and "DIFFERENT, replaced by what the landed pages give (--force)" in forced.stdout
    assert query_db("SELECT count(*) FROM provenance") == [(2,)] and _rows() == before  # the rows the pages give
    assert "is after --to" in _cli("rebuild", "--from", "2024-03-02", "--to", DAY).stderr
    assert "no landed partition" in _cli("rebuild", "--query", "no_such_search").stdout


def test_audit_reports_a_tampered_page_a_tampered_row_and_what_is_missing_or_extra(pipeline_env, simulator):
    result = materialize(DAY, "openalex")
    landing = LandingZone(home() / "landing")
    landing.store_page(b'{"meta": {}, "results": []}')  # as a fetch that failed after its first page leaves one
    clean = _cli("audit")
    assert clean.returncode == 0 and "everything matches what was recorded" in clean.stdout, clean.stdout + clean.stderr
    assert "1 intact pages are named by no manifest" in clean.stdout

    first, second = recorded_manifest(result).pages[:2]
    tampered = landing.read_page(first.sha256).replace(b'"results":[', b'"results": [', 1)
    landing.page_path(first.sha256).write_bytes(gzip.compress(tampered))
    landing.page_path(second.sha256).unlink()
    stray = landing.page_path("ab" * 32)
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(gzip.compress(b"{}"))
    provider_id = query_db("SELECT min(provider_id) FROM works")[0][0]
    _execute("UPDATE works SET title = 'An edited title' WHERE provider_id = ?", [provider_id])

    audited = _cli("audit")

    assert audited.returncode == 1
    lines = audited.stdout.splitlines()
    assert any(line.startswith(f"page changed: {first.sha256}") for line in lines), audited.stdout
    assert any(line.startswith(f"page missing: {second.sha256}") for line in lines), audited.stdout
    assert any(line.startswith(f"page extra: {'ab' * 32}") for line in lines), audited.stdout
    assert any(line.startswith(f"rows changed: sim_search / openalex / {DAY}: 1 rows no longer match their record_hash "
                               f"(first: provider_id '{provider_id}')") for line in lines), audited.stdout
    assert lines[-1].endswith(": 5 findings")  # the edited row also moves the partition's output hash


def test_a_partition_with_nothing_recorded_to_compare_is_written_without_failing_the_rebuild():
    """A manifest written before content hashes, and no provenance row: no hash to compare, so no verdict of difference."""
    result = Rebuilt(query="q", provider="openalex", partition_date=dt.date(2024, 3, 1), recorded_hash=None, recorded_in="manifest",
                     rebuilt_hash="ab" * 32, recorded_code_version=None, written=True)
    assert not result.unexplained and describe(result).endswith("nothing recorded to compare with, written")


def test_a_recorded_manifest_is_found_under_the_landing_zone_after_the_home_moved(tmp_path):
    landing = LandingZone(tmp_path / "landing")
    recorded = "/old/home/landing/manifests/sim_search/openalex/2024-03-01/20240302T000000Z-abc.json"
    assert landing.recorded_manifest(recorded) == tmp_path / "landing/manifests/sim_search/openalex/2024-03-01/20240302T000000Z-abc.json"


def test_landing_audit_check_passes_after_a_landing_and_fails_when_executed_alone_on_a_tampered_partition(pipeline_env, simulator):
    """In a partition's run it audits that partition right after the write; executed alone (the UI's "Execute check"
    on some partitions), it audits each of those, recording a result per partition."""
    with dg.instance_for_test() as instance:
        landed = materialize(DAY, "openalex", instance=instance)
        (check,) = [c for c in landed.get_asset_check_evaluations() if c.check_name == LANDING_AUDIT]
        assert check.passed and check.metadata["audited"].value == f"sim_search / openalex / {DAY}"
        assert check.partition == f"{DAY}|openalex"
        assert materialize("2024-03-02", "crossref", instance=instance).success

        page = recorded_manifest(landed).pages[0]
        landing = LandingZone(home() / "landing")
        landing.page_path(page.sha256).write_bytes(gzip.compress(landing.read_page(page.sha256) + b" "))
        _execute("UPDATE works SET title = 'An edited title' WHERE provider = 'crossref' AND provider_id = "
                 "(SELECT min(provider_id) FROM works WHERE provider = 'crossref')")
        alone = {partition: _check_alone(LANDING_AUDIT, day, provider, instance)
                 for partition, (day, provider) in {"page": (DAY, "openalex"), "rows": ("2024-03-02", "crossref")}.items()}
        rows_before = query_db("SELECT count(*) FROM works")[0][0]

    assert not alone["page"].get_asset_materialization_events(), "a check executed alone lands nothing"
    (page_check,), (rows_check,) = (alone[p].get_asset_check_evaluations() for p in ("page", "rows"))
    assert not page_check.passed and page_check.severity == dg.AssetCheckSeverity.ERROR
    assert page_check.partition == f"{DAY}|openalex" and page_check.metadata["findings"].value == 1
    assert f"| page changed | `{page.sha256}` |" in page_check.metadata["first_findings"].value
    assert not rows_check.passed and rows_check.metadata["audited"].value == "sim_search / crossref / 2024-03-02"
    assert "| rows changed | `sim_search / crossref / 2024-03-02` |" in rows_check.metadata["first_findings"].value
    assert rows_before == query_db("SELECT count(*) FROM works")[0][0]


def test_a_landing_check_executed_alone_says_it_is_evaluated_when_the_partition_lands(pipeline_env, simulator):
    assert materialize(DAY, "openalex").success
    alone = _check_alone("no_records_lost", DAY, "openalex", raise_on_error=False)
    assert not alone.success
    assert "no_records_lost are evaluated as sim_search/works lands a partition" in step_failure(alone)


SEARCH_WORKS = dg.AssetKey(["sim_search", "works"])


def _check_alone(name: str, day: str, provider: str, instance=None, raise_on_error: bool = True):
    """One check executed alone for one partition, as the UI launches it: the partition as a run tag."""
    return materialize(day, provider, instance=instance, selection=dg.AssetSelection.checks(dg.AssetCheckKey(SEARCH_WORKS, name)),
                       raise_on_error=raise_on_error, partition_as_tag=True)


def test_rebuild_leaves_a_partition_that_a_run_landed_again_while_it_read_the_pages(pipeline_env, simulator, monkeypatch):
    """The writer lock is taken per partition, so a run may land a partition between the rebuild's read and its write."""
    assert materialize(DAY, "openalex").success
    _execute("UPDATE provenance SET code_version = 'works-v0'")  # so the rebuild must write it
    read_pages = rebuild_module.staged_rows

    @contextlib.contextmanager
    def a_run_lands_it_meanwhile(landing, manifest):
        with read_pages(landing, manifest) as rows:
            assert materialize(DAY, "openalex").success
            yield rows

    monkeypatch.setattr(rebuild_module, "staged_rows", a_run_lands_it_meanwhile)
    (result,) = rebuild_module.rebuild(home(), DuckDBFile(home() / "scholar.duckdb", home()), log=lambda line: None)
    assert result.landed_meanwhile and not result.written
    assert "landed again by a run meanwhile" in describe(result)
    assert query_db("SELECT count(*), count(run_id) FROM provenance") == [(2, 2)]  # both landings by runs, none by the rebuild
