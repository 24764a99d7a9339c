"""Search over the collected works, on the real recorded pages: BM25 finds a work from three distinctive words of its
title, semantic search from the first sentence of its abstract, hybrid fuses both; filters by saved search and year; a
rebuild embeds only new or changed works; without the extra BM25 works and semantic search says how to get it; and
`dataset/search_index` keeps the index in step with `unique_works`."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import subprocess
import unicodedata
from collections import Counter
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow as pa
import pytest

from scholar_pipeline.dataset.unique_works import build_unique_works
import scholar_pipeline.defs.dataset as dataset_defs
from scholar_pipeline.defs.dataset import SEARCH_INDEX, build_dataset_assets
from scholar_pipeline.defs.resources import scholar_api_from_env, warehouse_from_env
from scholar_pipeline.defs.saved_searches import build_saved_search_assets
from scholar_pipeline.normalize import normalize_page_checked
from scholar_pipeline.providers.base import MalformedPage
from scholar_pipeline.schema import WORKS_SCHEMA
import scholar_pipeline.search.embeddings as embeddings_module
import scholar_pipeline.search.index as search_index_module
import scholar_pipeline.search.query as search_query_module
from scholar_pipeline.search.embeddings import SemanticUnavailable, document_text
from scholar_pipeline.search.index import build_search_index, index_path, read_documents, text_key
from scholar_pipeline.search.query import SearchIndex, SearchIndexMissing, search
from scholar_pipeline_tests.conftest import DATA, REPO_ROOT
from scholar_pipeline_tests.helpers import SEARCH, home, materialize
from scholar_pipeline_tests.test_scenarios import BIN

DAY = dt.date(2024, 3, 1)
REQUIRED_SHARE = 0.9  # of works found: in the top 3 by three title words (BM25), the top 5 by an abstract's first sentence


def _real_works() -> pa.Table:
    """Every record of the real recorded pages, as `works` rows of two saved searches (odd and even pages)."""
    tables = []
    for number, page in enumerate(sorted((DATA / "real_responses").glob("*/*"))):
        if page.suffix not in (".json", ".xml"):
            continue
        try:
            rows = normalize_page_checked(page.parent.name, page.read_bytes()).table
        except MalformedPage:
            continue
        extra = {"query": "real_odd" if number % 2 else "real_even", "partition_date": DAY,
                 "raw_page_sha256": page.name, "retrieved_at": dt.datetime(2024, 3, 2, tzinfo=dt.timezone.utc)}
        for name, value in extra.items():
            rows = rows.append_column(name, pa.array([value] * rows.num_rows, WORKS_SCHEMA.field(name).type))
        tables.append(rows.select(WORKS_SCHEMA.names).cast(WORKS_SCHEMA))
    return pa.concat_tables(tables)


@pytest.fixture(scope="module")
def real_index(tmp_path_factory) -> tuple[Path, list[dict]]:
    """The search index of the unique works of the real pages, under a home of its own; and those works."""
    home_dir = tmp_path_factory.mktemp("search_home")
    con = duckdb.connect()
    con.register("rows", _real_works())
    con.execute("CREATE TABLE works AS SELECT * FROM rows")
    build_unique_works(con)
    summary = build_search_index(read_documents(con), home_dir, semantic=True)
    works = con.execute("SELECT work_id, title, abstract, year(publication_date) AS year, queries FROM unique_works").fetch_arrow_table()
    assert summary.documents == works.num_rows > 500 and summary.path == index_path(home_dir)
    con.execute("COPY unique_works TO ? (FORMAT parquet)", [str(_unique_works_parquet(home_dir))])
    texts = {document_text(w["title"], w["abstract"]) for w in works.to_pylist()} - {""}
    assert (summary.embedded, summary.embeddings_reused) == (len(texts), 0)
    return home_dir, works.to_pylist()


def _unique_works_parquet(home_dir: Path) -> Path:
    return home_dir / "unique_works.parquet"


def _words(text: str | None) -> list[str]:
    plain = unicodedata.normalize("NFKD", text or "").encode("ascii", "ignore").decode().lower()
    return re.findall(r"[a-z][a-z0-9]{2,}", plain)


def distinctive_words(title: str, frequency: Counter, count: int = 3) -> list[str]:
    """The `count` words of the title that the fewest works use (first in the title on a tie)."""
    words = list(dict.fromkeys(_words(title)))
    return sorted(words, key=lambda word: (frequency[word], words.index(word)))[:count]


def test_three_distinctive_words_of_a_title_find_its_work_in_the_top_3_for_nine_in_ten(real_index, capsys):
    home_dir, works = real_index
    frequency = Counter(word for work in works for word in set(_words(work["title"]) + _words(work["abstract"])))
    titled = [work for work in works if _words(work["title"])]
    with SearchIndex.open(home_dir) as index:
        found = [work["work_id"] in [hit.work_id for hit in index.search(
            " ".join(distinctive_words(work["title"], frequency)), mode="bm25", limit=3)] for work in titled]
    share = sum(found) / len(titled)
    with capsys.disabled():
        print(f"\nBM25, three distinctive title words: {sum(found)} of {len(titled)} works in the top 3 ({share:.1%})")
    assert share >= REQUIRED_SHARE


def first_sentence(abstract: str) -> str:
    return re.split(r"(?<=[.!?])\s+(?=[A-Z])", abstract.strip(), maxsplit=1)[0]


def test_the_first_sentence_of_an_abstract_finds_its_work_in_the_top_5_for_nine_in_ten(real_index, capsys):
    home_dir, works = real_index
    with_abstract = [work for work in works if work["abstract"]]
    with SearchIndex.open(home_dir) as index:
        found = [work["work_id"] in [hit.work_id for hit in index.search(first_sentence(work["abstract"]), mode="semantic",
                                                                          limit=5)] for work in with_abstract]
    share = sum(found) / len(with_abstract)
    with capsys.disabled():
        print(f"\nsemantic, first sentence of the abstract: {sum(found)} of {len(with_abstract)} works in the top 5 "
              f"({share:.1%})")
    assert share >= REQUIRED_SHARE


def test_hybrid_fuses_the_two_rankings_by_rank(real_index):
    home_dir, _ = real_index
    text = "biodiversity loss in tropical forests"
    bm25 = [h.work_id for h in search(home_dir, text, mode="bm25", limit=100)]
    semantic = [h.work_id for h in search(home_dir, text, mode="semantic", limit=100)]
    hybrid = search(home_dir, text, limit=20)  # the default, with the extra installed and embeddings in the index
    expected = {w: sum(1 / (60 + ranking.index(w) + 1) for ranking in (bm25, semantic) if w in ranking)
                for w in set(bm25) | set(semantic)}
    assert [h.work_id for h in hybrid] == sorted(expected, key=lambda w: (-expected[w], w))[:20]
    assert [h.score for h in hybrid] == pytest.approx(sorted(expected.values(), reverse=True)[:20])
    assert set(bm25[:3]) & {h.work_id for h in hybrid} and set(semantic[:3]) & {h.work_id for h in hybrid}


def test_a_rebuild_embeds_only_the_new_and_changed_works(real_index, tmp_path):
    home_dir, works = real_index
    con = duckdb.connect()
    con.execute("CREATE TABLE unique_works AS SELECT * FROM read_parquet(?)", [str(_unique_works_parquet(home_dir))])
    index_path(tmp_path).parent.mkdir(parents=True)
    shutil.copy(index_path(home_dir), index_path(tmp_path))  # the index of the same works: nothing to embed
    first = build_search_index(read_documents(con), tmp_path, semantic=True)
    assert first.embedded == 0 and first.embeddings_reused > 500
    con.execute("UPDATE unique_works SET abstract = 'A new abstract.' WHERE work_id = (SELECT min(work_id) FROM unique_works)")
    con.execute("INSERT INTO unique_works SELECT * REPLACE ('new-work' AS work_id, 'A work found today' AS title) "
                "FROM unique_works LIMIT 1")
    again = build_search_index(read_documents(con), tmp_path, semantic=True)
    assert (again.documents, again.embedded, again.embeddings_reused) == (first.documents + 1, 2, first.embeddings_reused - 1)
    assert [h.work_id for h in search(tmp_path, "A work found today", mode="semantic", limit=1)] == ["new-work"]


def test_without_the_extra_bm25_works_and_semantic_search_says_how_to_get_it(real_index, tmp_path, monkeypatch):
    home_dir, _ = real_index
    con = duckdb.connect()
    con.execute("CREATE TABLE unique_works AS SELECT * FROM read_parquet(?)", [str(_unique_works_parquet(home_dir))])
    for module in (search_index_module, search_query_module, embeddings_module):
        monkeypatch.setattr(module, "semantic_installed", lambda: False)
    built = build_search_index(read_documents(con), tmp_path)
    assert (built.embedded, built.embeddings_reused) == (None, None)
    assert [h.work_id for h in search(tmp_path, "climate", limit=3)] == \
        [h.work_id for h in search(home_dir, "climate", mode="bm25", limit=3)]  # bm25 is the default then
    for mode in ("semantic", "hybrid"):
        with pytest.raises(SemanticUnavailable, match=re.escape("pip install -e '.[semantic]'")):
            search(tmp_path, "climate", mode=mode)


def test_filters_keep_the_saved_search_and_the_years_asked_for(real_index):
    home_dir, works = real_index
    by_id = {work["work_id"]: work for work in works}
    everything = search(home_dir, "climate", mode="bm25", limit=1000)
    assert len(everything) > 5 and [h.score for h in everything] == sorted((h.score for h in everything), reverse=True)
    odd = search(home_dir, "climate", mode="bm25", limit=1000, query="real_odd")
    assert odd and {h.work_id for h in odd} == {h.work_id for h in everything if "real_odd" in by_id[h.work_id]["queries"]}
    years = sorted(by_id[h.work_id]["year"] for h in everything if by_id[h.work_id]["year"])
    first, last = years[len(years) // 4], years[3 * len(years) // 4]
    between = search(home_dir, "climate", mode="bm25", limit=1000, first_year=first, last_year=last)
    assert between and {h.work_id for h in between} == {
        h.work_id for h in everything if by_id[h.work_id]["year"] is not None and first <= by_id[h.work_id]["year"] <= last}
    assert search(home_dir, "qwxzv zzqj", mode="bm25", limit=5) == []


def test_the_command_prints_hits_or_json_and_says_when_there_is_no_index(real_index, tmp_path):
    home_dir, works = real_index
    run = lambda home, *args: subprocess.run([str(BIN / "scholar-pipeline"), "search", *args], cwd=REPO_ROOT, text=True,
                                              capture_output=True, timeout=120,
                                              env={"SCHOLAR_PIPELINE_HOME": str(home), "PATH": str(BIN), "HOME": str(tmp_path)})
    missing = run(tmp_path, "climate")
    assert missing.returncode == 1 and "no search index at" in missing.stderr and "dataset/search_index" in missing.stderr
    hits = json.loads(run(home_dir, "climate change adaptation", "--limit", "4", "--json").stdout)
    assert len(hits) == 4 and {"work_id", "doi", "title", "score", "year", "providers"} <= set(hits[0])
    assert hits == [h.as_dict() for h in search(home_dir, "climate change adaptation", limit=4)]
    printed = run(home_dir, "climate change adaptation", "--limit", "2")
    text = printed.stdout.splitlines()
    assert len(text) == 4 and text[0].startswith("  1. ") and f"{hits[0]['score']:8.4f}" in text[0]
    assert "Loading weights" not in printed.stderr  # the model loads without its progress bar


def test_a_search_without_an_index_names_what_to_materialize(tmp_path):
    with pytest.raises(SearchIndexMissing, match="materialize dataset/search_index"):
        search(tmp_path, "anything")


def _texts_by_work() -> dict[str, str]:
    with duckdb.connect(str(home() / "scholar.duckdb"), read_only=True) as con:
        return {work_id: text_key(document_text(title, abstract)) for work_id, title, abstract in
                con.execute("SELECT work_id, title, abstract FROM unique_works").fetchall() if title or abstract}


def test_the_asset_indexes_every_unique_work_and_rebuilds_only_when_they_change(pipeline_env, simulator, monkeypatch):
    assets = [*build_saved_search_assets(SEARCH), *build_dataset_assets([SEARCH])]
    resources = {"scholar_api": scholar_api_from_env(), "warehouse": warehouse_from_env()}

    def build(instance, selection=dg.AssetSelection.groups("dataset")) -> list[dg.AssetMaterialization]:
        result = dg.materialize(assets, instance=instance, selection=selection, resources=resources)
        return list(result.asset_materializations_for_node("dataset__search_index"))

    with dg.instance_for_test() as instance:
        materialize("2024-03-01", "openalex", instance=instance)
        with monkeypatch.context() as without_the_extra:
            without_the_extra.setattr(dataset_defs, "semantic_installed", lambda: False)
            first = build(instance)
        texts = _texts_by_work()
        with duckdb.connect(str(home() / "scholar.duckdb"), read_only=True) as con:
            works = con.execute("SELECT count(*) FROM unique_works").fetchone()[0]
            work_id, title = con.execute("SELECT work_id, title FROM unique_works WHERE title IS NOT NULL "
                                         "ORDER BY work_id LIMIT 1").fetchone()
        assert first[0].asset_key == SEARCH_INDEX and first[0].metadata["documents"].value == works > 0
        assert first[0].metadata["embedded"].value is None  # BM25 only
        # The extra installed since: the same works, but the index gains its embeddings.
        (semantic,) = build(instance, [SEARCH_INDEX])
        assert semantic.metadata["embedded"].value == len(set(texts.values())) > 0
        assert build(instance, [SEARCH_INDEX]) == []  # nothing changed: nothing to do
        index_path(home()).unlink()
        assert build(instance, [SEARCH_INDEX])[0].metadata["documents"].value == works  # a lost index is built again
        assert work_id in [hit.work_id for hit in search(home(), title, limit=5)]
        materialize("2024-03-01", "crossref", instance=instance)  # the same works found again: their sources change
        rebuilt = build(instance)
        changed = set(_texts_by_work().values()) - set(texts.values())
        with duckdb.connect(str(home() / "scholar.duckdb"), read_only=True) as con:
            assert rebuilt and rebuilt[0].metadata["documents"].value == con.execute(
                "SELECT count(*) FROM unique_works").fetchone()[0]
        assert rebuilt[0].metadata["embedded"].value == len(changed)  # only the works whose text changed
        assert {"crossref", "openalex"} <= {p for hit in search(home(), title, limit=5) for p in hit.providers}
