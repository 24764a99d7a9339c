"""Runs execute their steps in the run's own process, one after another.

A partition's run is a chain (`<name>/raw`, then `<name>/works`, then its checks), so
Dagster's default multiprocess executor would buy no parallelism, only a Python start and a
code load per step: seconds per run, which a backfill of hundreds of partitions pays in
full. Partitions run in parallel as separate runs (dagster.yaml limits how many at once).
"""

import dagster as dg

defs = dg.Definitions(executor=dg.in_process_executor)
