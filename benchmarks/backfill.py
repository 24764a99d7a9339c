"""Figure 5: backfill overhead. A new saved search backfilled over one year on every provider through `dagster dev`'s
daemon, launched as the UI launches it (GraphQL `launchPartitionBackfill`): total wall time and seconds per partition
(target ≤ 10 min on 2 cores, ≤ 0.25 s per partition).

Rate limits are raised out of the way and the simulated corpus is small (a page or two a
partition), so what is left is the cost of orchestration and landing: runs starting,
code loading, events recorded, a DuckDB transaction, the checks and the audit per
partition. Every partition's landing is then counted in DuckDB's `provenance`.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import httpx

from scholar_pipeline.providers import PROVIDERS
from scholar_pipeline.settings import PROJECT_ROOT
from scholar_pipeline.simulator import Corpus, ProviderSimulator
from scholar_pipeline.simulator.server import PLACEHOLDER_KEYS

FIRST_DAY, DAYS = dt.date(2024, 1, 1), 366
TEXT = "soil microbiome"
UNLIMITED = 1000.0  # requests a second: far above what the runs ask
LAUNCH = """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
    __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }"""
STATUS = """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
    ... on PartitionBackfill { status runs(limit: 1000) { status } } } }"""


def _graphql(url: str, query: str, variables: dict) -> dict:
    return httpx.post(f"{url}/graphql", json={"query": query, "variables": variables}, timeout=120).json()["data"]


def _wait_for(condition, seconds: float, poll: float = 2.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            result = condition()
            if result:
                return result
        except (httpx.TransportError, KeyError, TypeError):
            pass
        time.sleep(poll)
    raise TimeoutError(f"gave up after {seconds} s")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run(days: int = DAYS) -> list[dict]:
    keys = [f"{FIRST_DAY + dt.timedelta(days=n)}|{p}" for n in range(days) for p in PROVIDERS]
    with tempfile.TemporaryDirectory() as root, ProviderSimulator(
            corpus=Corpus(seed=9, min_per_day=1, max_per_day=8), rate_limits=dict.fromkeys(PROVIDERS, UNLIMITED)) as sim:
        root = Path(root)
        (root / "dagster_home").mkdir()
        shutil.copyfile(PROJECT_ROOT / "dagster.yaml", root / "dagster_home" / "dagster.yaml")
        (root / "queries.yaml").write_text(f"queries:\n  - {{name: year_search, text: {TEXT}, providers: [{', '.join(PROVIDERS)}], "
                                           f"start_date: {FIRST_DAY}}}\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCHOLAR_PIPELINE_")} | sim.environ() | PLACEHOLDER_KEYS | {
            "SCHOLAR_PIPELINE_HOME": str(root / "home"), "SCHOLAR_PIPELINE_QUERIES": str(root / "queries.yaml"),
            "DAGSTER_HOME": str(root / "dagster_home"),
        } | {f"SCHOLAR_PIPELINE_{p.upper()}_RATE_LIMIT": str(UNLIMITED) for p in PROVIDERS}
        port = _free_port()
        server = subprocess.Popen([str(Path(sys.executable).parent / "dagster"), "dev", "-h", "127.0.0.1", "-p", str(port)],
                                  cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_for(lambda: httpx.get(f"{url}/server_info", timeout=2).status_code == 200, 180)
            params = {"assetSelection": [{"path": ["year_search", "raw"]}, {"path": ["year_search", "works"]}], "partitionNames": keys}
            started = time.monotonic()
            launched = _wait_for(lambda: _graphql(url, LAUNCH, {"params": params})["launchPartitionBackfill"], 180)
            if launched["__typename"] != "LaunchBackfillSuccess":
                raise RuntimeError(f"the backfill did not launch: {launched}")
            status = _wait_for(lambda: (s := _graphql(url, STATUS, {"id": launched["backfillId"]})["partitionBackfillOrError"])
                               ["status"] != "REQUESTED" and s, 3600)
            wall = time.monotonic() - started
        finally:
            os.killpg(server.pid, signal.SIGKILL)  # its children ignore SIGTERM here
            server.wait(timeout=30)
        with duckdb.connect(str(root / "home" / "scholar.duckdb"), read_only=True) as con:
            landed = con.execute("SELECT count(DISTINCT (provider, partition_date)) FROM provenance").fetchone()[0]
            rows = con.execute("SELECT count(*) FROM works").fetchone()[0]
        requests = sum(len(sim.requests_for(p)) for p in PROVIDERS)
    runs = status["runs"]
    return [{"partitions": len(keys), "partitions_landed": landed, "rows": rows, "requests": requests, "runs": len(runs),
             "runs_failed": sum(r["status"] != "SUCCESS" for r in runs),
             "backfill_status": status["status"], "wall_s": round(wall), "s_per_partition": round(wall / len(keys), 3),
             "target_wall_s": 600}]


if __name__ == "__main__":
    print(run(int(sys.argv[1]) if len(sys.argv) > 1 else DAYS))
