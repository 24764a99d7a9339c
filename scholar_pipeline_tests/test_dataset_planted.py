"""The planted overlaps of the simulator's corpus, fetched by two saved searches from all seven providers, landed and
made into `unique_works` through Dagster: each case gives exactly the works it should, by the rule it should."""

from __future__ import annotations

import dagster as dg
import pytest

from scholar_pipeline.dataset.unique_works import family_name
from scholar_pipeline.defs.dataset import build_dataset_assets
from scholar_pipeline.queries import SavedSearch
from scholar_pipeline.simulator import ProviderSimulator
from scholar_pipeline.simulator.corpus import Corpus
from scholar_pipeline.simulator.planted import (
    ARXIV_ID, DOI_AT_THREE, JOURNAL_VERSION, PART_ONE, PART_TWO, PLANTED, PLANTED_DAY, PMID_WITHOUT_DOI, TITLE_AS_OPENALEX,
)
from scholar_pipeline.simulator.server import PLACEHOLDER_KEYS
from scholar_pipeline_tests.helpers import materialize_range, query_db
from scholar_pipeline_tests.test_dataset_assets import resources

PROVIDERS = ["openalex", "crossref", "arxiv", "pubmed", "plos", "springer", "core"]
SEARCHES = [SavedSearch(name=name, text=text, providers=PROVIDERS, start_date=PLANTED_DAY)
            for name, text in [("soil", "soil microbiome"), ("graphs", "graph neural network")]]
# Each part of "… Part I" / "… Part II" is one work at OpenAlex and CORE, joined by its title; the parts stay apart.
EXPECTED_RULE = {"doi_at_three": "doi", "arxiv_versions": "arxiv_id", "pmid_without_doi": "pmid",
                 "title_parts": "title_year_author", "title_variants": "title_year_author"}


@pytest.fixture
def simulator():
    """A small corpus: the planted works among a few dozen generated ones a day."""
    with ProviderSimulator(corpus=Corpus(seed=11, max_per_day=40)) as sim:
        yield sim


@pytest.fixture
def planted_dataset(pipeline_env, monkeypatch):
    for provider in PROVIDERS:
        monkeypatch.setenv(f"SCHOLAR_PIPELINE_{provider.upper()}_RATE_LIMIT", "100")
    for name, value in PLACEHOLDER_KEYS.items():
        monkeypatch.setenv(name, value)
    day = PLANTED_DAY.isoformat()
    with dg.instance_for_test() as instance:
        for search in SEARCHES:
            materialize_range(day, day, search=search, instance=instance)
        result = dg.materialize(build_dataset_assets(SEARCHES), instance=instance, resources=resources())
    assert result.success
    columns = ["work_id", "match_rule", "queries", "doi", "pmid", "pmcid", "arxiv_id", "title", "first_author", "sources"]
    rows = query_db(f"SELECT {', '.join(columns[:-2])}, authors[1].name, sources FROM unique_works")
    return {frozenset((s["provider"], s["provider_id"]) for s in row[-1]): dict(zip(columns, row)) for row in rows}


def test_every_planted_case_gives_exactly_its_works_by_its_rule_found_by_both_searches(planted_dataset):
    for name, case in PLANTED.items():
        for records in case.unique:
            work = planted_dataset.get(records)
            assert work is not None, (name, sorted(records), [sorted(s) for s in planted_dataset if s & records])
            assert work["match_rule"] == EXPECTED_RULE[name], (name, case.linked_by)
            assert work["queries"] == ["graphs", "soil"], name


def test_the_merged_values_of_the_planted_works(planted_dataset):
    """Each planted work's identifiers and title, by the documented precedence, and a source per search and record."""
    journal, pmid = JOURNAL_VERSION, PMID_WITHOUT_DOI
    expected = {  # (doi, pmid, pmcid, arxiv_id, title) of each unique work
        "doi_at_three": [("10.1007/planted.2024.0514a", None, None, None, DOI_AT_THREE.title)],  # Crossref's upper case, normalized
        # The journal's DOI and title (published before preprint); the preprint has no DOI of its own.
        "arxiv_versions": [(journal.doi, None, None, ARXIV_ID, journal.title)],
        "pmid_without_doi": [(None, pmid.pmid, pmid.pmcid, None, f"{pmid.title}.")],  # PubMed's, which ends titles with "."
        "title_parts": [(None, None, None, None, PART_ONE.title), (None, None, None, None, PART_TWO.title)],
        "title_variants": [(None, None, None, None, TITLE_AS_OPENALEX.title)],  # OpenAlex's writing before CORE's
    }
    for name, case in PLANTED.items():
        works = [planted_dataset[records] for records in case.unique]
        assert [(w["doi"], w["pmid"], w["pmcid"], w["arxiv_id"], w["title"]) for w in works] == expected[name], name
        for records, work in zip(case.unique, works):
            sources = sorted((s["query"], s["provider"], s["provider_id"], s["partition_date"]) for s in work["sources"])
            assert sources == sorted((search.name, provider, record_id, PLANTED_DAY) for search in SEARCHES
                                     for provider, record_id in records), name
    parts = [planted_dataset[records] for records in PLANTED["title_parts"].unique]
    assert parts[0]["work_id"] != parts[1]["work_id"]
    assert family_name(parts[0]["first_author"]) == family_name(parts[1]["first_author"])  # the same first author


def test_every_landed_row_is_one_source_of_one_work(planted_dataset):
    works_rows, records = query_db("SELECT count(*), count(DISTINCT (provider, provider_id)) FROM works")[0]
    assert sum(len(sources) for sources in planted_dataset) == records  # each provider record in one work
    assert query_db("SELECT sum(len(sources)) FROM unique_works")[0][0] == works_rows  # found by both searches: 2 rows
