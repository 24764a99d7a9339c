"""The offline demo: the real pipeline against the provider simulator, then the Dagster UI.

    python -m scholar_pipeline.demo [--days 2] [--port 8900] [--ui-port 3000] [--no-serve]

Starts the simulator on 127.0.0.1, points every provider at it (with placeholder keys for
Springer Nature and CORE, and the slow providers' rates raised), materializes a few days
of every saved search in queries.yaml through the same Dagster jobs the daily schedules
run (recorded in the instance under data/dagster_home, so they show up in the UI), prints
one line per partition and what landed in DuckDB, then serves `dg dev` with the simulator
still answering until Ctrl-C. A port that is taken is replaced by a free one, with a notice.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import httpx

from scholar_pipeline.instance import BrokenInstanceError, default_dagster_home, prepare_instance
from scholar_pipeline.settings import PROJECT_ROOT, pipeline_home, queries_file
from scholar_pipeline.simulator import ProviderSimulator
from scholar_pipeline.simulator.server import PLACEHOLDER_KEYS

FIRST_DAY = dt.date(2024, 3, 1)
SIMULATOR_PORT = 8900
UI_PORT = 3000
# The runs' console output: warnings and errors only. Every event is still recorded in the instance for the UI.
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
# Requests a second to the providers whose real limits would make the demo wait minutes (arXiv one every 3 s,
# PLOS and CORE 10 a minute): the pipeline's setting, and twice that at the simulator.
DEMO_RATE = 20.0
SLOW_PROVIDERS = ("arxiv", "pubmed", "plos", "springer", "core")


class Stop(BaseException):
    """SIGTERM or SIGHUP, handled like Ctrl-C (a BaseException, so that no run counts it as its own failure)."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the pipeline offline against the provider simulator, then serve the Dagster UI.")
    parser.add_argument("--days", type=int, default=2, help="days from 2024-03-01 to materialize (default 2)")
    parser.add_argument("--port", type=int, default=SIMULATOR_PORT, help=f"simulator port (default {SIMULATOR_PORT}; a free one if taken)")
    parser.add_argument("--ui-port", type=int, default=UI_PORT, help=f"Dagster UI port (default {UI_PORT}; a free one if taken)")
    parser.add_argument("--no-serve", action="store_true", help="stop after the runs instead of serving the Dagster UI")
    args = parser.parse_args(argv)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_stop)
    simulator, serving = None, False
    try:
        simulator = _start_simulator(args.port)
        os.environ.update(demo_environ(simulator))
        # Absolute paths, so that `dg dev` (run from the Dagster home) sees the same files.
        os.environ["SCHOLAR_PIPELINE_HOME"] = str(pipeline_home())
        os.environ["SCHOLAR_PIPELINE_QUERIES"] = str(queries_file())
        dagster_home = prepare_instance(default_dagster_home())
        os.environ["DAGSTER_HOME"] = str(dagster_home)
        print(f"Provider simulator on 127.0.0.1:{simulator.port}; Dagster instance {dagster_home}")
        failed = run_partitions(days=[FIRST_DAY + dt.timedelta(days=n) for n in range(args.days)])
        print_summary()
        if failed:
            print(f"{failed} run(s) failed; their errors are above and in the Dagster UI.")
        if not args.no_serve:
            serving = True
            if serve(dagster_home, args.ui_port, simulator) != 0:
                return 1
        return 1 if failed else 0
    except (KeyboardInterrupt, Stop, dg.DagsterExecutionInterruptedError):
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the cleanup
        if simulator:
            simulator.stop()
            simulator = None
        if serving:  # Ctrl-C is how the UI is meant to stop: a normal exit (and no error line from make)
            print("\nStopped the Dagster UI and the provider simulator.")
            return 0
        print("\nInterrupted; the provider simulator is down.")
        return 130
    except BrokenInstanceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        if simulator:
            simulator.stop()


def _raise_stop(signum, frame):
    raise Stop(signal.Signals(signum).name)


def _port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def demo_environ(simulator: ProviderSimulator) -> dict[str, str]:
    """Every provider pointed at the simulator, placeholder keys for Springer and CORE, the slow providers' rates raised."""
    rates = {f"SCHOLAR_PIPELINE_{name.upper()}_RATE_LIMIT": str(DEMO_RATE) for name in SLOW_PROVIDERS}
    return simulator.environ() | PLACEHOLDER_KEYS | rates


def _start_simulator(port: int) -> ProviderSimulator:
    rate_limits = {name: 2 * DEMO_RATE for name in SLOW_PROVIDERS}
    try:
        return ProviderSimulator(port=port, rate_limits=rate_limits).start()
    except OSError:
        simulator = ProviderSimulator(port=0, rate_limits=rate_limits).start()
        print(f"Port {port} is taken; the provider simulator uses port {simulator.port} instead.")
        return simulator


def run_partitions(days: list[dt.date]) -> int:
    """Run each saved search's daily job for every day and provider, one line each; return how many failed."""
    from scholar_pipeline.definitions import defs
    from scholar_pipeline.defs.saved_searches import SAVED_SEARCHES

    definitions = defs()
    failed = 0
    with dg.DagsterInstance.get() as instance:
        for search in SAVED_SEARCHES:
            job = definitions.resolve_job_def(f"{search.name}_daily")
            works_key = dg.AssetKey([search.name, "works"])
            for day in days:
                for provider in search.providers:
                    key = dg.MultiPartitionKey({"date": day.isoformat(), "provider": provider})
                    started = time.monotonic()
                    try:
                        # raise_on_error: an interrupt (Ctrl-C) must stop the demo, not count as one failed run.
                        result = job.execute_in_process(partition_key=key, instance=instance, run_config=QUIET_RUN_CONFIG, raise_on_error=True)
                        outcome = f"{_rows_landed(result, works_key):>5} rows landed"
                        line = f"{outcome}  {time.monotonic() - started:5.1f} s"
                    except Exception as error:  # its events, the traceback included, were logged above and are in the UI
                        failed += 1
                        line = f"FAILED after {time.monotonic() - started:.1f} s: {type(error).__name__}: {str(error).splitlines()[0][:160]}"
                    print(f"  {search.name:<20} {key!s:<20} {line}", flush=True)
    return failed


def _rows_landed(result: dg.ExecuteInProcessResult, works_key: dg.AssetKey) -> int:
    return sum(
        event.materialization.metadata["dagster/row_count"].value
        for event in result.get_asset_materialization_events()
        if event.materialization.asset_key == works_key
    )


def print_summary() -> None:
    import duckdb

    database = pipeline_home() / "scholar.duckdb"
    if not database.exists():
        print(f"\nNothing landed in {database}.")
        return
    with duckdb.connect(str(database), read_only=True) as con:
        rows = con.execute(
            "SELECT query, provider, count(*) AS works, count(doi) AS with_doi, count(abstract) AS with_abstract "
            "FROM works GROUP BY ALL ORDER BY ALL"
        ).fetchall()
        print(f"\nDuckDB {database}, table works:")
        print(f"  {'query':<20} {'provider':<10} {'works':>6} {'with doi':>9} {'with abstract':>14}")
        for query, provider, works, with_doi, with_abstract in rows:
            print(f"  {query:<20} {provider:<10} {works:>6} {with_doi:>9} {with_abstract:>14}")
        landed = con.execute("SELECT count(*) FROM provenance").fetchone()[0]
        print(f"  provenance rows: {landed}")


def serve(dagster_home: Path, ui_port: int, simulator: ProviderSimulator) -> int:
    """`dg dev` on the repo's workspace until Ctrl-C (then its whole process group is stopped); its exit code.

    It runs from the Dagster home: in the repo root it would warn that the repo's dagster.yaml
    is ignored (DAGSTER_HOME is set), although the home holds a copy of it.
    """
    if not _port_is_free(ui_port):
        requested, ui_port = ui_port, _free_port()
        print(f"Port {requested} is taken; the Dagster UI uses port {ui_port} instead.")
    exports = " ".join(f"{name}={value}" for name, value in demo_environ(simulator).items())
    print(f"\nShell runs against this simulator (see README): export {exports}")
    print(f"Starting the Dagster UI on http://127.0.0.1:{ui_port} (Ctrl-C stops it and the simulator) ...", flush=True)
    command = [str(Path(sys.executable).parent / "dg"), "dev", "-w", str(PROJECT_ROOT / "workspace.yaml"),
               "-h", "127.0.0.1", "-p", str(ui_port), "--log-level", "warning"]
    # Its own process group: Ctrl-C reaches only this process, which then stops the whole group.
    process = subprocess.Popen(command, cwd=dagster_home, process_group=0)
    try:
        if _wait_until_serving(process, ui_port):
            print(f"Dagster UI ready on http://127.0.0.1:{ui_port}", flush=True)
        process.wait()
        print(f"dg dev exited with code {process.returncode}; stopping the simulator.")
        return process.returncode
    finally:
        _stop_process_group(process)


def _wait_until_serving(process: subprocess.Popen, port: int, seconds: float = 180) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/server_info", timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    return False


def _stop_process_group(process: subprocess.Popen, grace_seconds: float = 10) -> None:
    """SIGINT (dagster dev's own clean shutdown), then SIGKILL for whatever in the group is left."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=grace_seconds)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


if __name__ == "__main__":
    sys.exit(main())
