"""The search index of `unique_works`: title and abstract under BM25 (DuckDB's `fts`, English stemmer and stop words)
and, with the `semantic` extra, as embeddings (`embeddings.py`) searched by cosine similarity.

Embeddings are keyed by a hash of the text embedded: a rebuild copies those of unchanged
works from the previous index and embeds only new or changed ones. The index lives in a
DuckDB file of its own, `<home>/search/search.duckdb`, not in the warehouse:
it is derived (rebuilt from `unique_works` whenever that changes), searching it must not
wait behind landings in the warehouse's writer queue, and it serves either warehouse
backend. A build writes a new file beside it and renames it over the old one, so a search
running meanwhile reads the previous index whole, never half of one; builds queue on a
file lock.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import filelock
import pyarrow as pa

from scholar_pipeline.duckdb_extensions import load_extension
from scholar_pipeline.search.embeddings import DIMENSIONS, document_text, embedder, semantic_installed

# One row per work: what is searched (title, abstract) and what a hit shows or is filtered on.
DOCUMENTS_SQL = """
SELECT work_id, doi, title, abstract, year(publication_date) AS year, queries,
       list_sort(list_distinct([source.provider FOR source IN sources])) AS providers
FROM unique_works
ORDER BY work_id
"""
FTS_OPTIONS = "stemmer = 'english', stopwords = 'english', strip_accents = 1, lower = 1, overwrite = 1"


@dataclass(frozen=True)
class IndexSummary:
    path: Path
    documents: int
    with_abstract: int
    seconds: float
    embedded: int | None  # texts embedded by this build (None: without the semantic extra, no embeddings)
    embeddings_reused: int | None


def index_path(home: Path) -> Path:
    return home / "search" / "search.duckdb"


def load_search_extensions(con: duckdb.DuckDBPyConnection) -> None:
    """What reading the index needs: its BM25 macro stems the query with the extension's `stem`."""
    load_extension(con, "fts", "duckdb-ext-fts")


def build_search_index(warehouse_con: duckdb.DuckDBPyConnection, home: Path, *, log=None,
                       semantic: bool | None = None) -> IndexSummary:
    """Index the works `unique_works` holds now (read through `warehouse_con`) and swap the index in whole; with
    `semantic` (by default: when the extra is installed) embed what the previous index did not hold."""
    started = time.monotonic()
    semantic = semantic_installed() if semantic is None else semantic
    documents = warehouse_con.execute(DOCUMENTS_SQL).fetch_arrow_table()
    texts = [document_text(title, abstract) for title, abstract in
             zip(documents.column("title").to_pylist(), documents.column("abstract").to_pylist())]
    documents = documents.append_column("text_hash", pa.array([hashlib.sha256(t.encode()).hexdigest() for t in texts]))
    path = index_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(str(path.parent / ".search.duckdb.lock")):
        building = path.with_name(f".{path.name}.{os.getpid()}.building")
        building.unlink(missing_ok=True)
        try:
            with duckdb.connect(str(building)) as con:
                load_search_extensions(con)
                con.register("incoming", documents)
                if semantic:
                    embedded, reused = _embed(con, path, dict(zip(documents.column("text_hash").to_pylist(), texts)), log)
                    con.execute("CREATE TABLE documents AS SELECT incoming.*, embeddings.embedding "
                                "FROM incoming LEFT JOIN embeddings USING (text_hash) ORDER BY work_id")
                    con.execute("DROP TABLE embeddings")
                else:
                    embedded = reused = None
                    con.execute("CREATE TABLE documents AS SELECT * FROM incoming")
                con.unregister("incoming")
                con.execute(f"PRAGMA create_fts_index('documents', 'work_id', 'title', 'abstract', {FTS_OPTIONS})")
                with_abstract = con.execute("SELECT count(abstract) FROM documents").fetchone()[0]
                con.execute("CHECKPOINT")
            os.replace(building, path)
        finally:
            building.unlink(missing_ok=True)
            building.with_name(building.name + ".wal").unlink(missing_ok=True)
    return IndexSummary(path, documents.num_rows, with_abstract, round(time.monotonic() - started, 3), embedded, reused)


def _embed(con: duckdb.DuckDBPyConnection, previous: Path, texts: dict[str, str], log) -> tuple[int, int]:
    """Temporary table `embeddings` (text_hash, embedding FLOAT[384]) of every text: copied from the previous index where
    it holds the same text, embedded otherwise; returns (embedded, reused). The vectors go into `documents` itself:
    a scan of one table is twice as fast as one joined by hash (130 against 280 ms over 100k works here)."""
    con.execute(f"CREATE TEMP TABLE embeddings (text_hash VARCHAR, embedding FLOAT[{DIMENSIONS}])")
    if previous.exists():
        con.execute(f"ATTACH '{previous}' AS previous (READ_ONLY)")
        if con.execute("SELECT count(*) FROM duckdb_columns() WHERE database_name = 'previous' "
                       "AND table_name = 'documents' AND column_name = 'embedding'").fetchone()[0]:
            con.execute("INSERT INTO embeddings SELECT DISTINCT ON (text_hash) text_hash, embedding "
                        "FROM previous.documents WHERE embedding IS NOT NULL AND text_hash IN (SELECT text_hash FROM incoming)")
        con.execute("DETACH previous")
    reused = con.execute("SELECT count(*) FROM embeddings").fetchone()[0]
    have = {h for (h,) in con.execute("SELECT text_hash FROM embeddings").fetchall()}
    missing = sorted(h for h in texts if h not in have)
    if missing:
        vectors = embedder().embed([texts[h] for h in missing], log=log)
        con.register("new_embeddings", pa.table({
            "text_hash": missing,
            "embedding": pa.array(vectors, type=pa.list_(pa.float32(), DIMENSIONS))}))
        con.execute("INSERT INTO embeddings SELECT * FROM new_embeddings")
        con.unregister("new_embeddings")
    return len(missing), reused
