"""`unique_works` from hand-made `works` rows: each rule merges what it should, and nothing else."""

from __future__ import annotations

import datetime as dt
import hashlib
import random

import duckdb
import pyarrow as pa
import pytest

from scholar_pipeline.dataset.unique_works import build_unique_works, family_name, normalized_title
from scholar_pipeline.schema import UNIQUE_WORKS_SCHEMA, WORKS_SCHEMA

DAY = dt.date(2024, 5, 14)


def row(provider: str, provider_id: str, query: str = "q1", day: dt.date = DAY, **values) -> dict:
    """A `works` row: every column NULL unless given; the record hash made of its identity and values."""
    record = {name: None for name in WORKS_SCHEMA.names} | {"authors": []}
    record |= {"query": query, "provider": provider, "partition_date": day, "provider_id": provider_id,
               "publication_date": DAY, "publication_date_precision": "day", "raw_page_sha256": "0" * 64,
               "retrieved_at": dt.datetime(2024, 5, 15, tzinfo=dt.timezone.utc)}
    record |= values
    record["record_hash"] = hashlib.sha256(repr(sorted((k, str(v)) for k, v in record.items())).encode()).hexdigest()
    return record


def author(name: str) -> dict:
    return {"name": name, "orcid": None, "affiliations": []}


def unique_works(rows: list[dict]) -> list[dict]:
    con = duckdb.connect()
    con.register("rows", pa.Table.from_pylist(rows, schema=WORKS_SCHEMA))
    con.execute("CREATE TABLE works AS SELECT * FROM rows")
    build_unique_works(con)
    return con.execute("SELECT * FROM unique_works").fetch_arrow_table().to_pylist()


def sources_of(work: dict) -> list[tuple[str, str, str]]:
    return [(s["query"], s["provider"], s["provider_id"]) for s in work["sources"]]


def only(works: list[dict], **where) -> dict:
    found = [w for w in works if all(w[k] == v for k, v in where.items())]
    assert len(found) == 1, (where, works)
    return found[0]


def test_one_doi_at_three_providers_is_one_work_with_the_best_values_of_each():
    works = unique_works([
        row("openalex", "W1", doi="10.1/abc", title="Soil microbes", abstract="Short.", cited_by_count=12,
            is_oa=True, oa_url="https://oa.example/abc", authors=[author("Ana Berg")]),
        row("crossref", "10.1/abc", doi="10.1/abc", title="Soil Microbes", abstract="A much longer abstract.",
            cited_by_count=9, is_oa=None, venue="Ecology", authors=[author("Ana Berg"), author("Kwame Eze")]),
        row("springer", "10.1/abc", doi="10.1/abc", title="Soil microbes!", is_oa=False, license="cc-by"),
    ])
    assert len(works) == 1
    work = works[0]
    assert work["match_rule"] == "doi" and work["doi"] == "10.1/abc"
    assert work["work_id"] == "W" + hashlib.sha256(b"doi:10.1/abc").hexdigest()[:24]  # its anchor, however it was found
    assert work["title"] == "Soil Microbes"  # Crossref first
    assert work["abstract"] == "A much longer abstract."  # the richest
    assert work["cited_by_count"] == 12  # OpenAlex's
    assert work["is_oa"] is True and work["oa_url"] == "https://oa.example/abc" and work["license"] == "cc-by"
    assert [a["name"] for a in work["authors"]] == ["Ana Berg", "Kwame Eze"]
    assert sources_of(work) == [("q1", "crossref", "10.1/abc"), ("q1", "openalex", "W1"), ("q1", "springer", "10.1/abc")]
    assert work["queries"] == ["q1"]


def test_an_arxiv_preprint_in_two_versions_and_its_journal_version_are_one_work():
    works = unique_works([
        row("arxiv", "2401.01234v1", arxiv_id="2401.01234", title="Graph nets for soil", work_type="preprint"),
        row("arxiv", "2401.01234v2", arxiv_id="2401.01234", title="Graph nets for soil (revised)", work_type="preprint"),
        row("crossref", "10.5/journal", doi="10.5/journal", arxiv_id="2401.01234", title="Graph nets for soil",
            work_type="article", venue="Journal"),
        row("openalex", "W9", doi="10.48550/arxiv.2401.01234", arxiv_id="2401.01234", title="Graph nets for soil"),
    ])
    assert len(works) == 1
    work = works[0]
    assert work["match_rule"] == "arxiv_id"
    assert work["doi"] == "10.5/journal"  # the journal's DOI before arXiv's
    assert work["arxiv_id"] == "2401.01234" and work["work_type"] == "article" and work["venue"] == "Journal"
    assert len(work["sources"]) == 4


def test_a_pubmed_record_without_doi_joins_openalex_by_pmid_and_the_rule_names_the_weakest_link():
    works = unique_works([
        row("pubmed", "38000001", pmid="38000001", title="Anxiety in adolescents"),
        row("openalex", "W5", pmid="38000001", pmcid="PMC9000001", title="Anxiety in adolescents."),
        row("core", "77", pmcid="PMC9000001", title="Anxiety in adolescents"),
    ])
    assert len(works) == 1
    # PubMed joined OpenAlex by PMID, CORE joined them by PMCID: the weakest link needed is the PMCID.
    assert works[0]["match_rule"] == "pmcid" and works[0]["pmid"] == "38000001" and works[0]["pmcid"] == "PMC9000001"


def test_near_identical_titles_stay_apart_and_the_same_title_written_otherwise_merges():
    first = [author("Émilie Färber")]
    works = unique_works([
        row("openalex", "W1", title="Urban heat islands and health: Part I", authors=first),
        row("core", "1", title="Urban heat islands and health: Part II", authors=first),
        row("openalex", "W2", title="Coral reef dynamics under warming", authors=[author("Emilie Farber")]),
        row("core", "2", title="CORAL-REEF DYNAMICS UNDER WARMING.", authors=[author("É. Färber")]),
    ])
    assert len(works) == 3
    merged = only(works, match_rule="title_year_author")
    assert sources_of(merged) == [("q1", "core", "2"), ("q1", "openalex", "W2")]
    assert merged["work_id"] == "W" + hashlib.sha256(b"record:core:2").hexdigest()[:24]
    assert {w["title"] for w in works if w["match_rule"] == "none"} == {
        "Urban heat islands and health: Part I", "Urban heat islands and health: Part II"}


@pytest.mark.parametrize("other", [
    {"publication_date": dt.date(2023, 5, 14)},  # another year
    {"authors": [author("Ana Berg")]},  # another first author
    {"doi": "10.9/other"},  # a DOI of its own against the first one's
    {"title": "Editorial"},  # too short a title to tell works apart
])
def test_the_title_rule_needs_year_author_and_no_contradicting_id(other):
    base = {"title": "Coral reef dynamics under warming", "authors": [author("Ingrid Ito")]}
    first = base | {"doi": "10.9/one"} | ({"title": "Editorial"} if "title" in other else {})
    works = unique_works([row("openalex", "W1", **first), row("core", "1", **(base | other))])
    assert len(works) == 2 and {w["match_rule"] for w in works} == {"none"}


def test_the_same_record_found_by_two_searches_and_on_two_days_is_one_work():
    works = unique_works([
        row("openalex", "W7", query="soil", title="Soil carbon"),
        row("openalex", "W7", query="carbon", title="Soil carbon"),
        row("openalex", "W7", query="carbon", day=DAY + dt.timedelta(days=1), title="Soil carbon"),
    ])
    assert len(works) == 1
    assert works[0]["match_rule"] == "provider_id" and works[0]["queries"] == ["carbon", "soil"]
    assert [s["partition_date"] for s in works[0]["sources"]] == [DAY, DAY + dt.timedelta(days=1), DAY]


def test_the_table_is_the_same_whatever_the_order_of_the_rows_of_works():
    rows = [row(p, f"{p}-{n}", query=q, doi=f"10.1/{n % 5}" if n % 3 else None, pmid=str(100 + n % 4) if n % 2 else None,
                title=f"Work number {n % 7} about soils", authors=[author("Ana Berg")], abstract="x" * (n % 6))
            for n in range(40) for p in ("openalex", "crossref") for q in ("a", "b")]
    shuffled = rows[:]
    random.Random(3).shuffle(shuffled)
    first, second = unique_works(rows), unique_works(shuffled)
    assert first == second
    assert pa.Table.from_pylist(first, schema=UNIQUE_WORKS_SCHEMA).equals(pa.Table.from_pylist(second, schema=UNIQUE_WORKS_SCHEMA))
    assert sum(len(w["sources"]) for w in first) == len(rows)


def test_a_doi_named_by_two_preprints_or_two_pubmed_records_does_not_merge_them():
    works = unique_works([
        row("crossref", "10.7/proc", doi="10.7/proc", title="Proceedings of a workshop", work_type="proceedings"),
        row("arxiv", "2401.00001v1", arxiv_id="2401.00001", doi="10.7/proc", title="First talk"),
        row("arxiv", "2402.00002v1", arxiv_id="2402.00002", doi="10.7/proc", title="Second talk"),
        row("pubmed", "111", pmid="111", doi="10.8/paper", title="A paper"),
        row("pubmed", "222", pmid="222", doi="10.8/paper", title="Erratum: A paper"),
    ])
    merged = sorted(sorted(s["provider_id"] for s in w["sources"]) for w in works)
    # The proceedings joins the first preprint by DOI; the second names another arXiv id: its own work. Likewise PubMed.
    assert merged == [["10.7/proc", "2401.00001v1"], ["111"], ["222"], ["2402.00002v1"]]
    assert len({w["work_id"] for w in works}) == 4  # the DOI they share anchors neither alone


def test_a_published_version_gives_its_doi_and_fields_before_a_preprint_of_any_provider():
    works = unique_works([
        row("openalex", "W1", doi="10.1101/2020.01.01.000001", pmid="5", work_type="preprint", title="On X (preprint)"),
        row("openalex", "W2", doi="10.3390/x", pmid="5", work_type="article", title="On X", venue="Journal"),
    ])
    assert [(w["doi"], w["title"], w["work_type"], w["venue"]) for w in works] == [("10.3390/x", "On X", "article", "Journal")]


def test_title_normalization_and_family_names():
    assert normalized_title("  Ćoral—Reef   DYNAMICS, under ﬁre! ") == "coral reef dynamics under fire"
    assert normalized_title("?!") is None
    assert family_name("Émilie Färber") == "farber" and family_name("") is None and family_name("O'Neil") == "neil"
    assert family_name("John Smith Jr.") == "smith" and family_name("Henry Ford III") == "ford"
