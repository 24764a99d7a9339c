"""Normalization is pinned to a recorded golden output on every real page (and documented shape): the same rows,
values and record hashes, byte for byte, whatever is done to make it faster.

Record again only on purpose (a change of normalized values, with WORKS_CODE_VERSION moved):
    .venv/bin/python -m scholar_pipeline_tests.test_golden_normalization --record
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import sys
from pathlib import Path

import pytest

from scholar_pipeline.normalize import normalize_page_checked, record_hash
from scholar_pipeline.providers.base import MalformedPage, load_json
from scholar_pipeline_tests.conftest import DATA, real_response

GOLDEN = DATA / "golden"
PAGES = sorted(p for folder in ("real_responses", "documented_shapes") for p in (DATA / folder).glob("*/*")
               if p.suffix in (".json", ".xml"))


def golden_lines(page: Path) -> list[str]:
    """One line per row (every column, sorted keys), then one per value repaired; or the page's refusal."""
    provider = page.parent.name
    try:
        normalized = normalize_page_checked(provider, page.read_bytes())
    except MalformedPage as error:
        return [json.dumps({"refused": type(error).__name__})]
    rows = [json.dumps(row, sort_keys=True, default=str, ensure_ascii=False) for row in normalized.table.to_pylist()]
    problems = [json.dumps({"problem": [p.record_id, p.field, p.value, p.action]}, ensure_ascii=False) for p in normalized.problems]
    return rows + problems


def _golden_path(page: Path) -> Path:
    return GOLDEN / page.relative_to(DATA).with_suffix(".jsonl")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}/{p.name}")
def test_normalized_output_equals_the_recorded_golden_output(page):
    recorded = _golden_path(page).read_text(encoding="utf-8").splitlines()
    assert golden_lines(page) == recorded


def test_every_real_and_documented_page_has_a_golden_output_with_rows():
    assert {_golden_path(p) for p in PAGES} == set(GOLDEN.rglob("*.jsonl"))
    rows = sum(1 for p in PAGES for line in _golden_path(p).read_text().splitlines() if line.startswith('{"abstract"'))
    assert rows > 800  # every record of the recorded pages, as the acceptance run counts them (812) and more


@pytest.mark.parametrize("body", [
    b'{"a": 1, "a": 2}', b'{"x": "\\ud800 lone"}', b'{"n": 9223372036854775807, "m": -9223372036854775808}',
    b'[NaN, Infinity]', b'{"f": 1e400}', b'\xef\xbb\xbf{"bom": true}', '{"utf16": "\u00e9"}'.encode("utf-16"),
    b'{"f": 1.0000000000000002, "g": -0.0, "s": "caf\xc3\xa9 \\u00e9 \\n"}',
])
def test_json_pages_read_exactly_as_the_standard_library_reads_them(body):
    """orjson where it agrees, `json` where orjson refuses."""
    expected = json.loads(body)
    got = load_json("openalex", body)
    assert repr(got) == repr(expected) and type(got) is type(expected)


def test_an_integer_beyond_64_bits_is_never_misread_but_set_to_null_and_reported():
    """The one place orjson reads otherwise (a float): a count that large is NULL and reported, as with `json`."""
    page = json.loads(real_response("openalex/openalexpro_works_filter_ids_cursor_p1.json"))
    page["results"][0]["cited_by_count"] = 123456789012345678901234567890
    normalized = normalize_page_checked("openalex", json.dumps(page).encode())
    assert normalized.table.column("cited_by_count")[0].as_py() is None
    assert [(p.field, p.action) for p in normalized.problems] == [("cited_by_count", "set to NULL")]


def test_record_hashes_are_over_the_bytes_the_standard_library_writes():
    """The canonical JSON of a record from orjson equals `json.dumps`'s, for every kind of character a value can hold."""
    characters = ['"', "\\", "\n", "\r", "\t", "\b", "\f", "\x00", "\x1f", "\x7f", "\u2028", "é", "量", "😀", "/", "<", "&", "'", "\ufffd", "a"]
    rng = random.Random(7)
    for _ in range(2000):
        text = "".join(rng.choice(characters) for _ in range(rng.randint(0, 12)))
        record = {"title": text, "authors": [{"name": text[::-1], "orcid": None, "affiliations": [text]}],
                  "cited_by_count": rng.randint(-2**63, 2**63 - 1), "publication_date": dt.date(2024, 2, 29), "is_oa": True}
        canonical = json.dumps(record, sort_keys=True, default=str, ensure_ascii=False, separators=(",", ":"))
        assert record_hash(record) == hashlib.sha256(canonical.encode()).hexdigest(), repr(text)


def record_golden(pages, golden_path, lines_of) -> None:
    """Write each page's golden file anew (only by hand, with --record, after checking that a change is meant)."""
    for page in pages:
        path = golden_path(page)
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = lines_of(page)
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        print(f"{path.relative_to(DATA)}: {len(lines)} lines")


if __name__ == "__main__" and "--record" in sys.argv:
    record_golden(PAGES, _golden_path, golden_lines)
