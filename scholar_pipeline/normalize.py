"""Raw page bytes to rows of the `works` schema: pure, offline, deterministic.

The whole dataset can be rebuilt from the landing zone with this module alone.

Bad values. One odd record must not cost a partition, and no odd value may pass unseen:
- a body that is not the provider's wire format at all fails with `MalformedPage`;
- a record that cannot be a row fails its page with `RecordError`, naming the provider,
  the record's index and place in the page, the field and what is wrong: a record that is
  not an object (`null` in `results`), or one without a usable provider id (OpenAlex `id`,
  Crossref `DOI`), since rows are deduplicated and traced by that id;
- any other value of the wrong type (`cited_by_count: "many"`, `authorships: "abc"`,
  `title: 456`, `primary_location: 7`, a date that is not one) is read as null, so its
  column is NULL (or takes the provider's fallback field), and reported as a
  `FieldProblem`; an element of the wrong type in a list (an author that is not an
  object) is left out of the list and reported;
- a lone surrogate (valid in JSON as `\\ud800`, but no UTF-8 text) is replaced with
  U+FFFD and reported; a control character (C0 other than tab and line ends, U+FFFE,
  U+FFFF) becomes a space and is reported;
- an impossible date (`2024-02-30`, month 13, year 0) is kept as its year, or set to
  NULL when nothing of it holds, and reported;
- a string where Crossref's wire format has a list of strings (`title`,
  `container-title`) is read as a one-element list and reported.
Values are never converted from another type ("5" is not 5): a wrong type means the
provider's format moved, and the report says where.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa

from scholar_pipeline.providers import PROVIDERS
from scholar_pipeline.providers.base import FieldProblem, RecordError
from scholar_pipeline.schema import RECORD_FIELDS

__all__ = ["FieldProblem", "NormalizedPage", "RecordError", "normalize_page", "normalize_page_checked", "normalize_raw_records",
           "record_hash"]


@dataclass(frozen=True)
class NormalizedPage:
    table: pa.Table  # RECORD_FIELDS
    problems: tuple[FieldProblem, ...]  # values set to NULL or repaired, per record and field


def normalize_page_checked(provider: str, raw: bytes) -> NormalizedPage:
    """One raw page of `provider` (for PubMed an efetch page) as rows, with every value that did not fit."""
    return normalize_raw_records(provider, _parser(provider).raw_records(raw))


def normalize_raw_records(provider: str, raw_records: list[Any]) -> NormalizedPage:
    """A page's records as its provider's `raw_records` gives them, as rows: for a caller that needs them raw too."""
    records, problems = _parser(provider).read_raw_records(raw_records)
    for record in records:
        record["record_hash"] = record_hash(record)
    return NormalizedPage(_table(records), tuple(problems))


# The rows as one struct array: a quarter faster than `pa.Table.from_pylist`, which converts each column apart
# (about 20 µs of the 50 µs a page of a few records cost).
_ROW = pa.struct(RECORD_FIELDS)


def _table(records: list[dict[str, Any]]) -> pa.Table:
    """Records (dicts holding every column of RECORD_FIELDS) as a table of RECORD_FIELDS."""
    return pa.Table.from_struct_array(pa.array(records, type=_ROW))


def _parser(provider: str):
    try:
        return PROVIDERS[provider]
    except KeyError:
        raise ValueError(f"no parser for provider {provider!r}; known: {sorted(PROVIDERS)}") from None


def normalize_page(provider: str, raw: bytes) -> pa.Table:
    """One raw page of `provider` (for PubMed an efetch page) as a table of RECORD_FIELDS."""
    return normalize_page_checked(provider, raw).table


def record_hash(record: dict[str, Any]) -> str:
    """sha256 of the normalized record as canonical JSON (sorted keys, dates as ISO strings, compact, UTF-8).

    orjson writes the same bytes as `json.dumps(sort_keys=True, ensure_ascii=False,
    separators=(",", ":"), default=str)` for every value a record holds, ten times faster
    (test_golden_normalization compares them). A lone surrogate, which no UTF-8 can hold,
    is replaced by the readers before it gets here."""
    return hashlib.sha256(orjson.dumps(record, option=orjson.OPT_SORT_KEYS)).hexdigest()
