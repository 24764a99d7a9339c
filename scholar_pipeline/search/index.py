"""The search index of `unique_works`: title and abstract under BM25 (DuckDB's `fts`, English stemmer and stop words).

It lives in a DuckDB file of its own, `<home>/search/search.duckdb`, not in the warehouse:
it is derived (rebuilt from `unique_works` whenever that changes), searching it must not
wait behind landings in the warehouse's writer queue, and it serves either warehouse
backend. A build writes a new file beside it and renames it over the old one, so a search
running meanwhile reads the previous index whole, never half of one; builds queue on a
file lock.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import filelock

from scholar_pipeline.duckdb_extensions import load_extension

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


def index_path(home: Path) -> Path:
    return home / "search" / "search.duckdb"


def load_search_extensions(con: duckdb.DuckDBPyConnection) -> None:
    """What reading the index needs: its BM25 macro stems the query with the extension's `stem`."""
    load_extension(con, "fts", "duckdb-ext-fts")


def build_search_index(warehouse_con: duckdb.DuckDBPyConnection, home: Path) -> IndexSummary:
    """Index the works `unique_works` holds now (read through `warehouse_con`) and swap the index in whole."""
    started = time.monotonic()
    documents = warehouse_con.execute(DOCUMENTS_SQL).fetch_arrow_table()
    path = index_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(str(path.parent / ".search.duckdb.lock")):
        building = path.with_name(f".{path.name}.{os.getpid()}.building")
        building.unlink(missing_ok=True)
        try:
            with duckdb.connect(str(building)) as con:
                load_search_extensions(con)
                con.register("incoming", documents)
                con.execute("CREATE TABLE documents AS SELECT * FROM incoming")
                con.unregister("incoming")
                con.execute(f"PRAGMA create_fts_index('documents', 'work_id', 'title', 'abstract', {FTS_OPTIONS})")
                with_abstract = con.execute("SELECT count(abstract) FROM documents").fetchone()[0]
                con.execute("CHECKPOINT")
            os.replace(building, path)
        finally:
            building.unlink(missing_ok=True)
            building.with_name(building.name + ".wal").unlink(missing_ok=True)
    return IndexSummary(path, documents.num_rows, with_abstract, round(time.monotonic() - started, 3))
