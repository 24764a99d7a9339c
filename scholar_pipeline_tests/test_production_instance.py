"""The production instance (deploy/dagster.yaml) on the real PostgreSQL: the webserver and the daemon, started as
production runs them, keep the run history, the materializations and the state of a started schedule (and a stopped
sensor) through `kill -9`, all of it in PostgreSQL and none in SQLite under DAGSTER_HOME."""

import datetime as dt
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.scheduler.instigation import InstigatorStatus
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

from scholar_pipeline_tests.conftest import REPO_ROOT
from scholar_pipeline_tests.helpers import SEARCH, query_db
from scholar_pipeline_tests.postgres import DEPLOY_DAGSTER_YAML, pg_select
from scholar_pipeline_tests.test_scenarios import BIN, LAUNCH_BACKFILL, BACKFILL_STATUS, _graphql, _launch_and_wait, _wait_for

pytestmark = pytest.mark.slow
PARTITION = "2024-03-01|openalex"
ASSETS = (SEARCH.name, "raw"), (SEARCH.name, "works")
SCHEDULE = {"repositoryLocationName": "scholar_pipeline", "repositoryName": "__repository__",
            "scheduleName": f"{SEARCH.name}_daily_schedule"}

START_SCHEDULE = """mutation($selector: ScheduleSelector!) { startSchedule(scheduleSelector: $selector) {
    __typename ... on ScheduleStateResult { scheduleState { status } } ... on PythonError { message } } }"""
AUTOMATION_SENSOR = {"repositoryLocationName": "scholar_pipeline", "repositoryName": "__repository__",
                     "sensorName": "dataset_automation"}
SENSOR_STATE = """query($selector: SensorSelector!) { sensorOrError(sensorSelector: $selector) {
    __typename ... on Sensor { sensorState { id status } } } }"""
STOP_SENSOR = """mutation($id: String!) { stopSensor(id: $id) {
    __typename ... on StopSensorMutationResult { instigationState { status } } ... on PythonError { message } } }"""
SCHEDULE_STATE = """query($selector: ScheduleSelector!) { scheduleOrError(scheduleSelector: $selector) {
    __typename ... on Schedule { scheduleState { status } } } }"""
WORKSPACE = "{ workspaceOrError { ... on Workspace { locationEntries { loadStatus } } } }"
RUNS = "{ runsOrError { ... on Runs { results { runId status startTime endTime tags { key value } } } } }"
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}
MATERIALIZATIONS = """query($path: [String!]!, $partitions: [String!]) { assetOrError(assetKey: {path: $path}) {
    ... on Asset { assetMaterializations(partitions: $partitions) { runId partition timestamp
        metadataEntries { label ... on IntMetadataEntry { intValue } ... on TextMetadataEntry { text } } } } } }"""
SCHEDULER_HEARTBEAT = """{ instance { daemonHealth { daemonStatus(daemonType: "SCHEDULER") {
    healthy lastHeartbeatTime } } } }"""


class Services:
    """`dagster-webserver` and `dagster-daemon` on the repo's workspace.yaml, as deploy/ runs them; each in its own
    process group (with the code servers it starts), which `kill` ends with SIGKILL (children here ignore SIGTERM)."""

    def __init__(self, env: dict[str, str], logs: Path):
        self.env, self.logs, self.processes, self.url = env, logs, [], ""

    def start(self) -> str:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        commands = {"webserver": [str(BIN / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
                    "daemon": [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"]}
        self.logs.mkdir(exist_ok=True)
        for name, command in commands.items():
            with open(self.logs / f"{name}-{port}.log", "wb") as log:
                self.processes.append(subprocess.Popen(command, cwd=REPO_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                                       start_new_session=True))
        _wait_for(lambda: _graphql(self.url, WORKSPACE)["workspaceOrError"]["locationEntries"][0]["loadStatus"] == "LOADED",
                  "the code location to load in the webserver")
        return self.url

    def kill(self) -> None:
        for process in self.processes:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait(timeout=30)
        self.processes = []


@pytest.fixture
def services(production_env, tmp_path):
    running = Services(production_env, tmp_path / "logs")
    try:
        yield running
    finally:
        running.kill()


def _materializations(url: str) -> dict[tuple[str, str], list[dict]]:
    return {asset: _graphql(url, MATERIALIZATIONS, {"path": list(asset), "partitions": [PARTITION]})["assetOrError"]["assetMaterializations"]
            for asset in ASSETS}


def _finished_runs(url: str) -> list[dict] | None:
    """Every run of the instance, once none is queued or in flight."""
    runs = _graphql(url, RUNS)["runsOrError"]["results"]
    return runs if {r["status"] for r in runs} <= FINISHED else None


def _metadata(materialization: dict) -> dict:
    return {e["label"]: e.get("intValue", e.get("text")) for e in materialization["metadataEntries"]}


@pytest.mark.timeout(400)
def test_run_history_materializations_and_a_started_schedule_survive_kill_9_of_both_services(services, production_env,
                                                                                             pg_database, simulator):
    # The dataset's automation sensor would request runs of its own, before and after the restart, and on a busy machine
    # a tick begun before the UI could stop it may queue a run after the history was read: it starts stopped here, and
    # is stopped again from the UI, a state stored in the instance that must survive too.
    services.env["SCHOLAR_PIPELINE_DATASET_AUTOMATION"] = "off"
    url = services.start()
    sensor = _graphql(url, SENSOR_STATE, {"selector": AUTOMATION_SENSOR})["sensorOrError"]["sensorState"]
    stopped = _graphql(url, STOP_SENSOR, {"id": sensor["id"]})["stopSensor"]
    assert stopped == {"__typename": "StopSensorMutationResult", "instigationState": {"status": "STOPPED"}}, stopped
    backfill = _launch_and_wait(url, LAUNCH_BACKFILL, {"params": {"assetSelection": [{"path": list(a)} for a in ASSETS],
                                                                  "partitionNames": [PARTITION]}}, seconds=240)
    assert backfill["status"] == "COMPLETED_SUCCESS" and [r["status"] for r in backfill["runs"]] == ["SUCCESS"], backfill
    run_id = backfill["runs"][0]["runId"]
    started = _graphql(url, START_SCHEDULE, {"selector": SCHEDULE})["startSchedule"]
    assert started == {"__typename": "ScheduleStateResult", "scheduleState": {"status": "RUNNING"}}, started

    # What the run landed: exactly the provider's records, recorded in the works materialization.
    day, provider = PARTITION.split("|")
    expected = simulator.apis[provider].record_ids(dt.date.fromisoformat(day), dt.date.fromisoformat(day), SEARCH.text)
    landed = query_db("SELECT provider_id FROM works WHERE partition_date = ? AND provider = ?", [day, provider])
    assert expected and sorted(r[0] for r in landed) == sorted(expected)
    # Any run the sensor asked for on its first tick, before it was stopped, has finished too: nothing is in flight.
    runs_before = _wait_for(lambda: _finished_runs(url), "every run to finish", seconds=120)
    assert run_id in [r["runId"] for r in runs_before]
    materializations_before = _materializations(url)
    for asset, events in materializations_before.items():
        assert [(e["runId"], e["partition"]) for e in events] == [(run_id, PARTITION)], asset
    assert _metadata(materializations_before[ASSETS[1]][0])["dagster/row_count"] == len(expected)

    services.kill()
    restarted_at = time.time()
    url = services.start()

    assert _graphql(url, RUNS)["runsOrError"]["results"] == runs_before
    assert _materializations(url) == materializations_before
    assert _graphql(url, BACKFILL_STATUS, {"id": backfill["backfillId"]})["partitionBackfillOrError"] | {
        "backfillId": backfill["backfillId"]} == backfill
    assert _graphql(url, SCHEDULE_STATE, {"selector": SCHEDULE})["scheduleOrError"]["scheduleState"] == {"status": "RUNNING"}
    assert _graphql(url, SENSOR_STATE, {"selector": AUTOMATION_SENSOR})["sensorOrError"]["sensorState"]["status"] == "STOPPED"
    # The restarted daemon works on the same instance: its scheduler beats into PostgreSQL again.
    _wait_for(lambda: (s := _graphql(url, SCHEDULER_HEARTBEAT)["instance"]["daemonHealth"]["daemonStatus"])["healthy"]
              and s["lastHeartbeatTime"] > restarted_at, "the restarted daemon's scheduler to beat", seconds=120)

    # Stored in PostgreSQL, read back by the instance that deploy/dagster.yaml describes, and nowhere else.
    dagster_home = Path(production_env["DAGSTER_HOME"])
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS
        works = instance.fetch_materializations(dg.AssetKey(list(ASSETS[1])), limit=10).records
        assert [(r.run_id, r.partition_key) for r in works] == [(run_id, PARTITION)]
        assert works[0].asset_materialization.metadata["dagster/row_count"].value == len(expected)
        (state,) = [s for s in instance.all_instigator_state() if s.name == SCHEDULE["scheduleName"]]
        assert state.status == InstigatorStatus.RUNNING
    assert sorted(pg_select(pg_database, "SELECT run_id, status FROM runs")) == sorted((r["runId"], r["status"]) for r in runs_before)
    assert sorted(pg_select(pg_database, "SELECT asset_key, partition FROM event_logs WHERE run_id = %s "
                                       "AND dagster_event_type = 'ASSET_MATERIALIZATION'", [run_id])) == sorted(
        (dg.AssetKey(list(a)).to_string(), PARTITION) for a in ASSETS)
    assert [(dg.deserialize_value(body).name, status) for body, status in pg_select(
        pg_database, "SELECT instigator_body, status FROM instigators WHERE instigator_type = 'SCHEDULE'")] == [
        (SCHEDULE["scheduleName"], "RUNNING")]
    assert [p for p in dagster_home.rglob("*") if p.is_file() and p.read_bytes()[:16] == b"SQLite format 3\x00"] == []


def test_production_config_reads_postgres_from_the_env_and_queues_runs_within_the_local_limits(production_env):
    """deploy/dagster.yaml writes no connection value, and queues runs (the daemon dequeues them) within the same limits
    as the repo's dagster.yaml."""
    local = yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text())["concurrency"]["runs"]
    connection = yaml.safe_load(DEPLOY_DAGSTER_YAML.read_text())["storage"]["postgres"]["postgres_db"]
    assert connection.pop("scheme") == "postgresql+psycopg2"  # SQLAlchemy 2.1 reads a bare `postgresql` as psycopg 3
    assert connection == {field: {"env": name} for field, name in (
        ("hostname", "DAGSTER_PG_HOST"), ("port", "DAGSTER_PG_PORT"), ("username", "DAGSTER_PG_USERNAME"),
        ("password", "DAGSTER_PG_PASSWORD"), ("db_name", "DAGSTER_PG_DB"))}  # read from the environment, no value written
    with dg.DagsterInstance.from_config(production_env["DAGSTER_HOME"]) as instance:
        assert isinstance(instance.run_coordinator, dg.QueuedRunCoordinator)
        queue = instance.get_concurrency_config().run_queue_config
        assert (queue.max_concurrent_runs, queue.tag_concurrency_limits) == (local["max_concurrent_runs"], local["tag_concurrency_limits"])
        assert instance.run_retries_enabled and not instance.run_retries_retry_on_asset_or_op_failure
        assert instance.run_monitoring_enabled
