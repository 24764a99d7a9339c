"""Preparing the Dagster instance once, before runs share it (scholar_pipeline.instance)."""

import os
import signal
import sqlite3
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

import dagster as dg
import pytest

from scholar_pipeline.instance import CONFIG_HEADER, BrokenInstanceError, main, prepare_instance
from scholar_pipeline_tests.conftest import REPO_ROOT
from scholar_pipeline_tests.helpers import query_db

BIN = Path(sys.executable).parent
STORAGE = ["history/runs.db", "history/runs/index.db", "schedules/schedules.db"]


def _alembic_versions(home: Path) -> dict[str, list[str]]:
    versions = {}
    for relative in STORAGE:
        with closing(sqlite3.connect(home / relative)) as con:
            versions[relative] = [row[0] for row in con.execute("SELECT version_num FROM alembic_version")]
    return versions


def test_prepares_a_fresh_home_with_the_repo_config_and_one_schema_version_per_database(tmp_path):
    home = prepare_instance(tmp_path / "dagster_home")
    assert home == (tmp_path / "dagster_home").resolve()
    assert (home / "dagster.yaml").read_bytes() == CONFIG_HEADER + (REPO_ROOT / "dagster.yaml").read_bytes()
    assert all(len(versions) == 1 for versions in _alembic_versions(home).values())


def test_a_dagster_yaml_of_its_own_is_kept_except_in_the_demo_home(tmp_path, monkeypatch):
    monkeypatch.setenv("SCHOLAR_PIPELINE_HOME", str(tmp_path / "data"))
    own = b"telemetry:\n  enabled: false\n"
    for home in (tmp_path / "elsewhere", tmp_path / "data" / "dagster_home"):
        home.mkdir(parents=True)
        (home / "dagster.yaml").write_bytes(own)
        prepare_instance(home)
        assert (home / "history" / "runs.db").exists()
    assert (tmp_path / "elsewhere" / "dagster.yaml").read_bytes() == own
    assert (tmp_path / "data" / "dagster_home" / "dagster.yaml").read_bytes().startswith(CONFIG_HEADER)


def test_a_run_on_the_prepared_home_prints_its_info_lines_not_each_events_debug_line_and_stores_every_event(tmp_path, capfd):
    @dg.asset
    def counted(context: dg.AssetExecutionContext) -> int:
        context.log.info("counted 3 works")
        return 3

    home = prepare_instance(tmp_path / "dagster_home")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        run_id = dg.materialize([counted], instance=instance).run_id
        stored = {record.dagster_event.event_type_value for record in instance.all_logs(run_id) if record.dagster_event}
    printed = capfd.readouterr().err
    assert "counted 3 works" in printed and " - DEBUG - " not in printed
    assert {"STEP_START", "ASSET_MATERIALIZATION", "STEP_SUCCESS", "PIPELINE_SUCCESS"} <= stored  # the run's success


def test_preparing_again_keeps_the_run_history(tmp_path):
    @dg.asset
    def one() -> int:
        return 1

    home = prepare_instance(tmp_path / "dagster_home")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert dg.materialize([one], instance=instance).success
    assert prepare_instance(home) == home
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert len(instance.get_runs()) == 1


def test_concurrent_preparations_of_a_fresh_home_create_the_storage_once(tmp_path):
    with ThreadPoolExecutor(4) as pool:
        homes = list(pool.map(lambda _: prepare_instance(tmp_path / "dagster_home"), range(4)))
    assert len(set(homes)) == 1
    assert all(len(versions) == 1 for versions in _alembic_versions(homes[0]).values())


def test_a_home_broken_by_concurrent_first_use_is_reported_with_the_way_out(tmp_path):
    home = prepare_instance(tmp_path / "dagster_home")
    # What four racing first runs left in runs.db here: the head and the revision stamped on finding the tables already made.
    with closing(sqlite3.connect(home / "history" / "runs.db")) as con, con:
        con.execute("INSERT INTO alembic_version VALUES ('5771160a95ad')")
    with pytest.raises(BrokenInstanceError, match="more than one head") as error:
        prepare_instance(home)
    assert str(home / "history") in str(error.value)


def test_command_prints_the_prepared_home_defaulting_to_the_pipeline_home(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SCHOLAR_PIPELINE_HOME", str(tmp_path / "data"))
    assert main([]) == 0
    assert capsys.readouterr().out.strip() == str((tmp_path / "data" / "dagster_home").resolve())
    assert main([str(tmp_path / "elsewhere")]) == 0
    assert capsys.readouterr().out.strip() == str((tmp_path / "elsewhere").resolve())
    assert (tmp_path / "elsewhere" / "dagster.yaml").exists()


@pytest.mark.slow
def test_four_shell_runs_started_at_once_on_a_freshly_prepared_home_all_succeed(pipeline_env, simulator):
    """Without the preparation, all four fail and leave two `alembic_version` rows behind for good."""
    prepare_instance(pipeline_env["DAGSTER_HOME"])
    partitions = ["2024-03-01|openalex", "2024-03-01|crossref", "2024-03-02|openalex", "2024-03-02|crossref"]
    processes = [
        subprocess.Popen([str(BIN / "dagster"), "asset", "materialize", "-m", "scholar_pipeline.definitions",
                          "--select", "group:sim_search", "--partition", partition],
                         cwd=REPO_ROOT, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         start_new_session=True)
        for partition in partitions
    ]
    try:
        outputs = [p.communicate(timeout=240)[0] for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)  # children here ignore SIGTERM
                p.wait()
    for partition, p, output in zip(partitions, processes, outputs):
        assert p.returncode == 0, f"{partition}:\n{output[-3000:]}"
    landed = query_db("SELECT partition_date::VARCHAR || '|' || provider, count(*) FROM works GROUP BY ALL")
    assert sorted(key for key, rows in landed if rows > 0) == sorted(partitions)
    assert all(len(versions) == 1 for versions in _alembic_versions(Path(pipeline_env["DAGSTER_HOME"])).values())
