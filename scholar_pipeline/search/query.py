"""`scholar-pipeline search`: the works of the search index ranked for a text, with filters.

- `bm25`: title and abstract, the query stemmed and stripped of stop words as the index was;
  a work scores when any of its words match.
- `semantic`: cosine similarity of the query's embedding to each work's (the `semantic`
  extra, and an index built with it).
- `hybrid` (the default when both are there): reciprocal rank fusion of the two rankings,
  each cut at its best HYBRID_DEPTH works (or `limit`, if more): a work's score is the sum over the rankings
  that hold it of 1 / (RRF_K + its rank).
Ties are broken by `work_id`, so the same index gives the same ranking.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb

from scholar_pipeline.search.embeddings import DIMENSIONS, INSTALL_HINT, SemanticUnavailable, embedder, semantic_installed
from scholar_pipeline.search.index import index_path, load_search_extensions

MODES = ("bm25", "semantic", "hybrid")
RRF_K = 60  # the constant of reciprocal rank fusion (Cormack et al. 2009)
HYBRID_DEPTH = 100
HIT_COLUMNS = "work_id, title, year, doi, providers, queries"


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


def search(home: Path, text: str, **options) -> list[Hit]:
    """The best works for `text` (see `SearchIndex.search` for the options), from the index under `home`."""
    with SearchIndex.open(home) as index:
        return index.search(text, **options)


class SearchIndex:
    """The index file, open read-only for any number of searches."""

    def __init__(self, path: Path, con: duckdb.DuckDBPyConnection):
        self.path, self.con = path, con
        self.embedded = con.execute("SELECT count(*) FROM duckdb_columns() WHERE table_name = 'documents' "
                                    "AND column_name = 'embedding'").fetchone()[0] > 0

    @classmethod
    @contextmanager
    def open(cls, home: Path) -> Iterator[SearchIndex]:
        path = index_path(home)
        if not path.exists():
            raise SearchIndexMissing(f"no search index at {path}: materialize dataset/search_index (in the UI, or "
                                     "`dagster asset materialize -m scholar_pipeline.definitions --select 'group:dataset'`)")
        with duckdb.connect(str(path), read_only=True) as con:
            load_search_extensions(con)
            yield cls(path, con)

    def search(self, text: str, *, mode: str | None = None, limit: int = 10, query: str | None = None,
               first_year: int | None = None, last_year: int | None = None) -> list[Hit]:
        """The `limit` best works for `text`, among those a saved search `query` found and published from
        `first_year` to `last_year` (each bound optional). `mode` None: hybrid where the index has embeddings and the
        extra is installed, else bm25."""
        filters, values = [], []
        for clause, value in (("list_contains(queries, ?)", query), ("year >= ?", first_year), ("year <= ?", last_year)):
            if value is not None:
                filters.append(clause)
                values.append(value)
        where = " AND ".join(filters) or "true"
        mode = mode or ("hybrid" if self.embedded and semantic_installed() else "bm25")
        if mode not in MODES:
            raise ValueError(f"search mode {mode!r}: one of {', '.join(MODES)}")
        if mode == "bm25":
            return _ranked(self.con, _bm25(where), [text, *values], limit)
        if not semantic_installed():
            raise SemanticUnavailable(INSTALL_HINT)
        if not self.embedded:
            raise SemanticUnavailable(f"the index at {self.path} was built without the semantic extra: materialize "
                                      "dataset/search_index again now that it is installed")
        vector = embedder().embed([text])[0]
        if mode == "semantic":
            return _ranked(self.con, _semantic(where), [vector, *values], limit)
        return _fused(self.con, [(_bm25(where), [text, *values]), (_semantic(where), [vector, *values])], limit,
                      depth=max(HYBRID_DEPTH, limit))


def _bm25(where: str) -> str:
    return (f"SELECT {HIT_COLUMNS}, score FROM (SELECT {HIT_COLUMNS}, fts_main_documents.match_bm25(work_id, ?) AS score "
            f"FROM documents) WHERE score IS NOT NULL AND {where}")


def _semantic(where: str) -> str:
    return (f"SELECT {HIT_COLUMNS}, array_cosine_similarity(embedding, ?::FLOAT[{DIMENSIONS}]) AS score "
            f"FROM documents WHERE embedding IS NOT NULL AND {where}")


def _ranked(con: duckdb.DuckDBPyConnection, ranking: str, parameters: list, limit: int) -> list[Hit]:
    rows = con.execute(f"SELECT {HIT_COLUMNS}, score FROM ({ranking}) ORDER BY score DESC, work_id LIMIT ?",
                       [*parameters, limit]).fetchall()
    return [_hit(row) for row in rows]


def _fused(con: duckdb.DuckDBPyConnection, rankings: list[tuple[str, list]], limit: int, depth: int) -> list[Hit]:
    """Reciprocal rank fusion of the rankings' best `depth` works each."""
    parts = [f"SELECT {HIT_COLUMNS}, 1.0 / ({RRF_K} + row_number() OVER (ORDER BY score DESC, work_id)) AS score "
             f"FROM ({ranking}) QUALIFY row_number() OVER (ORDER BY score DESC, work_id) <= {depth}"
             for ranking, _ in rankings]
    fused = (f"SELECT {HIT_COLUMNS}, sum(score) AS score FROM ({' UNION ALL '.join(parts)}) "
             f"GROUP BY {HIT_COLUMNS}")
    return _ranked(con, fused, [value for _, parameters in rankings for value in parameters], limit)


def _hit(row: tuple) -> Hit:
    work_id, title, year, doi, providers, queries, score = row
    return Hit(work_id, score, title, year, doi, providers, queries)
