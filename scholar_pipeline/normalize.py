"""Raw page bytes to rows of the `works` schema: pure, offline, deterministic.

The whole dataset can be rebuilt from the landing zone with this module alone.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pyarrow as pa

from scholar_pipeline.providers import PROVIDERS
from scholar_pipeline.schema import RECORD_FIELDS


def normalize_page(provider: str, raw: bytes) -> pa.Table:
    """One raw page of `provider` (for PubMed an efetch page) as a table of RECORD_FIELDS."""
    try:
        parser = PROVIDERS[provider]
    except KeyError:
        raise ValueError(f"no parser for provider {provider!r}; known: {sorted(PROVIDERS)}") from None
    records = parser.parse_records(raw)
    for record in records:
        record["record_hash"] = record_hash(record)
    return pa.Table.from_pylist(records, schema=RECORD_FIELDS)


def record_hash(record: dict[str, Any]) -> str:
    """sha256 of the normalized record as canonical JSON (sorted keys, dates as ISO strings)."""
    canonical = json.dumps(record, sort_keys=True, default=str, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
