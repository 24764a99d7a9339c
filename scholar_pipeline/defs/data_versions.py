"""Data-version tags for materializations recorded as events, one per partition of a run of many.

Dagster derives an asset's data version from its output; a run of many partitions records
each partition as an `AssetMaterialization` event instead, which carries versions only in
its tags. These are the tags Dagster writes for an output (dagster 1.13,
`execute_step._build_data_version_tags`), so staleness in the UI works as for a run of one.
"""

from __future__ import annotations

import dagster as dg
from dagster._core.definitions.data_version import (
    CODE_VERSION_TAG,
    DATA_VERSION_IS_USER_PROVIDED_TAG,
    DATA_VERSION_TAG,
    DEFAULT_DATA_VERSION,
    compute_logical_data_version,
    get_input_data_version_tag,
    get_input_event_pointer_tag,
)


def source_version_tags(data_version: str, code_version: str) -> dict[str, str]:
    """An asset with no inputs whose version we compute ourselves (the raw fetch: the hash of what its records say)."""
    return {CODE_VERSION_TAG: code_version, DATA_VERSION_TAG: data_version, DATA_VERSION_IS_USER_PROVIDED_TAG: "true"}


def derived_version_tags(code_version: str, inputs: dict[dg.AssetKey, dg.EventLogRecord]) -> dict[str, str]:
    """An asset whose version follows its code and the versions of the materializations it read, as Dagster computes it."""
    versions = {key: recorded_version(record) for key, record in inputs.items()}
    tags = {CODE_VERSION_TAG: code_version}
    for key, record in inputs.items():
        tags[get_input_data_version_tag(key)] = versions[key].value
        tags[get_input_event_pointer_tag(key)] = str(record.storage_id)
    tags[DATA_VERSION_TAG] = compute_logical_data_version(code_version, versions).value
    return tags


def recorded_version(record: dg.EventLogRecord) -> dg.DataVersion:
    value = record.asset_materialization.tags.get(DATA_VERSION_TAG) if record.asset_materialization else None
    return dg.DataVersion(value) if value else DEFAULT_DATA_VERSION
