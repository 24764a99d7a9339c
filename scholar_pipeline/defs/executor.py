"""Runs execute their steps in the run's own process.

A saved search's run is one step (`partition_runs.py`), which fetches its providers in
threads of its own, so Dagster's default multiprocess executor would buy no parallelism,
only a Python start and a code load per step. Runs go in parallel as processes
(dagster.yaml limits how many at once).
"""

import dagster as dg

defs = dg.Definitions(executor=dg.in_process_executor)
