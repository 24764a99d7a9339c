"""Steps on Celery workers: with SCHOLAR_PIPELINE_EXECUTOR=celery, a run started from the shell hands its step to a
real `dagster-celery` worker (started as deploy/ starts it, on this machine's Redis and PostgreSQL), which fetches and
lands the partition; the run's own process only waits."""

import contextlib
import datetime as dt
import os
import shutil
import signal
import subprocess
import time

import dagster as dg
import pytest
import redis

from scholar_pipeline.settings import executor_name
from scholar_pipeline_tests.conftest import REPO_ROOT
from scholar_pipeline_tests.helpers import SEARCH, query_db
from scholar_pipeline_tests.test_deploy_files import DEPLOY, SERVICE_SCRIPT, VENV
from scholar_pipeline_tests.test_scenarios import _materialize_command

BROKER, BACKEND = "redis://127.0.0.1:6379/12", "redis://127.0.0.1:6379/13"  # databases of their own
PARTITIONS = ["2024-03-01|openalex", "2024-03-01|crossref"]


@pytest.fixture
def celery_env(production_env, tmp_path, monkeypatch):
    for url in (BROKER, BACKEND):
        redis.Redis.from_url(url).flushdb()
    config = tmp_path / "etc"
    config.mkdir()
    shutil.copy(DEPLOY / "celery.yaml", config / "celery.yaml")
    shutil.copy(DEPLOY / "dagster.yaml", config / "dagster.yaml")
    settings = {"SCHOLAR_PIPELINE_EXECUTOR": "celery", "DAGSTER_CELERY_BROKER_URL": BROKER,
                "DAGSTER_CELERY_BACKEND_URL": BACKEND, "SCHOLAR_PIPELINE_CONFIG_DIR": str(config),
                "PATH": f"{VENV / 'bin'}:{os.environ['PATH']}"}
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    return dict(os.environ)


def _ping(env: dict) -> bool:
    return subprocess.run([str(VENV / "bin" / "celery"), "-A", "dagster_celery.app", "-b", BROKER, "inspect", "ping",
                           "--timeout", "5"], env=env, capture_output=True).returncode == 0


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_partition_runs_execute_their_step_on_a_real_celery_worker(celery_env, simulator, tmp_path):
    log = tmp_path / "worker.log"
    with log.open("wb") as output:
        worker = subprocess.Popen([str(SERVICE_SCRIPT), "celery-worker", "--loglevel", "INFO"], env=celery_env,
                                  cwd=tmp_path, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while not _ping(celery_env):
            assert worker.poll() is None and time.monotonic() < deadline, f"no worker: {log.read_text()[-3000:]}"
            time.sleep(1)
        runs = [subprocess.Popen(_materialize_command(p), cwd=REPO_ROOT, env=celery_env, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True) for p in PARTITIONS]
        outputs = [run.communicate(timeout=400)[0] for run in runs]
        launchers = {run.pid for run in runs}
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
    assert log.read_text().count("succeeded in") >= len(PARTITIONS), log.read_text()[-3000:]
    for run, output in zip(runs, outputs):
        assert run.returncode == 0, output[-3000:]
    for partition in PARTITIONS:
        day, provider = partition.split("|")
        date = dt.date.fromisoformat(day)
        landed = sorted(r[0] for r in query_db("SELECT provider_id FROM works WHERE provider = ?", [provider]))
        assert landed == sorted(simulator.apis[provider].record_ids(date, date, SEARCH.text)), partition
    # Each run's step ran in a process of the worker, not in the process that started the run.
    with dg.DagsterInstance.get() as instance:
        runs_on_record = instance.get_run_records()
        assert len(runs_on_record) == len(PARTITIONS)
        for record in runs_on_record:
            events = instance.all_logs(record.dagster_run.run_id)
            starts = [e for e in events if e.dagster_event and e.dagster_event.event_type == dg.DagsterEventType.STEP_START]
            submitted = [e for e in events if "Submitting celery task for step" in (e.user_message or "")]
            assert len(starts) == 1 and submitted, [e.user_message for e in events]
            assert starts[0].dagster_event.pid not in launchers | {os.getpid(), None}
            assert record.dagster_run.status == dg.DagsterRunStatus.SUCCESS


def test_the_executor_is_a_setting_with_a_clear_error():
    assert executor_name({}) == "in_process"
    assert executor_name({"SCHOLAR_PIPELINE_EXECUTOR": "Celery"}) == "celery"
    with pytest.raises(ValueError, match="SCHOLAR_PIPELINE_EXECUTOR='k8s' must be one of in_process, celery"):
        executor_name({"SCHOLAR_PIPELINE_EXECUTOR": "k8s"})
