"""A search text full of quotes, non-ASCII and SQL is kept as written: in the manifest, the asset's metadata and the request."""

import datetime as dt
import json
from pathlib import Path

import dagster as dg
import httpx
import pytest

from scholar_pipeline.defs.saved_searches import build_saved_search_assets
from scholar_pipeline.queries import load_saved_searches
from scholar_pipeline_tests.helpers import materialization, materialize, query_db

DAY = "2024-03-01"
TEXT = "\"machine learning\" Alzheimer's Müller 量子 '; DROP TABLE works; --"
# As a user writes it: in single quotes, each ' inside doubled.
QUERIES_YAML = """queries:
  - name: odd_text
    text: '"machine learning" Alzheimer''s Müller 量子 ''; DROP TABLE works; --'
    providers: [openalex, crossref]
    start_date: 2024-01-01
"""
# Where the search value travels at each provider; this text holds nothing either of them rewrites.
SEARCH_PARAMETER = {
    "openalex": ("filter", f"title_and_abstract.search:{TEXT},from_publication_date:{DAY},to_publication_date:{DAY}"),
    "crossref": ("query", TEXT),
}


@pytest.mark.parametrize("provider", ["openalex", "crossref"])
def test_search_text_is_stored_and_sent_verbatim(pipeline_env, simulator, monkeypatch, tmp_path, provider):
    monkeypatch.setenv(f"SCHOLAR_PIPELINE_{provider.upper()}_PAGE_SIZE", "50")  # a few pages: the text survives paging, and the test stays fast
    path = tmp_path / "odd_queries.yaml"
    path.write_text(QUERIES_YAML, encoding="utf-8")
    (search,) = load_saved_searches(path)
    assert search.text == TEXT

    result = materialize(DAY, provider, search=search)

    assert result.success
    raw = materialization(result, "odd_text", "raw")
    manifest = json.loads(Path(raw.metadata["manifest"].value).read_bytes())
    assert manifest["query_text"].encode("utf-8") == TEXT.encode("utf-8")
    (assets,) = build_saved_search_assets(search)
    assert assets.metadata_by_key[dg.AssetKey(["odd_text", "raw"])]["query_text"] == TEXT

    parameter, value = SEARCH_PARAMETER[provider]
    requests = simulator.requests_for(provider)
    assert len(requests) >= 2 and all(r.params[parameter] == [value] for r in requests)
    assert all(httpx.URL(url).params.get_list(parameter) == [value] for url in raw.metadata["request_urls"].value)

    day = dt.date.fromisoformat(DAY)
    expected = simulator.apis[provider].record_ids(day, day, TEXT)
    landed = query_db("SELECT provider_id FROM works WHERE query = 'odd_text' AND provider = ? AND partition_date = ?", [provider, DAY])
    assert len(expected) > 0 and sorted(r[0] for r in landed) == sorted(expected)
    assert query_db("SELECT DISTINCT query FROM works") == [("odd_text",)]
