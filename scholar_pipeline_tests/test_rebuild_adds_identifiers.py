"""A warehouse landed before works-v2 (no pmid, pmcid, arxiv_id) keeps working and `rebuild` fills the new columns
from the landing zone alone, without a request."""

import datetime as dt
import shutil

import duckdb
import pytest

from scholar_pipeline.queries import SavedSearch
from scholar_pipeline.rebuild import rebuild
from scholar_pipeline.schema import SCHEMA_VERSION, WORKS_SCHEMA
from scholar_pipeline.works import WORKS_CODE_VERSION
from scholar_pipeline.warehouse_backends import DuckDBFile
from scholar_pipeline_tests.helpers import home, materialize, query_db

DAY = "2024-03-01"
# PubMed's records carry PMIDs and some PMCIDs, arXiv's their arXiv ids: every new column gets values.
SEARCH = SavedSearch(name="ids_search", text="large language model evaluation", providers=["pubmed", "arxiv"],
                     start_date=dt.date(2024, 1, 1))
OLD_SCHEMA_VERSION = "works-v1"
OLD_CODE_VERSION = WORKS_CODE_VERSION.replace(SCHEMA_VERSION, OLD_SCHEMA_VERSION)
IDENTIFIERS = ("pmid", "pmcid", "arxiv_id")


@pytest.fixture
def ids_env(pipeline_env, simulator, monkeypatch):
    for provider in ("pubmed", "arxiv"):
        simulator.rate_limits[provider] = 1000
        monkeypatch.setenv(f"SCHOLAR_PIPELINE_{provider.upper()}_RATE_LIMIT", "50")
    return pipeline_env


def _rows() -> list[tuple]:
    return query_db("SELECT provider, provider_id, pmid, pmcid, arxiv_id, record_hash FROM works ORDER BY provider, provider_id")


def _make_it_what_works_v1_left() -> None:
    """The file as the version before left it: `works` without the identifier columns, provenance of the old code."""
    with duckdb.connect(str(home() / "scholar.duckdb")) as con:
        for column in IDENTIFIERS:
            con.execute(f"ALTER TABLE works DROP COLUMN {column}")
        con.execute("UPDATE works SET record_hash = 'v1-' || record_hash")  # hashes then covered fewer keys
        con.execute("UPDATE provenance SET code_version = ?, schema_version = ?, output_hash = 'v1-' || output_hash",
                    [OLD_CODE_VERSION, OLD_SCHEMA_VERSION])


def test_rebuild_fills_the_identifiers_of_partitions_an_older_version_landed_without_a_request(ids_env, simulator):
    for provider in ("pubmed", "arxiv"):
        assert materialize(DAY, provider, search=SEARCH).success
    landed = _rows()
    pubmed = [row for row in landed if row[0] == "pubmed"]
    arxiv = [row for row in landed if row[0] == "arxiv"]
    assert pubmed and arxiv
    assert all(pmid == provider_id and arxiv_id is None for _, provider_id, pmid, _, arxiv_id, _ in pubmed)
    assert 0 < sum(pmcid is not None for *_, pmcid, _, _ in pubmed) < len(pubmed)
    assert all(pmcid.startswith("PMC") for *_, pmcid, _, _ in pubmed if pmcid)
    assert all(arxiv_id == provider_id.rsplit("v", 1)[0] and pmid is None for _, provider_id, pmid, _, arxiv_id, _ in arxiv)
    _make_it_what_works_v1_left()
    columns = [name for (name,) in query_db("SELECT column_name FROM (DESCRIBE works)")]
    assert not set(IDENTIFIERS) & set(columns)
    shutil.rmtree(home() / "cache")  # no HTTP cache to answer from
    requests_before = len(simulator.requests)

    lines = []
    results = rebuild(home(), DuckDBFile(home() / "scholar.duckdb", home()), log=lines.append)

    assert len(simulator.requests) == requests_before  # the landing zone alone: no request reached a provider
    assert [(r.provider, r.written, r.recorded_code_version) for r in results] == [
        ("arxiv", True, OLD_CODE_VERSION), ("pubmed", True, OLD_CODE_VERSION)]
    assert all(f"changed by code version {OLD_CODE_VERSION} -> {WORKS_CODE_VERSION}, rewritten" in line for line in lines)
    assert _rows() == landed  # the identifiers and the hashes a fresh landing gives
    columns = [name for (name,) in query_db("SELECT column_name FROM (DESCRIBE works)")]
    assert sorted(columns) == sorted(WORKS_SCHEMA.names) and columns[-3:] == list(IDENTIFIERS)  # added at the end
    assert query_db("SELECT provider, code_version, schema_version FROM provenance WHERE run_id IS NULL ORDER BY provider") == [
        ("arxiv", WORKS_CODE_VERSION, SCHEMA_VERSION), ("pubmed", WORKS_CODE_VERSION, SCHEMA_VERSION)]
    # A run landing a partition into the upgraded file writes every column by name.
    assert materialize("2024-03-02", "pubmed", search=SEARCH).success
    assert query_db("SELECT count(*) = count(pmid) FROM works WHERE partition_date = '2024-03-02'") == [(True,)]
