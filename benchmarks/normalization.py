"""Figure 3: normalization records/s per provider on the recorded pages, beside the bare-parse ceiling.

The ceiling is the fastest parse of the same bytes alone (orjson for JSON, lxml for XML):
what no normalization can beat. Springer Nature and CORE have no recorded answer, so their
pages are the documented shapes (a few records: their figures are rough).

Where the time goes, in milliseconds for all of a provider's pages: `parse_ms` the page
into raw records (the provider's `raw_records`: the JSON parse, or the XML parse and each
element read into a dict), `read_ms` the records' fields read and checked
(`read_raw_records`), `rows_ms` the record hashes and the Arrow table (normalize.py's
`_table`, timed apart). Each is its own best round, so they need not add up to the total.

`best_share_of_ceiling` is the share a normalization would reach if reading the fields cost
nothing: the bare parse, then only what every row needs under the contract (its record hash
and its place in an Arrow table, `rows_ms`). Where it is below the target, no field reading
can meet it.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import orjson
from lxml import etree

from scholar_pipeline.normalize import _table, normalize_page_checked, record_hash
from scholar_pipeline.providers import PROVIDERS
from scholar_pipeline.providers.base import MalformedPage

DATA = Path(__file__).resolve().parent.parent / "scholar_pipeline_tests" / "data"
MIN_SECONDS = 1.0  # each figure repeats its work for at least this long, and keeps the best round


def _pages() -> dict[str, list[bytes]]:
    """Each provider's pages that hold records (PubMed's esearch answers hold none)."""
    pages: dict[str, list[bytes]] = defaultdict(list)
    for folder in ("real_responses", "documented_shapes"):
        for path in sorted((DATA / folder).glob("*/*")):
            if path.suffix in (".json", ".xml"):
                try:
                    normalize_page_checked(path.parent.name, path.read_bytes())
                except MalformedPage:
                    continue
                pages[path.parent.name].append(path.read_bytes())
    return pages


def _best_seconds(work) -> float:
    """The fastest of repeated rounds of `work`, repeated for at least MIN_SECONDS (a busy machine slows some rounds)."""
    best, spent = float("inf"), 0.0
    while spent < MIN_SECONDS:
        started = time.perf_counter()
        work()
        took = time.perf_counter() - started
        best, spent = min(best, took), spent + took
    return best


def _bare_parse(body: bytes) -> None:
    if body.lstrip()[:1] == b"<":
        etree.fromstring(body)
    else:
        orjson.loads(body)


def run() -> list[dict]:
    rows = []
    for provider, pages in _pages().items():
        parser = PROVIDERS[provider]
        raw = [parser.raw_records(body) for body in pages]
        records = sum(normalize_page_checked(provider, body).table.num_rows for body in pages)
        ours = _best_seconds(lambda: [normalize_page_checked(provider, body) for body in pages])
        ceiling = _best_seconds(lambda: [_bare_parse(body) for body in pages])
        parse = _best_seconds(lambda: [parser.raw_records(body) for body in pages])
        read = _best_seconds(lambda: [parser.read_raw_records(page) for page in raw])
        read_pages = [parser.read_raw_records(page).records for page in raw]
        hashes = _best_seconds(lambda: [record_hash(record) for page in read_pages for record in page])
        for record in (record for page in read_pages for record in page):
            record["record_hash"] = record_hash(record)
        tables = _best_seconds(lambda: [_table(page) for page in read_pages])
        rows.append({"provider": provider, "pages": len(pages), "records": records,
                     "records_per_s": round(records / ours), "bare_parse_records_per_s": round(records / ceiling),
                     "share_of_ceiling": round(ceiling / ours, 3),
                     "best_share_of_ceiling": round(ceiling / (ceiling + hashes + tables), 3),
                     "parse_ms": round(parse * 1e3, 3), "read_ms": round(read * 1e3, 3), "rows_ms": round((hashes + tables) * 1e3, 3)})
    return rows
