"""`scholar-pipeline search`: the works of the search index ranked for a text, with filters.

BM25 over title and abstract: the query is stemmed and stripped of stop words as the
index was, and a work scores when any of its words match. Ties are broken by `work_id`, so
the same index gives the same ranking.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb

from scholar_pipeline.search.index import index_path, load_search_extensions

MODES = ("bm25",)


class SearchIndexMissing(RuntimeError):
    """No index has been built under the home yet."""


@dataclass(frozen=True)
class Hit:
    work_id: str
    score: float
    title: str | None
    year: int | None
    doi: str | None
    providers: list[str]
    queries: list[str]

    def as_dict(self) -> dict:
        return asdict(self)


def search(home: Path, text: str, *, mode: str = "bm25", limit: int = 10, query: str | None = None,
           first_year: int | None = None, last_year: int | None = None) -> list[Hit]:
    """The `limit` best works for `text`, among those a saved search `query` found and published from `first_year`
    to `last_year` (each bound optional)."""
    if mode not in MODES:
        raise ValueError(f"search mode {mode!r}: one of {', '.join(MODES)}")
    path = index_path(home)
    if not path.exists():
        raise SearchIndexMissing(f"no search index at {path}: materialize dataset/search_index (in the UI, or "
                                 "`dagster asset materialize -m scholar_pipeline.definitions --select 'group:dataset'`)")
    filters, parameters = ["score IS NOT NULL"], [text]
    for clause, value in (("list_contains(queries, ?)", query), ("year >= ?", first_year), ("year <= ?", last_year)):
        if value is not None:
            filters.append(clause)
            parameters.append(value)
    with duckdb.connect(str(path), read_only=True) as con:
        load_search_extensions(con)
        rows = con.execute(
            "SELECT work_id, score, title, year, doi, providers, queries FROM ("
            "SELECT *, fts_main_documents.match_bm25(work_id, ?) AS score FROM documents) "
            f"WHERE {' AND '.join(filters)} ORDER BY score DESC, work_id LIMIT ?", [*parameters, limit]).fetchall()
    return [Hit(*row) for row in rows]
