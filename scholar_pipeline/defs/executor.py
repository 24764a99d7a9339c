"""Where runs execute their steps: in the run's own process, or on Celery workers on any number of machines.

A saved search's run is one step (`partition_runs.py`), which fetches its providers in
threads of its own, so Dagster's default multiprocess executor would buy no parallelism,
only a Python start and a code load per step: by default steps run in the run's process,
and runs go in parallel as processes (dagster.yaml limits how many at once).

`SCHOLAR_PIPELINE_EXECUTOR=celery` hands every step to dagster-celery's workers instead
(`deploy/`: `scholar-pipeline-service celery-worker`), through the broker and result
backend of DAGSTER_CELERY_BROKER_URL and DAGSTER_CELERY_BACKEND_URL, the same Redis the
workers' celery.yaml names. A worker needs the same DAGSTER_HOME instance (PostgreSQL)
and a warehouse and home it can reach: DuckLake, or the home on shared storage.
"""

import dagster as dg

from scholar_pipeline.settings import executor_name


def run_executor() -> dg.ExecutorDefinition:
    if executor_name() == "celery":
        from dagster_celery import celery_executor

        return celery_executor.configured({"broker": {"env": "DAGSTER_CELERY_BROKER_URL"},
                                           "backend": {"env": "DAGSTER_CELERY_BACKEND_URL"}})
    return dg.in_process_executor


defs = dg.Definitions(executor=run_executor())
