"""The offline demo (`make demo`): short output, rows in DuckDB, runs in the UI's instance, a clean Ctrl-C."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb
import httpx
import pytest

from scholar_pipeline.providers import PROVIDERS
from scholar_pipeline_tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow


@pytest.fixture
def taken_port():
    """A port with a listener on it, as a simulator left running on 8900 would be."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def _demo_env(tmp_path: Path, providers: str) -> dict[str, str]:
    queries = tmp_path / "queries.yaml"
    queries.write_text(f"queries:\n  - {{name: demo_search, text: soil microbiome, providers: [{providers}], start_date: 2024-01-01}}\n")
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("SCHOLAR_PIPELINE_", "DAGSTER_"))}
    return environ | {"SCHOLAR_PIPELINE_HOME": str(tmp_path / "data"), "SCHOLAR_PIPELINE_QUERIES": str(queries)}


def _demo(args: list[str], env: dict[str, str], **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "scholar_pipeline.demo", "--days", "1", *args], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True, **popen)


def _kill_everything_started(demo: subprocess.Popen, marker: str) -> None:
    """The demo's group and dg dev's own group (found by a marker in its command line); children here ignore SIGTERM."""
    groups = {demo.pid} if demo.poll() is None else set()
    groups |= {os.getpgid(pid) for pid in _pids_with(marker)}
    for group in groups:
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass
    demo.wait(timeout=30)


def _pids_with(marker: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode():
                pids.append(int(entry.name))
        except OSError:
            pass
    return pids


PROVIDERS_IN_ORDER = list(PROVIDERS)


def test_demo_prints_one_line_per_partition_and_the_summary_and_lands_the_rows(tmp_path, taken_port):
    demo = _demo(["--no-serve", "--port", str(taken_port)], _demo_env(tmp_path, ", ".join(PROVIDERS_IN_ORDER)))
    try:
        output = demo.communicate(timeout=240)[0]
    finally:
        _kill_everything_started(demo, str(tmp_path))
    assert demo.returncode == 0, output
    lines = output.splitlines()
    assert len(lines) < 40, output
    assert "DEBUG" not in output and "Traceback" not in output, output
    assert lines[0].startswith(f"Port {taken_port} is taken; the provider simulator uses port "), output

    with duckdb.connect(str(tmp_path / "data" / "scholar.duckdb"), read_only=True) as con:
        landed = dict(con.execute("SELECT provider, count(*) FROM works WHERE query = 'demo_search' GROUP BY ALL").fetchall())
        assert con.execute("SELECT count(*) FROM provenance").fetchone()[0] == 7
    assert set(landed) == set(PROVIDERS) and min(landed.values()) > 0  # Springer and CORE with the placeholder keys
    for provider, rows in landed.items():  # e.g. "  demo_search   2024-03-01|openalex   205 rows landed   1.2 s"
        assert any(line.split()[:5] == ["demo_search", f"2024-03-01|{provider}", str(rows), "rows", "landed"] for line in lines), output
    assert "table works:" in output
    assert sum('scholar-pipeline search "soil microbiome": ' in line for line in lines) == 1, output  # the index answers
    assert any(line.split()[:3] == ["demo_search", "crossref", str(landed["crossref"])] for line in lines), output

    # Recorded in the instance the UI serves.
    with dg.DagsterInstance.from_config(str(tmp_path / "data" / "dagster_home")) as instance:
        dataset, run = instance.get_runs()  # newest first: the search's days and providers in one run, then the dataset
        assert run.status == dataset.status == dg.DagsterRunStatus.SUCCESS and dataset.job_name == "dataset"
        assert (run.tags["dagster/asset_partition_range_start"], run.tags["dagster/asset_partition_range_end"]) == (
            f"2024-03-01|{PROVIDERS_IN_ORDER[0]}", f"2024-03-01|{PROVIDERS_IN_ORDER[-1]}")
        works = dg.AssetKey(["demo_search", "works"])
        assert set(instance.get_materialized_partitions(works)) == {f"2024-03-01|{p}" for p in PROVIDERS}


@pytest.mark.parametrize("stop, sigint", [(signal.SIGINT, signal.SIG_DFL), (signal.SIGTERM, signal.SIG_IGN)],
                         ids=["ctrl-c in a terminal", "sigterm with sigint ignored (nohup, a service manager)"])
def test_demo_serves_the_ui_with_its_runs_and_stops_cleanly_on_ctrl_c(tmp_path, taken_port, stop, sigint):
    # A terminal's Ctrl-C reaches a process that handles SIGINT; nohup and service managers start it ignored, and stop
    # it with SIGTERM.
    demo = _demo(["--ui-port", str(taken_port)], _demo_env(tmp_path, "openalex"),
                 preexec_fn=lambda: signal.signal(signal.SIGINT, sigint))
    lines: list[str] = []
    try:
        for line in demo.stdout:
            lines.append(line)
            if line.startswith("Dagster UI ready on "):
                break
        assert lines and lines[-1].startswith("Dagster UI ready on "), "".join(lines)
        url = lines[-1].split()[-1]
        assert url.startswith("http://127.0.0.1:") and not url.endswith(f":{taken_port}"), "".join(lines)
        assert f"Port {taken_port} is taken; the Dagster UI uses port " in "".join(lines)

        data = httpx.post(f"{url}/graphql", timeout=60, json={"query": "{ workspaceOrError { ... on Workspace { locationEntries "
                          "{ loadStatus locationOrLoadError { __typename } } } } runsOrError { ... on Runs { results { status } } } }"}).json()["data"]
        [location] = data["workspaceOrError"]["locationEntries"]
        assert location["loadStatus"] == "LOADED" and location["locationOrLoadError"]["__typename"] == "RepositoryLocation"
        assert data["runsOrError"]["results"] == [{"status": "SUCCESS"}] * 2  # the search's run and the dataset's

        started = time.monotonic()
        demo.send_signal(stop)
        rest = demo.communicate(timeout=60)[0]
        assert time.monotonic() - started < 30
    finally:
        _kill_everything_started(demo, str(tmp_path))  # dg dev's webserver and daemon carry the instance's path
    output = "".join(lines) + rest
    assert demo.returncode == 0, output  # Ctrl-C is the normal way to stop the UI
    assert rest.strip().splitlines() == ["Stopped the Dagster UI and the provider simulator."], output
    assert "Traceback" not in output and "will not be used to configure Dagster" not in output, output
    assert _pids_with(str(tmp_path)) == []  # dg dev's webserver and daemon are gone
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/server_info", timeout=2)
