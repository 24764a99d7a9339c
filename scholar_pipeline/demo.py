"""The offline demo: the real pipeline against the provider simulator, then the Dagster UI.

    python -m scholar_pipeline.demo [--days 2] [--port 8900] [--ui-port 3000] [--no-serve]

Starts the simulator on 127.0.0.1, points every provider at it (with placeholder keys for
Springer Nature and CORE, and the slow providers' rates raised), materializes a few days
of every saved search in queries.yaml through the same Dagster jobs the daily schedules
run, one run per search over the days and providers as a schedule tick does (recorded in
the instance under data/dagster_home, so they show up in the UI), prints one line per
partition and what landed in DuckDB, then serves `dg dev` with the simulator
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
from scholar_pipeline.queries import load_saved_searches
from scholar_pipeline.search.query import SearchIndexMissing, search
from scholar_pipeline.settings import PROJECT_ROOT, pipeline_home, queries_file
from scholar_pipeline.simulator import ProviderSimulator
from scholar_pipeline.simulator.server import PLACEHOLDER_KEYS
from scholar_pipeline.warehouse_backends import warehouse_from_env

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

    _stop_on_term_and_hup()
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
        build_dataset()
        print_summary()
        if failed:
            print(f"{failed} partition(s) failed; their errors are above and in the Dagster UI.")
        if not args.no_serve:
            serving = True
            _stop_on_term_and_hup()  # again: the runs in this process gave SIGTERM the handler of SIGINT
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


def _stop_on_term_and_hup() -> None:
    """SIGTERM and SIGHUP stop the demo as Ctrl-C does. Dagster's in-process execution maps SIGTERM to whatever
    handles SIGINT when a run ends, which under nohup, a service manager or CI is SIG_IGN: the demo would then ignore
    SIGTERM."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_stop)


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
    """Run each saved search's daily job once over every day and provider, as a schedule tick does; print one line per
    partition; return how many partitions failed."""
    from scholar_pipeline.definitions import defs
    from scholar_pipeline.defs.saved_searches import (
        SAVED_SEARCHES,
        partition_range_tags,
    )

    definitions = defs()
    failed = 0
    with dg.DagsterInstance.get() as instance:
        for search in SAVED_SEARCHES:
            job = definitions.resolve_job_def(f"{search.name}_daily")
            started = time.monotonic()
            result = job.execute_in_process(instance=instance, run_config=QUIET_RUN_CONFIG, raise_on_error=False,
                                            tags=partition_range_tags(search, days[0], days[-1]))
            rows, errors = _rows_landed(result, dg.AssetKey([search.name, "works"])), _partition_errors(result)
            print(f"  {search.name}: {len(days) * len(search.providers)} partitions in one run, "
                  f"{time.monotonic() - started:.1f} s", flush=True)
            for day in days:
                for provider in search.providers:
                    key = str(dg.MultiPartitionKey({"date": day.isoformat(), "provider": provider}))
                    line = f"{rows[key]:>5} rows landed" if key in rows else f"FAILED: {errors.get(key, errors.get(None, '?'))}"
                    print(f"  {search.name:<20} {key:<20} {line}", flush=True)
            failed += sum(1 for day in days for p in search.providers
                          if str(dg.MultiPartitionKey({"date": day.isoformat(), "provider": p})) not in rows)
    return failed


def build_dataset() -> None:
    """Build group `dataset` once from what landed, as the `dataset_automation` sensor would after these runs."""
    from scholar_pipeline.definitions import defs

    started = time.monotonic()
    with dg.DagsterInstance.get() as instance:
        result = defs().resolve_job_def("dataset").execute_in_process(instance=instance, run_config=QUIET_RUN_CONFIG,
                                                                      raise_on_error=False)
    failed = [check.check_name for check in result.get_asset_check_evaluations() if not check.passed]
    print(f"  dataset: {'built' if result.success else 'FAILED (see the Dagster UI)'} in {time.monotonic() - started:.1f} s"
          + (f"; checks failed: {', '.join(failed)}" if failed else ""), flush=True)


def _rows_landed(result: dg.ExecuteInProcessResult, works_key: dg.AssetKey) -> dict[str, int]:
    return {event.partition: event.materialization.metadata["dagster/row_count"].value
            for event in result.get_asset_materialization_events() if event.materialization.asset_key == works_key}


def _partition_errors(result: dg.ExecuteInProcessResult) -> dict[str | None, str]:
    """The first line of each failed partition's error, by key (None: a failure of the whole run); an interrupted run
    (Ctrl-C) stops the demo instead."""
    errors: dict[str | None, str] = {}
    for event in result.get_step_failure_events():
        data = event.step_failure_data
        if data.error and data.error.cls_name == "DagsterExecutionInterruptedError":
            raise KeyboardInterrupt
        failed = data.user_failure_data.metadata.get("failed_partitions") if data.user_failure_data else None
        if failed is not None:
            errors.update({key: message.splitlines()[0][:160] for key, message in failed.value.items()})
        else:
            errors[None] = f"{data.error.cls_name}: {data.error.message.splitlines()[0][:160]}" if data.error else "failed"
    return errors


def print_summary() -> None:
    warehouse = warehouse_from_env(pipeline_home())
    if not warehouse.exists():
        print(f"\nNothing landed in {warehouse.name}.")
        return
    with warehouse.read_connection() as con:
        rows = con.execute(
            "SELECT query, provider, count(*) AS works, count(doi) AS with_doi, count(abstract) AS with_abstract "
            "FROM works GROUP BY ALL ORDER BY ALL"
        ).fetchall()
        print(f"\n{warehouse.name}, table works:")
        print(f"  {'query':<20} {'provider':<10} {'works':>6} {'with doi':>9} {'with abstract':>14}")
        for query, provider, works, with_doi, with_abstract in rows:
            print(f"  {query:<20} {provider:<10} {works:>6} {with_doi:>9} {with_abstract:>14}")
        landed = con.execute("SELECT count(*) FROM provenance").fetchone()[0]
        print(f"  provenance rows: {landed}")
        tables = {row[0] for row in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        if "unique_works" in tables:
            unique, by_rule = con.execute(
                "SELECT sum(n), string_agg(match_rule || ' ' || n, ', ' ORDER BY n DESC, match_rule) FROM "
                "(SELECT match_rule, count(*) n FROM unique_works GROUP BY ALL)").fetchone()
            print(f"  unique_works: {unique} works (matched by {by_rule}); exports in {pipeline_home() / 'exports'}")
    print_search_example()


def print_search_example() -> None:
    """The best hit of the first saved search's own text, as `scholar-pipeline search` gives it."""
    text = load_saved_searches(queries_file())[0].text
    try:
        hits = search(pipeline_home(), text, limit=1)
    except SearchIndexMissing:
        return
    if hits:
        print(f"  .venv/bin/scholar-pipeline search \"{text}\": {(hits[0].title or hits[0].work_id)[:70]} ({hits[0].year}), ...")


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
