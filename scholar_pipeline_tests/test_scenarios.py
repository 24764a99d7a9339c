"""Scenario tests: the contract's shell command in parallel, `dagster dev` with a backfill, the shared acceptance run."""

import datetime as dt
import json
import os
import shutil
import socket
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb
import filelock
import httpx
import pytest

from scholar_pipeline.simulator import Corpus, ProviderSimulator
from scholar_pipeline.simulator.common import SimResponse
from scholar_pipeline_tests.conftest import REPO_ROOT
from scholar_pipeline_tests.helpers import SEARCH, files_containing, home, max_in_any_window, query_db

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
ACCEPTANCE = REPO_ROOT.parent / "shared" / "acceptance" / "run.sh"
NEW_SEARCH_TEXT = "soil microbiome"  # the saved search `dagster dev` serves


def _materialize_command(partition: str) -> list[str]:
    return [str(BIN / "dagster"), "asset", "materialize", "-m", "scholar_pipeline.definitions",
            "--select", "group:sim_search", "--partition", partition]


def _run_in_parallel(partitions: list[str]) -> list[subprocess.CompletedProcess]:
    """Start every run at once, as a backfill does (the instance's storage is created first, as `dagster dev` would)."""
    dg.DagsterInstance.get().dispose()
    processes = [subprocess.Popen(_materialize_command(p), cwd=REPO_ROOT, env=dict(os.environ), stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True) for p in partitions]
    outputs = [p.communicate(timeout=300)[0] for p in processes]
    return [subprocess.CompletedProcess(p.args, p.returncode, out) for p, out in zip(processes, outputs)]


def test_concurrent_runs_share_the_rate_limit_and_never_collide_in_duckdb(pipeline_env, simulator):
    days = ["2024-03-01", "2024-03-02", "2024-03-03"]
    runs = _run_in_parallel([f"{day}|crossref" for day in days])
    for run in runs:
        assert run.returncode == 0, run.stdout[-3000:]
    arrivals = sorted(r.at for r in simulator.requests_for("crossref"))
    assert len(arrivals) >= 12  # enough traffic for the limit to matter
    # Across three processes: SCHOLAR_PIPELINE_CROSSREF_RATE_LIMIT (4/s) on average, and never the provider's own
    # limit (5/s) in any second. Sends are spaced at the limiter; what the provider sees moves with each process's
    # scheduling between that check and the bytes leaving, which on a loaded 2-core machine is tens of milliseconds.
    assert (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]) <= 4
    assert max_in_any_window(arrivals) <= simulator.rate_limits["crossref"] == 5
    assert all(r.status == 200 for r in simulator.requests_for("crossref"))  # and the provider never had to say 429
    for day in days:
        expected = simulator.apis["crossref"].record_ids(dt.date.fromisoformat(day), dt.date.fromisoformat(day), SEARCH.text)
        landed = [r[0] for r in query_db("SELECT provider_id FROM works WHERE partition_date = ?", [day])]
        assert sorted(landed) == sorted(expected)


def test_a_range_from_the_shell_lands_every_partition_of_it_in_one_run(pipeline_env, simulator):
    """`--partition-range` (the single-run backfill policy allows it): days × providers between the two keys."""
    dg.DagsterInstance.get().dispose()
    command = [*_materialize_command("")[:-2], "--partition-range", "2024-03-01|openalex...2024-03-02|crossref"]
    run = subprocess.run(command, cwd=REPO_ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert query_db("SELECT count(DISTINCT run_id) FROM provenance") == [(1,)]
    for day in ("2024-03-01", "2024-03-02"):
        for provider in ("openalex", "crossref"):
            expected = simulator.apis[provider].record_ids(dt.date.fromisoformat(day), dt.date.fromisoformat(day), SEARCH.text)
            landed = query_db("SELECT provider_id FROM works WHERE partition_date = ? AND provider = ?", [day, provider])
            assert sorted(r[0] for r in landed) == sorted(expected), f"{day}|{provider}"


def test_shell_command_leaves_no_api_key_under_home_or_dagster_home(pipeline_env, simulator, monkeypatch):
    monkeypatch.setenv("OPENALEX_API_KEY", "sk-scenario-key-42")
    monkeypatch.setenv("CROSSREF_PLUS_TOKEN", "sk-scenario-token-43")
    runs = _run_in_parallel(["2024-03-01|openalex", "2024-03-01|crossref"])
    for run in runs:
        assert run.returncode == 0, run.stdout[-3000:]
        assert "sk-scenario" not in run.stdout
    assert {r.params["api_key"][0] for r in simulator.requests_for("openalex")} == {"sk-scenario-key-42"}
    assert {r.headers["Crossref-Plus-API-Token"] for r in simulator.requests_for("crossref")} == {"Bearer sk-scenario-token-43"}
    assert query_db("SELECT count(*) FROM works")[0][0] > 0
    for root in (home(), Path(pipeline_env["DAGSTER_HOME"])):
        assert files_containing(root, b"sk-scenario") == []


def test_dg_check_defs_passes(pipeline_env):
    result = subprocess.run([str(BIN / "dg"), "check", "defs"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All definitions loaded successfully" in result.stdout + result.stderr


# The rates `dagster dev`'s runs are configured with (SCHOLAR_PIPELINE_<P>_RATE_LIMIT), and the simulated providers' own
# limits: a request past one of these in any second would get the provider's 429. Low enough, with small pages, that a
# run fetches faster than this and the limiter holds it back (the limit binds); high enough that a backfill of sixteen
# partitions is not slowed by it (its runs' start-up costs far more than their fetches).
DEV_RATE_LIMITS = {"openalex": 8, "crossref": 5}
DEV_PAGE_SIZE = 5


@pytest.fixture(scope="module")
def dagster_dev(tmp_path_factory):
    """`dagster dev` (webserver and daemon) on the repo's workspace and dagster.yaml, providers simulated."""
    root = tmp_path_factory.mktemp("dagster_dev")
    (root / "dagster_home").mkdir()
    shutil.copyfile(REPO_ROOT / "dagster.yaml", root / "dagster_home" / "dagster.yaml")
    queries = root / "queries.yaml"
    queries.write_text(f"queries:\n  - {{name: new_search, text: {NEW_SEARCH_TEXT}, providers: [openalex, crossref], start_date: 2024-03-01}}\n")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with ProviderSimulator(corpus=Corpus(seed=5, min_per_day=60, max_per_day=120), rate_limits=DEV_RATE_LIMITS) as simulator:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCHOLAR_PIPELINE_")} | simulator.environ() | {
            "SCHOLAR_PIPELINE_HOME": str(root / "home"), "SCHOLAR_PIPELINE_QUERIES": str(queries),
            "DAGSTER_HOME": str(root / "dagster_home"),
            # The tests here time the simulator's requests per second, the simulator in this process: the dataset
            # sensor's runs (its first tick builds the missing group) would share the two cores with the backfills.
            "SCHOLAR_PIPELINE_DATASET_AUTOMATION": "off",
        } | {f"SCHOLAR_PIPELINE_{p.upper()}_{setting}": str(value) for p, limit in DEV_RATE_LIMITS.items()
             for setting, value in (("RATE_LIMIT", limit), ("PAGE_SIZE", DEV_PAGE_SIZE))}
        process = subprocess.Popen([str(BIN / "dagster"), "dev", "-h", "127.0.0.1", "-p", str(port)], cwd=REPO_ROOT, env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_for(lambda: httpx.get(f"{url}/server_info", timeout=2).status_code == 200, "the webserver to answer")
            yield url, simulator, root / "home", root / "dagster_home"
        finally:
            os.killpg(process.pid, signal.SIGKILL)  # children here ignore SIGTERM
            process.wait(timeout=30)


def _wait_for(condition, what: str, seconds: float = 180):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            result = condition()
            if result:
                return result
        except httpx.TransportError:
            pass
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def _graphql(url: str, query: str, variables: dict | None = None) -> dict:
    return httpx.post(f"{url}/graphql", json={"query": query, "variables": variables or {}}, timeout=60).json()["data"]


def test_code_location_loads_in_a_webserver_and_lists_the_assets(dagster_dev):
    url, _, _, _ = dagster_dev
    query = """{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus
                   locationOrLoadError { __typename ... on PythonError { message } } } } }
                 assetNodes { assetKey { path } groupName } }"""
    data = _wait_for(lambda: (d := _graphql(url, query))["workspaceOrError"]["locationEntries"][0]["loadStatus"] == "LOADED" and d,
                     "the code location to load")
    (entry,) = data["workspaceOrError"]["locationEntries"]
    assert entry["name"] == "scholar_pipeline"
    assert entry["locationOrLoadError"]["__typename"] == "RepositoryLocation", json.dumps(entry)
    assets = {("/".join(n["assetKey"]["path"]), n["groupName"]) for n in data["assetNodes"]}
    assert assets == {("new_search/raw", "new_search"), ("new_search/works", "new_search"), ("dataset/unique_works", "dataset"),
                      ("dataset/review_counts", "dataset"), ("dataset/monitoring", "dataset"), ("dataset/exports", "dataset"),
                      ("dataset/search_index", "dataset")}


LAUNCH_BACKFILL = """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
    __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }"""
BACKFILL_STATUS = """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
    ... on PartitionBackfill { id status partitionNames runs(limit: 200) { runId status startTime endTime } } } }"""
# What DuckDB says when a second process opens the file a writer holds, and what the warehouse says when it had to wait
# for (or gave up on) such a holder: none of it may appear in a backfill's logs.
DUCKDB_LOCK_MESSAGES = (b"Could not set lock", b"Conflicting lock", b"WarehouseBusy", b"waiting for another process to release")


def _launch_and_wait(url: str, mutation: str, variables: dict, seconds: float = 540) -> dict:
    """Launch a backfill (or its re-execution) through GraphQL, as the UI does, and wait for the daemon to finish it."""
    launched = _wait_for(lambda: next(iter(_graphql(url, mutation, variables).values())), "the backfill to launch")
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    return _wait_for(
        lambda: (s := _graphql(url, BACKFILL_STATUS, {"id": launched["backfillId"]})["partitionBackfillOrError"])["status"]
        not in ("REQUESTED",) and s, "the backfill to finish", seconds=seconds,
    ) | {"backfillId": launched["backfillId"]}


def _landed_exactly(con, simulator, day: str, provider: str) -> bool:
    landed = [r[0] for r in con.execute(
        "SELECT provider_id FROM works WHERE query = 'new_search' AND partition_date = ? AND provider = ?", [day, provider]
    ).fetchall()]
    expected = simulator.apis[provider].record_ids(dt.date.fromisoformat(day), dt.date.fromisoformat(day), NEW_SEARCH_TEXT)
    return len(landed) == len(set(landed)) and sorted(landed) == sorted(expected)


def _overlapping(simulator, providers) -> bool:
    """Whether the providers' requests overlapped in time: they were fetched in parallel, not one after the other."""
    spans = [(min(t), max(t)) for t in ([r.at for r in simulator.requests_for(p)] for p in providers)]
    return max(first for first, _ in spans) < min(last for _, last in spans)


@pytest.mark.timeout(600)
def test_backfill_of_a_new_saved_search_over_a_date_range_lands_every_partition(dagster_dev):
    """Sixteen partitions (eight days of two providers) in a run per provider, the two at once: every partition lands
    exactly the provider's records, no run meets the DuckDB file lock, and no provider ever sees more than its rate in
    any second. (Providers in parallel as threads of one run: test_ranged_runs.)"""
    url, simulator, home_dir, dagster_home = dagster_dev
    days = [f"2024-03-{d:02d}" for d in range(1, 9)]
    providers = ("openalex", "crossref")
    params = {"assetSelection": [{"path": ["new_search", "raw"]}, {"path": ["new_search", "works"]}],
              "partitionNames": [f"{day}|{provider}" for day in days for provider in providers]}
    started = time.monotonic()
    status = _launch_and_wait(url, LAUNCH_BACKFILL, {"params": params})
    assert status["status"] == "COMPLETED_SUCCESS" and {r["status"] for r in status["runs"]} == {"SUCCESS"}, status
    runs = status["runs"]
    print(f"backfill of {len(params['partitionNames'])} partitions: {len(runs)} runs, {time.monotonic() - started:.0f} s")
    assert len(runs) == 2, "not a run per provider"
    assert _overlapping(simulator, providers), "the providers were fetched one after the other"

    with duckdb.connect(str(home_dir / "scholar.duckdb"), read_only=True) as con:
        for day in days:
            for provider in providers:
                assert _landed_exactly(con, simulator, day, provider), f"{day}|{provider}: rows differ from the provider's records"
        assert con.execute("SELECT count(*) FROM provenance WHERE partition_date <= '2024-03-08'").fetchone()[0] == 16

    # Every run's event log (SQLite under DAGSTER_HOME) and captured stdout/stderr (compute logs), read as stored data;
    # the scan does reach them: each run's log says how many rows it landed.
    logged = {name for path in files_containing(dagster_home, b"rows in `works`") for name in (path.stem, *path.parts)}
    assert {r["runId"] for r in status["runs"]} <= logged
    for message in DUCKDB_LOCK_MESSAGES:
        assert files_containing(dagster_home, message) == [], f"{message!r} in a run's logs"

    for provider, limit in DEV_RATE_LIMITS.items():
        served = simulator.requests_for(provider)
        assert served and {r.status for r in served} == {200}, f"{provider} answered {sorted({r.status for r in served})}"
        # max_in_any_window: the most requests in any half-open second [t, t + 1) (the fullest such window starts at a
        # request), the window the simulator counts in too. At most the configured rate: the limit held across the
        # runs' threads and processes. At least one below it: the runs asked faster than that, so the limit bound.
        busiest = max_in_any_window([r.at for r in served])
        print(f"{provider}: {len(served)} requests, at most {busiest} in any second (limit {limit})")
        assert limit - 1 <= busiest <= limit


def _requests_for_day(simulator, day: str) -> int:
    """Requests for one day, at either provider (Crossref names it in `filter`, OpenAlex in `filter` too)."""
    return sum(day in r.params.get("filter", [""])[0] for p in ("openalex", "crossref") for r in simulator.requests_for(p))


REEXECUTE_BACKFILL = """mutation($params: ReexecutionParams!) { reexecutePartitionBackfill(reexecutionParams: $params) {
    __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }"""


@pytest.mark.timeout(600)
def test_a_backfill_partition_that_fails_is_named_the_others_land_and_the_retry_redoes_only_it(dagster_dev):
    """One partition of a backfill's run fails (the provider refuses its day with a 400): the run's other partitions land
    and are recorded, the failure names the key, and re-executing the backfill from failure fetches that key alone."""
    url, simulator, home_dir, dagster_home = dagster_dev
    days = [f"2024-03-{d:02d}" for d in range(10, 14)]
    providers, broken = ("openalex", "crossref"), ("2024-03-12", "crossref")
    crossref = simulator.apis["crossref"]
    serve = crossref.routes["/works"]
    crossref.routes["/works"] = lambda params: (
        SimResponse.json(400, {"status": "failed", "message-type": "validation-failure", "message": ["refused"]})
        if f"from-pub-date:{broken[0]}" in params.get("filter", [""])[0] else serve(params))
    try:
        params = {"assetSelection": [{"path": ["new_search", "raw"]}, {"path": ["new_search", "works"]}],
                  "partitionNames": [f"{day}|{provider}" for day in days for provider in providers]}
        status = _launch_and_wait(url, LAUNCH_BACKFILL, {"params": params})
    finally:
        crossref.routes["/works"] = serve
    assert status["status"] == "COMPLETED_FAILED" and "FAILURE" in {r["status"] for r in status["runs"]}, status
    with duckdb.connect(str(home_dir / "scholar.duckdb"), read_only=True) as con:
        for day in days:
            for provider in providers:
                if (day, provider) != broken:
                    assert _landed_exactly(con, simulator, day, provider), f"{day}|{provider}"
        assert con.execute("SELECT count(*) FROM works WHERE partition_date = ? AND provider = ?", list(broken)).fetchone()[0] == 0
    failed_key = "|".join(broken)
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        failures = [record.event_log_entry.dagster_event.step_failure_data.user_failure_data
                    for run in status["runs"] if run["status"] == "FAILURE"
                    for record in instance.get_records_for_run(run["runId"], of_type=dg.DagsterEventType.STEP_FAILURE).records]
    assert [list(f.metadata["failed_partitions"].value) for f in failures] == [[failed_key]]
    assert f"{failed_key}: crossref / saved search 'new_search' / {broken[0]}: page 1: " in failures[0].description

    requests_before = {day: _requests_for_day(simulator, day) for day in days}
    retried = _launch_and_wait(url, REEXECUTE_BACKFILL, {"params": {"parentRunId": status["backfillId"], "strategy": "FROM_FAILURE"}})
    assert retried["status"] == "COMPLETED_SUCCESS", retried
    assert retried["partitionNames"] == [failed_key], retried["partitionNames"]
    refetched = [day for day in days if _requests_for_day(simulator, day) != requests_before[day]]
    assert refetched == [broken[0]], "a partition that landed was fetched again"
    with duckdb.connect(str(home_dir / "scholar.duckdb"), read_only=True) as con:
        assert _landed_exactly(con, simulator, *broken)


@pytest.mark.skipif(not ACCEPTANCE.exists(), reason="the shared acceptance script sits beside the repository")
def test_shared_acceptance_on_real_recorded_responses():
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHOLAR_PIPELINE_") and k != "PROVIDERS"}  # all in its manifest
    env.update(PATH=f"{BIN}:{env.get('PATH', '')}")
    result = subprocess.run(["bash", str(ACCEPTANCE)], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "records 812/812" in result.stdout and "key leaks 0" in result.stdout


def test_a_run_killed_during_the_duckdb_write_does_not_block_the_next_one(pipeline_env, simulator):
    """kill -9 while holding the writer position: the rerun must get through, and land the clean result."""
    shutil.copyfile(REPO_ROOT / "dagster.yaml", Path(pipeline_env["DAGSTER_HOME"]) / "dagster.yaml")
    assert _run_in_parallel(["2024-03-01|openalex"])[0].returncode == 0  # DuckDB and the instance exist
    lock = filelock.FileLock(str(home() / "locks" / "duckdb_writer.lock"))
    reader = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1], read_only=True); "
                               "print('open', flush=True); time.sleep(600)", str(home() / "scholar.duckdb")],
                              stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert reader.stdout.readline().strip() == "open"  # the writer will wait inside its write position
    victim = subprocess.Popen(_materialize_command("2024-03-02|openalex"), cwd=REPO_ROOT, env=dict(os.environ),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_for(lambda: _held(lock), "the run to take the DuckDB writer position", seconds=240)
    finally:
        os.killpg(victim.pid, signal.SIGKILL)
        os.killpg(reader.pid, signal.SIGKILL)
        victim.wait(timeout=30)
        reader.wait(timeout=30)

    rerun = subprocess.run(_materialize_command("2024-03-02|openalex"), cwd=REPO_ROOT, env=dict(os.environ),
                           capture_output=True, text=True, timeout=240)

    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    expected = simulator.apis["openalex"].record_ids(dt.date(2024, 3, 2), dt.date(2024, 3, 2), SEARCH.text)
    landed = [r[0] for r in query_db("SELECT provider_id FROM works WHERE query = ? AND provider = 'openalex' "
                                     "AND partition_date = DATE '2024-03-02'", [SEARCH.name])]
    assert len(landed) == len(set(landed)), "duplicated rows"  # count(*) = count(distinct provider_id)
    assert sorted(landed) == sorted(expected), "rows lost or foreign"
    assert not _held(lock)  # the rerun let go of the writer position too


def _held(lock: filelock.FileLock) -> bool:
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        return True
    lock.release()
    return False
