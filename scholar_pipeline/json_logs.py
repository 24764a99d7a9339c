"""Run logs as JSON lines on stderr, for a log shipper: `SCHOLAR_PIPELINE_LOG_FORMAT=json`.

Dagster gives no way to set one logger for every job of a code location; an instance's
`python_logs.dagster_handler_config` adds handlers to every run's Dagster logger instead
(deploy/dagster.yaml names this one). It writes nothing unless the variable asks for JSON,
so one instance config serves both. Each line carries the run id, the job, the step, the
asset and partition an event is about (else the run's partition or partition range, from
its tags), the event type and the message.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os

from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG, PARTITION_NAME_TAG

from scholar_pipeline.client.masking import mask_credentials

LOG_FORMAT_ENV = "SCHOLAR_PIPELINE_LOG_FORMAT"


def json_logs_on(environ=os.environ) -> bool:
    raw = (environ.get(LOG_FORMAT_ENV) or "text").strip().lower()
    if raw not in ("text", "json"):
        raise ValueError(f"{LOG_FORMAT_ENV}={raw!r} must be `text` or `json`")
    return raw == "json"


class JsonLinesHandler(logging.StreamHandler):
    """One JSON object per Dagster log record, when SCHOLAR_PIPELINE_LOG_FORMAT=json; silent otherwise."""

    def __init__(self, stream=None):
        super().__init__(stream)
        self.on = json_logs_on()

    def emit(self, record: logging.LogRecord) -> None:
        if self.on:
            super().emit(record)

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(log_fields(record), default=str)


def log_fields(record: logging.LogRecord) -> dict:
    meta = getattr(record, "dagster_meta", None) or {}
    event = meta.get("dagster_event")
    tags = meta.get("job_tags") or {}
    asset_key = getattr(event, "asset_key", None) if event is not None else None
    partition = getattr(event, "partition", None) if event is not None else None
    if partition is None:
        partition = tags.get(PARTITION_NAME_TAG)
    if partition is None and ASSET_PARTITION_RANGE_START_TAG in tags:
        partition = f"{tags[ASSET_PARTITION_RANGE_START_TAG]}...{tags.get(ASSET_PARTITION_RANGE_END_TAG, '')}"
    return {
        "time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
        "level": record.levelname,
        "run_id": meta.get("run_id"),
        "job": meta.get("job_name"),
        "step": meta.get("step_key"),
        "asset": asset_key.to_user_string() if asset_key is not None else None,
        "partition": partition,
        "event": event.event_type_value if event is not None else None,
        "message": mask_credentials(str(meta.get("orig_message") or record.getMessage())),
    }
