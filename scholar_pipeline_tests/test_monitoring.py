"""`dataset/monitoring`: new works per saved search, day and provider, their chart, and the freshness of yesterday."""

from __future__ import annotations

import base64
import datetime as dt
import io
import random
import re

import duckdb
import pyarrow as pa
import pytest
from PIL import Image

from scholar_pipeline.dataset.monitoring import (
    ANY_PROVIDER, DAILY_NEW_WORKS_SCHEMA, chart_markdown, daily_new_works, freshness_metadata, late_partitions,
    summary_markdown,
)
from scholar_pipeline.providers import PROVIDERS
from scholar_pipeline.queries import SavedSearch
from scholar_pipeline.schema import UNIQUE_WORKS_SCHEMA
from scholar_pipeline.warehouse import ensure_tables

MAR = {day: dt.date(2024, 3, day) for day in range(1, 6)}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# tab10, in the registry's order: the colour each provider keeps in every chart.
TAB10 = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75), (227, 119, 194)]


def _source(query: str, provider: str, day: int, provider_id: str | None = None) -> dict:
    return {"query": query, "provider": provider, "provider_id": provider_id or f"{provider}:{query}:{day}",
            "partition_date": MAR[day], "record_hash": f"hash-{provider_id or provider}-{day}"}


def _unique_works(con: duckdb.DuckDBPyConnection, works: dict[str, list[dict]]) -> None:
    """Table `unique_works` with the real columns, one row per work id and its sources (the other columns NULL)."""
    con.register("empty_unique_works", UNIQUE_WORKS_SCHEMA.empty_table())
    con.execute("CREATE TABLE unique_works AS SELECT * FROM empty_unique_works")
    rows = pa.Table.from_pylist(
        [{"work_id": work_id, "title": f"work {work_id}", "queries": sorted({s["query"] for s in sources}), "sources": sources}
         for work_id, sources in works.items()],
        schema=UNIQUE_WORKS_SCHEMA,
    )
    con.register("rows", rows)
    con.execute("INSERT INTO unique_works SELECT * FROM rows")


@pytest.fixture
def con():
    """Two saved searches' works over three days of March 2024 (a third search, `empty`, found nothing):

    - w1: found by openalex and crossref on the 1st;
    - w2: openalex on the 1st, arxiv again on the 3rd (not new then);
    - w3: two pubmed records of one work on the 3rd (one finding);
    - w4: llm openalex on the 2nd and ocean crossref on the 3rd (new for each search);
    - w5: its sources listed latest first: crossref on the 3rd, openalex on the 2nd.
    """
    connection = duckdb.connect()
    _unique_works(connection, {
        "w1": [_source("llm", "openalex", 1), _source("llm", "crossref", 1)],
        "w2": [_source("llm", "openalex", 1, "W2"), _source("llm", "arxiv", 3)],
        "w3": [_source("llm", "pubmed", 3, "111"), _source("llm", "pubmed", 3, "222")],
        "w4": [_source("llm", "openalex", 2), _source("ocean", "crossref", 3)],
        "w5": [_source("llm", "crossref", 3, "C5"), _source("llm", "openalex", 2, "W5")],
    })
    yield connection
    connection.close()


def _rows(table: pa.Table) -> list[tuple]:
    return [(r["query"], r["partition_date"].day, r["provider"], r["new_works"]) for r in table.to_pylist()]


def test_new_works_count_each_work_once_per_search_on_its_first_day(con):
    table = daily_new_works(con)
    assert table.schema == DAILY_NEW_WORKS_SCHEMA
    assert _rows(table) == [
        ("llm", 1, ANY_PROVIDER, 2), ("llm", 1, "crossref", 1), ("llm", 1, "openalex", 2),  # w1 by both providers, w2
        ("llm", 2, ANY_PROVIDER, 2), ("llm", 2, "openalex", 2),  # w4, and w5 whose crossref finding came later
        ("llm", 3, ANY_PROVIDER, 1), ("llm", 3, "pubmed", 1),  # w3's two pubmed records; w2 (arxiv) is not new
        ("ocean", 3, ANY_PROVIDER, 1), ("ocean", 3, "crossref", 1),  # w4 is new for the second search too
    ]


def test_a_window_never_makes_an_old_work_new(con):
    assert _rows(daily_new_works(con, first=MAR[3])) == [
        ("llm", 3, ANY_PROVIDER, 1), ("llm", 3, "pubmed", 1), ("ocean", 3, ANY_PROVIDER, 1), ("ocean", 3, "crossref", 1),
    ]
    assert _rows(daily_new_works(con, first=MAR[2], last=MAR[2])) == [("llm", 2, ANY_PROVIDER, 2), ("llm", 2, "openalex", 2)]
    assert daily_new_works(con, first=MAR[4]).num_rows == 0


def test_no_works_yet_gives_an_empty_table_and_no_chart():
    connection = duckdb.connect()
    _unique_works(connection, {})
    table = daily_new_works(connection)
    assert table.num_rows == 0 and table.schema == DAILY_NEW_WORKS_SCHEMA
    assert chart_markdown(table) == summary_markdown(table) == "_no new works in this window_"


def _png(markdown: str) -> bytes:
    match = re.fullmatch(r"!\[[^\]]+\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", markdown)
    assert match, markdown[:200]
    png = base64.b64decode(match.group(1), validate=True)
    assert png.startswith(PNG_SIGNATURE)
    return png


def _shows(png: bytes, colour: tuple[int, int, int], pixels: int = 50) -> bool:
    """Whether at least `pixels` pixels have about this colour (the PNG has a palette, so a colour may move a little)."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    return sum(count for count, pixel in image.getcolors(maxcolors=1 << 20)
               if max(abs(a - b) for a, b in zip(pixel, colour)) <= 8) >= pixels


def test_chart_is_a_png_with_a_panel_per_search_and_a_colour_per_provider(con):
    png = _png(chart_markdown(daily_new_works(con)))
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size == (720, 352)  # 9 in wide; 0.6 in of legend + 1.9 in per search, at 80 dpi
    names = list(PROVIDERS)
    for provider in ("openalex", "crossref", "arxiv", "pubmed", "springer"):
        # A short window is drawn as bars, so each provider with a new work shows its colour over an area;
        # arxiv found nothing new and springer nothing at all.
        assert _shows(png, TAB10[names.index(provider)]) == (provider in ("openalex", "crossref", "pubmed")), provider


def test_chart_of_one_day_reads_back(con):
    png = _png(chart_markdown(daily_new_works(con, first=MAR[1], last=MAR[1])))
    image = Image.open(io.BytesIO(png))
    image.load()
    assert image.size == (720, 200)  # one search
    assert _shows(png, TAB10[list(PROVIDERS).index("openalex")]) and _shows(png, TAB10[list(PROVIDERS).index("crossref")])
    assert not _shows(png, TAB10[list(PROVIDERS).index("pubmed")])  # its work came on the 3rd


def test_chart_of_a_year_of_seven_providers_stays_small():
    """A year of three searches on all seven providers, with counts that vary from day to day."""
    randomness = random.Random(8)
    days = [dt.date(2024, 1, 1) + dt.timedelta(days=d) for d in range(365)]
    rows = [{"query": query, "partition_date": day, "provider": provider, "new_works": randomness.randint(1, 60)}
            for query in ("llm_evaluation", "ocean_acidification", "protein_folding") for day in days
            for provider in (ANY_PROVIDER, *PROVIDERS)]
    png = _png(chart_markdown(pa.Table.from_pylist(rows, schema=DAILY_NEW_WORKS_SCHEMA)))
    image = Image.open(io.BytesIO(png))
    image.load()
    assert image.size == (720, 504)
    assert len(png) < 150_000, len(png)


def test_summary_shows_the_last_days_with_zeros(con):
    assert summary_markdown(daily_new_works(con), days=2) == "\n".join([
        "| search | day | new works | openalex | crossref | pubmed |",
        "|---|---|---:|---:|---:|---:|",
        "| llm | 2024-03-03 | 1 | 0 | 0 | 1 |",
        "| llm | 2024-03-02 | 2 | 2 | 0 | 0 |",
        "| ocean | 2024-03-03 | 1 | 0 | 1 | 0 |",
        "| ocean | 2024-03-02 | 0 | 0 | 0 | 0 |",
    ])


# ---------------------------------------------------------------------------------------------------------------------
# Freshness of yesterday's partitions.

TODAY = MAR[4]  # yesterday is the 3rd
LLM = SavedSearch(name="llm", text="large language model evaluation", providers=["openalex", "crossref", "pubmed"],
                  start_date=MAR[1])
OCEAN = SavedSearch(name="ocean", text="ocean acidification", providers=["crossref", "arxiv"], start_date=MAR[3])
LATER = SavedSearch(name="later", text="coral reefs", providers=["openalex"], start_date=TODAY)  # no partition of the 3rd


def _landed(con: duckdb.DuckDBPyConnection, query: str, provider: str, day: int, rows: int = 5) -> None:
    at = dt.datetime(2024, 3, 4, 4, 10, tzinfo=dt.timezone.utc)
    con.execute(
        "INSERT INTO provenance (query, provider, partition_date, manifest_path, input_hash, output_hash, schema_version, "
        "code_version, retrieved_at, landed_at, rows_landed) VALUES (?, ?, ?, 'm.json', 'in', 'out', 'works-v1', 'v1', ?, ?, ?)",
        [query, provider, MAR[day], at, at, rows],
    )


@pytest.fixture
def warehouse():
    connection = duckdb.connect()
    ensure_tables(connection)
    yield connection
    connection.close()


def test_nothing_is_late_when_every_partition_of_yesterday_landed(warehouse):
    for provider in LLM.providers:
        _landed(warehouse, "llm", provider, 3)
    _landed(warehouse, "ocean", "crossref", 3)
    _landed(warehouse, "ocean", "arxiv", 3, rows=0)  # a day without a work is on time
    assert late_partitions(warehouse, [LLM, OCEAN, LATER], TODAY) == []
    metadata = freshness_metadata([], [LLM, OCEAN, LATER], TODAY)
    assert {key: value.value for key, value in metadata.items()} == {
        "day_checked": "2024-03-03", "partitions_expected": 5, "partitions_late": 0}


def test_late_partitions_are_exactly_the_missing_ones_of_yesterday(warehouse):
    _landed(warehouse, "llm", "openalex", 3)
    _landed(warehouse, "llm", "pubmed", 3)
    _landed(warehouse, "llm", "crossref", 2)  # the day before does not count
    _landed(warehouse, "ocean", "crossref", 2)
    _landed(warehouse, "other", "arxiv", 3)  # a search no longer in the file
    late = late_partitions(warehouse, [LLM, OCEAN, LATER], TODAY)
    assert [(p.query, p.partition_key) for p in late] == [
        ("llm", "2024-03-03|crossref"), ("ocean", "2024-03-03|crossref"), ("ocean", "2024-03-03|arxiv")]
    assert {p.day for p in late} == {MAR[3]}
    # One provider missing points at its failure in the tick's run; a whole search missing at the schedule.
    assert "crossref did not" in late[0].action and "run llm@2024-03-04" in late[0].action
    assert "schedule ocean_daily_schedule is on" in late[1].action
    assert "--select 'group:ocean' --partition '2024-03-03|arxiv'" in late[2].action

    metadata = freshness_metadata(late, [LLM, OCEAN, LATER], TODAY)
    assert metadata["partitions_expected"].value == 5 and metadata["partitions_late"].value == 3
    table = metadata["late_partitions"].value.splitlines()
    assert table[:2] == ["| search | partition | what to do |", "|---|---|---|"]
    assert [line.split(" | ")[:2] for line in table[2:]] == [
        ["| llm", "`2024-03-03\\|crossref`"], ["| ocean", "`2024-03-03\\|crossref`"], ["| ocean", "`2024-03-03\\|arxiv`"]]
    assert all(line.count(" | ") == 2 for line in table[2:])  # every | inside a cell is escaped


def test_every_partition_is_late_where_nothing_ever_landed():
    """A fresh warehouse has no `provenance` table yet."""
    late = late_partitions(duckdb.connect(), [LLM, LATER], TODAY)
    assert [p.partition_key for p in late] == ["2024-03-03|openalex", "2024-03-03|crossref", "2024-03-03|pubmed"]
