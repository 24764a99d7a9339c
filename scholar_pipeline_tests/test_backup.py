"""Backup and restore (scholar_pipeline/backup.py) against the real services: partitions landed through the pipeline
from the simulator into a Dagster instance on a fresh PostgreSQL database, backed up with `scholar-pipeline backup`,
restored into a fresh home and a fresh database, and found the same there: rows, provenance hashes, run history."""

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from scholar_pipeline.audit import audit
from scholar_pipeline.backup import DamagedBackup, RestoreRefused, backup, restore, verify
from scholar_pipeline.instance import prepare_instance
from scholar_pipeline.warehouse import latest_provenance
from scholar_pipeline.warehouse_backends import DuckDBFile
from scholar_pipeline_tests.helpers import SEARCH, materialize
from scholar_pipeline_tests.postgres import DEPLOY_DAGSTER_YAML, fresh_database, pg_select
from scholar_pipeline_tests.test_scenarios import BIN

pytestmark = pytest.mark.slow
PASSWORD = "pg-password-" + uuid.uuid4().hex  # trust auth ignores it; it must show up nowhere
ASSETS = [dg.AssetKey([SEARCH.name, "raw"]), dg.AssetKey([SEARCH.name, "works"])]


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "scholar-pipeline"), *args], env=env, capture_output=True, text=True, timeout=300)


def table(database: Path, name: str) -> list[tuple]:
    with duckdb.connect(str(database), read_only=True) as con:
        return con.execute(f"SELECT * FROM {name} ORDER BY ALL").fetchall()


def flip_last_byte(path: Path) -> bytes:
    """Damage a file in place, as bit rot would; return what it held."""
    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    return data


def history(dagster_home: Path) -> dict:
    """What an instance holds of its runs: each run's status and tags, its event count, and every materialization."""
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        runs = {run.run_id: (run.status, dict(run.tags), len(instance.all_logs(run.run_id))) for run in instance.get_runs()}
        materializations = {key.to_string(): [(r.run_id, r.partition_key, r.asset_materialization.metadata)
                                              for r in instance.fetch_materializations(key, limit=100).records]
                            for key in ASSETS}
    return {"runs": runs, "materializations": materializations}


@pytest.mark.timeout(400)
def test_backup_restores_rows_hashes_and_run_history_into_a_fresh_home_and_database(production_env, tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", PASSWORD)
    source_dagster_home = Path(production_env["DAGSTER_HOME"])
    with dg.DagsterInstance.get() as instance:
        for provider in ("openalex", "crossref", "openalex"):  # the rerun gives a partition two provenance rows
            materialize("2024-03-01", provider, instance=instance)
    home = Path(os.environ["SCHOLAR_PIPELINE_HOME"])
    source = history(source_dagster_home)
    assert len(source["runs"]) == 3 and all(len(events) == 3 for events in source["materializations"].values())

    folder = tmp_path / "backup"
    backed_up = cli("backup", str(folder), env=dict(os.environ))
    assert backed_up.returncode == 0, backed_up.stderr
    manifest = verify(folder)
    with duckdb.connect(str(home / "scholar.duckdb"), read_only=True) as con:
        latest = {" / ".join(map(str, key)): row["output_hash"] for key, row in latest_provenance(con).items()}
        provenance_rows, = con.execute("SELECT count(*) FROM provenance").fetchone()
    assert manifest["provenance"]["latest_output_hashes"] == latest and len(latest) == 2
    assert manifest["provenance"]["rows"] == provenance_rows == 3
    assert manifest["parts"]["instance"]["kind"] == "postgres"
    landed = sorted(p.relative_to(home).as_posix() for p in (home / "landing").rglob("*") if p.is_file())
    assert sorted(f for f in manifest["files"] if f.startswith("landing/")) == landed
    assert not any(f.startswith(("cache/", "exports/")) for f in manifest["files"])

    restored_home, restored_dagster_home = tmp_path / "restored_home", tmp_path / "restored_dagster_home"
    restored_dagster_home.mkdir()
    shutil.copyfile(DEPLOY_DAGSTER_YAML, restored_dagster_home / "dagster.yaml")
    with fresh_database("scholar_restore") as restore_db:
        env = dict(os.environ) | {"DAGSTER_HOME": str(restored_dagster_home), "DAGSTER_PG_DB": restore_db}

        # A damaged file is named, and nothing is restored.
        damaged = tmp_path / "damaged"
        shutil.copytree(folder, damaged)
        page = next(f for f in manifest["files"] if f.startswith("landing/pages/"))
        flip_last_byte(damaged / page)
        refused = cli("restore", str(damaged), "--home", str(restored_home), env=env)
        assert refused.returncode == 1 and f"{page} (sha256 differs from backup.json)" in refused.stderr
        assert not restored_home.exists()
        assert pg_select(restore_db, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'") == [(0,)]

        restored = cli("restore", str(folder), "--home", str(restored_home), env=env)
        assert restored.returncode == 0, restored.stderr
        for name in ("works", "provenance"):
            assert table(restored_home / "scholar.duckdb", name) == table(home / "scholar.duckdb", name)
        audited = cli("audit", env=env | {"SCHOLAR_PIPELINE_HOME": str(restored_home)})
        assert audited.returncode == 0 and "everything matches what was recorded" in audited.stdout, audited.stdout
        monkeypatch.setenv("DAGSTER_PG_DB", restore_db)  # from_config resolves deploy/dagster.yaml's env: here
        assert history(restored_dagster_home) == source

        # A home or an instance that holds data is not overwritten unless forced.
        again = cli("restore", str(folder), "--home", str(restored_home), env=env)
        assert again.returncode == 1 and f"database {restore_db} on 127.0.0.1:5432 already holds" in again.stderr
        home_only = cli("restore", str(folder), "--home", str(restored_home), "--no-instance", env=env)
        assert home_only.returncode == 1 and f"{restored_home} is not empty" in home_only.stderr
        forced = cli("restore", str(folder), "--home", str(restored_home), "--force", env=env)
        assert forced.returncode == 0, forced.stderr
        assert table(restored_home / "scholar.duckdb", "works") == table(home / "scholar.duckdb", "works")
        assert history(restored_dagster_home) == source

    outputs = [backed_up, refused, restored, audited, again, home_only, forced]
    assert not [p for p in folder.rglob("*") if p.is_file() and PASSWORD.encode() in p.read_bytes()]
    assert not [o.args for o in outputs if PASSWORD in o.stdout + o.stderr]


def test_incremental_backup_links_unchanged_files_and_restores_a_sqlite_instance(pipeline_env, tmp_path):
    home, dagster_home = Path(pipeline_env["SCHOLAR_PIPELINE_HOME"]), prepare_instance(pipeline_env["DAGSTER_HOME"])
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        materialize("2024-03-01", "openalex", instance=instance)
        first = backup(home, tmp_path / "b1", dagster_home=dagster_home, log=lambda _: None)
        materialize("2024-03-02", "openalex", instance=instance)
    with pytest.raises(Exception, match="is not empty"):
        backup(home, tmp_path / "b1", dagster_home=dagster_home, log=lambda _: None)
    second = backup(home, tmp_path / "b2", dagster_home=dagster_home, previous=tmp_path / "b1", log=lambda _: None)

    old = sorted(f for f in first["files"] if f.startswith("landing/"))
    new = sorted(f for f in second["files"] if f.startswith("landing/") and f not in first["files"])
    assert second["parts"]["landing"]["linked_from_previous"] == len(old) and new
    assert all(os.path.samefile(tmp_path / "b1" / f, tmp_path / "b2" / f) for f in old)
    assert second["parts"]["instance"]["kind"] == "sqlite"
    assert len(second["provenance"]["latest_output_hashes"]) == 2 == len(first["provenance"]["latest_output_hashes"]) + 1

    # Bit rot in the earlier backup shows in the later one too (they share the file), and is caught there.
    page = next(f for f in old if f.startswith("landing/pages/"))
    original = flip_last_byte(tmp_path / "b1" / page)
    with pytest.raises(DamagedBackup, match=page):
        restore(tmp_path / "b2", tmp_path / "restored", dagster_home=None, log=lambda _: None)
    assert not (tmp_path / "restored").exists()
    (tmp_path / "b1" / page).write_bytes(original)

    restored_dagster_home = prepare_instance(tmp_path / "restored_dagster_home")  # a fresh instance: no runs yet
    restore(tmp_path / "b2", tmp_path / "restored", dagster_home=restored_dagster_home, log=lambda _: None)
    assert table(tmp_path / "restored" / "scholar.duckdb", "works") == table(home / "scholar.duckdb", "works")
    assert audit(tmp_path / "restored", DuckDBFile(tmp_path / "restored" / "scholar.duckdb", tmp_path / "restored"), log=lambda _: None) == []
    assert history(restored_dagster_home) == history(dagster_home)
    with pytest.raises(RestoreRefused, match="already holds 2 runs"):
        restore(tmp_path / "b2", tmp_path / "elsewhere", dagster_home=restored_dagster_home, log=lambda _: None)
