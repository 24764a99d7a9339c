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
from scholar_pipeline.simulator.planted import PLANTED, PLANTED_DAY
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
    columns = ["work_id", "match_rule", "queries", "doi", "pmid", "arxiv_id", "title", "first_author"]
    rows = query_db(f"SELECT {', '.join(columns[:-1])}, authors[1].name, sources FROM unique_works")
    return {frozenset((s["provider"], s["provider_id"]) for s in row[-1]): dict(zip(columns, row[:-1])) for row in rows}


def test_every_planted_case_gives_exactly_its_works_by_its_rule_found_by_both_searches(planted_dataset):
    for name, case in PLANTED.items():
        for records in case.unique:
            work = planted_dataset.get(records)
            assert work is not None, (name, sorted(records), [sorted(s) for s in planted_dataset if s & records])
            assert work["match_rule"] == EXPECTED_RULE[name], (name, case.linked_by)
            assert work["queries"] == ["graphs", "soil"], name


def test_the_merged_values_of_the_planted_works(planted_dataset):
    [journal] = PLANTED["arxiv_versions"].unique
    work = planted_dataset[journal]
    assert work["doi"] == "10.5555/planted.2024.0514b"  # the journal's DOI; the preprint has none of its own
    assert work["arxiv_id"] == "2405.90001"
    [by_pmid] = PLANTED["pmid_without_doi"].unique
    assert planted_dataset[by_pmid]["doi"] is None and planted_dataset[by_pmid]["pmid"]
    [by_doi] = PLANTED["doi_at_three"].unique
    assert planted_dataset[by_doi]["doi"] == "10.1007/planted.2024.0514a"  # Crossref's upper case, normalized
    parts = [planted_dataset[records] for records in PLANTED["title_parts"].unique]
    assert parts[0]["work_id"] != parts[1]["work_id"]
    assert family_name(parts[0]["first_author"]) == family_name(parts[1]["first_author"])  # the same first author


def test_every_landed_row_is_one_source_of_one_work(planted_dataset):
    works_rows, records = query_db("SELECT count(*), count(DISTINCT (provider, provider_id)) FROM works")[0]
    assert sum(len(sources) for sources in planted_dataset) == records  # each provider record in one work
    assert query_db("SELECT sum(len(sources)) FROM unique_works")[0][0] == works_rows  # found by both searches: 2 rows
