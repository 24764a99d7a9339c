"""The offline demo: the real pipeline against the provider simulator, then `dagster dev`.

    python -m scholar_pipeline.demo [--days 3] [--no-serve]

Starts the simulator on 127.0.0.1, points every provider at it, materializes a few days
of every saved search in queries.yaml through the same Dagster jobs the daily schedules
run (recorded in the instance under data/dagster_home, so they show up in the UI), prints
what landed in DuckDB, then serves `dagster dev` with the simulator still answering.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import subprocess
import sys

from scholar_pipeline.settings import PROJECT_ROOT, pipeline_home
from scholar_pipeline.simulator import ProviderSimulator

FIRST_DAY = dt.date(2024, 3, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the pipeline offline against the provider simulator.")
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--port", type=int, default=8900)
    parser.add_argument("--no-serve", action="store_true", help="stop after the demo runs instead of starting dagster dev")
    args = parser.parse_args()

    with ProviderSimulator(port=args.port) as simulator:
        os.environ.update(simulator.environ())
        dagster_home = prepare_dagster_home()
        print(f"Provider simulator on 127.0.0.1:{simulator.port}; DAGSTER_HOME={dagster_home}")
        run_partitions(days=[FIRST_DAY + dt.timedelta(days=n) for n in range(args.days)])
        print_summary()
        if not args.no_serve:
            print("\nStarting dagster dev on http://127.0.0.1:3000 (Ctrl-C to stop; the simulator stops with it)")
            subprocess.run([sys.executable, "-m", "dagster", "dev", "-h", "127.0.0.1", "-p", "3000"], cwd=PROJECT_ROOT, check=False)


def prepare_dagster_home() -> str:
    """A persistent instance under the data home, configured like the repo's dagster.yaml (pools, run queue)."""
    home = pipeline_home() / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    return str(home)


def run_partitions(days: list[dt.date]) -> None:
    import dagster as dg

    from scholar_pipeline.definitions import defs
    from scholar_pipeline.defs.saved_searches import SAVED_SEARCHES

    definitions = defs()
    with dg.DagsterInstance.get() as instance:
        for search in SAVED_SEARCHES:
            job = definitions.resolve_job_def(f"{search.name}_daily")
            for day in days:
                for provider in search.providers:
                    key = dg.MultiPartitionKey({"date": day.isoformat(), "provider": provider})
                    result = job.execute_in_process(partition_key=key, instance=instance, raise_on_error=True)
                    print(f"  {search.name:<20} {key}  {'ok' if result.success else 'FAILED'}")


def print_summary() -> None:
    import duckdb

    with duckdb.connect(str(pipeline_home() / "scholar.duckdb"), read_only=True) as con:
        rows = con.execute(
            "SELECT query, provider, count(*) AS works, count(doi) AS with_doi, count(abstract) AS with_abstract "
            "FROM works GROUP BY ALL ORDER BY ALL"
        ).fetchall()
        print(f"\nDuckDB {pipeline_home() / 'scholar.duckdb'}, table works:")
        print(f"  {'query':<20} {'provider':<10} {'works':>6} {'with doi':>9} {'with abstract':>14}")
        for query, provider, works, with_doi, with_abstract in rows:
            print(f"  {query:<20} {provider:<10} {works:>6} {with_doi:>9} {with_abstract:>14}")
        landed = con.execute("SELECT count(*) FROM provenance").fetchone()[0]
        print(f"  provenance rows: {landed}")


if __name__ == "__main__":
    main()
