"""Every real page and documented shape, its records damaged at random places, is pinned to a golden output recorded
before normalization was made faster: the same rows and the same problems reported (field, value, action, order).

The recorded pages themselves hold no problem, so test_golden_normalization cannot tell whether a faster reader still
reports what the old one did. Here each raw record (as its provider's `raw_records` gives it, so XML providers too)
gets a few values of the wrong type, lone surrogates, control characters, impossible dates and elements of the wrong
type in lists, chosen by a seeded random generator; the provider ids are left alone, since a record without one fails
the whole page. The same pages check that the rows table (one struct array) is the table Arrow's row-wise conversion
built before.

Record again only on purpose (a change of normalized values or of what is reported):
    .venv/bin/python -m scholar_pipeline_tests.test_golden_damaged_records --record
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
import sys
import zlib
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from scholar_pipeline.normalize import _table, normalize_raw_records, record_hash
from scholar_pipeline.providers import PROVIDERS
from scholar_pipeline.providers.base import MalformedPage, RecordError
from scholar_pipeline.schema import RECORD_FIELDS
from scholar_pipeline_tests.conftest import DATA
from scholar_pipeline_tests.test_golden_normalization import record_golden

GOLDEN = DATA / "golden_damaged"
PAGES = sorted(p for folder in ("real_responses", "documented_shapes") for p in (DATA / folder).glob("*/*")
               if p.suffix in (".json", ".xml"))
IDS = {"openalex": "id", "crossref": "DOI", "arxiv": "id", "pubmed": "PMID", "plos": "id", "springer": "identifier", "core": "id"}
DAMAGES_PER_RECORD = 6
VARIANTS = 4  # damaged copies of each page
MAX_DEPTH = 7  # PubMed's deepest field read is 9 levels down, most are within 7


def _places(value: Any, depth: int = 0) -> list[tuple[Any, Any]]:
    """(container, key or index) of every value inside `value`, down to MAX_DEPTH."""
    if depth >= MAX_DEPTH:
        return []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    places = []
    for key, item in items:
        places.append((value, key))
        places += _places(item, depth + 1)
    return places


def _damage(value: Any, rng: random.Random) -> Any:
    """A value the reader must repair, refuse or report, chosen by the kind of `value`."""
    if isinstance(value, bool):
        return rng.choice(["yes", 1])
    if isinstance(value, int):
        return rng.choice(["many", 2**70, True, 1.5])
    if isinstance(value, str):
        cut = rng.randrange(len(value) + 1)
        choices = [456, [value], None, value[:cut] + "\ud800" + value[cut:], value[:cut] + "\x07\x1f" + value[cut:],
                   value[:cut] + "\ufffe" + value[cut:]]
        if value[:4].isdigit():
            choices += ["2024-02-30", "2024-13", "0000-01-01", value[:4] + "-3-1", "12024-01-05", "n/a"]
        return rng.choice(choices)
    if isinstance(value, list):
        damaged = list(value)
        damaged.insert(rng.randrange(len(damaged) + 1), rng.choice([7, "loose", None, [], {"x": 1}]))
        return rng.choice(["abc", damaged, damaged, []])
    if isinstance(value, dict):
        return rng.choice([7, "abc", [value], {}])
    return rng.choice(["abc", 7, [], {}])


def damaged_records(provider: str, records: list[Any], seed: int) -> list[Any]:
    """`records` with DAMAGES_PER_RECORD values of each replaced by `_damage`; the provider id never."""
    rng = random.Random(seed)
    records = copy.deepcopy(records)
    for record in records:
        for _ in range(DAMAGES_PER_RECORD):
            places = [(c, k) for c, k in _places(record) if not (c is record and k == IDS[provider])]
            if places:
                container, key = rng.choice(places)
                container[key] = _damage(container[key], rng)
    return records


def golden_lines(page: Path) -> list[str]:
    """For each of VARIANTS damaged copies of the page's records: a line naming it, one per row (the sha256 of every
    column, sorted keys, as test_golden_normalization writes a row), then one per value repaired; or the page's refusal."""
    provider = page.parent.name
    try:
        raw = PROVIDERS[provider].raw_records(page.read_bytes())
    except MalformedPage as error:
        return [json.dumps({"refused": type(error).__name__})]
    lines = []
    for variant in range(VARIANTS):
        lines.append(json.dumps({"variant": variant}))
        seed = zlib.crc32(f"{page.relative_to(DATA)} {variant}".encode())
        try:
            normalized = normalize_raw_records(provider, damaged_records(provider, raw, seed))
        except RecordError as error:
            lines.append(json.dumps({"record_error": str(error)}, ensure_ascii=False))
            continue
        rows = (json.dumps(row, sort_keys=True, default=str, ensure_ascii=False) for row in normalized.table.to_pylist())
        lines += [json.dumps({"row": hashlib.sha256(row.encode()).hexdigest()}) for row in rows]
        lines += [json.dumps({"problem": [p.record_id, p.field, p.value, p.action]}, ensure_ascii=False) for p in normalized.problems]
    return lines


def _golden_path(page: Path) -> Path:
    return GOLDEN / page.relative_to(DATA).with_suffix(".jsonl")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}/{p.name}")
def test_damaged_records_normalize_and_report_as_recorded(page):
    recorded = _golden_path(page).read_text(encoding="utf-8").splitlines()
    assert golden_lines(page) == recorded


@pytest.mark.parametrize("page", PAGES, ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}/{p.name}")
def test_the_rows_table_is_the_table_from_pylist_builds(page):
    """normalize.py builds the table from one struct array; Arrow's row-wise conversion gives the same table, types
    and nulls included, on every page and on its damaged copies (nulls in every column)."""
    provider = page.parent.name
    try:
        raw = PROVIDERS[provider].raw_records(page.read_bytes())
    except MalformedPage:
        return
    for records in [raw] + [damaged_records(provider, raw, seed) for seed in range(VARIANTS)]:
        try:
            rows = PROVIDERS[provider].read_raw_records(records).records
        except RecordError:
            continue
        for row in rows:
            row["record_hash"] = record_hash(row)
        expected = pa.Table.from_pylist(rows, schema=RECORD_FIELDS)
        assert _table(rows).equals(expected, check_metadata=True) and _table(rows).schema == RECORD_FIELDS


def test_the_damage_reaches_every_provider_and_every_kind_of_report():
    lines = [line for page in PAGES for line in _golden_path(page).read_text(encoding="utf-8").splitlines()]
    problems = [json.loads(line)["problem"] for line in lines if line.startswith('{"problem"')]
    assert len(problems) > 1000
    actions = {action.split(" kept as its ")[0] for _, _, _, action in problems}
    assert {"set to NULL", "left out of the list", "replaced lone surrogate with U+FFFD", "replaced control characters with spaces",
            "read as a one-element list", "impossible date"} <= actions
    reported = {page.parent.name for page in PAGES if '{"problem"' in _golden_path(page).read_text(encoding="utf-8")}
    assert reported == set(PROVIDERS)


if __name__ == "__main__" and "--record" in sys.argv:
    record_golden(PAGES, _golden_path, golden_lines)
