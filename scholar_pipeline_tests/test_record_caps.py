"""A day with more records than a provider serves for one query fails on its first page, saying to narrow the search:
never a partial day landed as if it were whole."""

import datetime as dt

import pytest

from scholar_pipeline.providers import arxiv, pubmed
from scholar_pipeline.queries import SavedSearch
from scholar_pipeline.simulator import Corpus, ProviderSimulator
from scholar_pipeline_tests.helpers import home, materialize, query_db, step_failure


@pytest.mark.parametrize("provider, cap", [("arxiv", arxiv.MAX_TOTAL), ("pubmed", pubmed.MAX_TOTAL)])
def test_a_day_beyond_what_the_provider_serves_fails_after_one_request(pipeline_env, monkeypatch, provider, cap):
    search = SavedSearch(name=f"{provider}_search", text="large language model evaluation", providers=[provider],
                         start_date=dt.date(2024, 1, 1))
    per_day = 2 * (cap + 1)  # a search finds about 60 % of a day
    with ProviderSimulator(corpus=Corpus(seed=3, min_per_day=per_day, max_per_day=per_day), rate_limits={provider: 1000}) as sim:
        monkeypatch.setenv(f"SCHOLAR_PIPELINE_{provider.upper()}_BASE_URL", sim.base_url(provider))
        monkeypatch.setenv(f"SCHOLAR_PIPELINE_{provider.upper()}_RATE_LIMIT", "50")
        failed = materialize("2024-03-01", provider, search=search, raise_on_error=False)
        requests = sim.requests_for(provider)
        found = len(sim.apis[provider].record_ids(dt.date(2024, 3, 1), dt.date(2024, 3, 1), search.text))
    assert not failed.success and found > cap
    message = step_failure(failed)
    assert f"{found} records" in message and "narrow the saved search" in message and f"{provider} / saved search '{search.name}'" in message
    assert len(requests) == 1  # the first page said it, so nothing more was fetched and nothing truncated
    assert not (home() / "scholar.duckdb").exists() or query_db("SELECT count(*) FROM works")[0][0] == 0
