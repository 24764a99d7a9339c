"""Figure 9: `scholar-pipeline search` latency over an index of 100k works. Target: BM25 and semantic each under 200 ms.

The works are generated: titles and abstracts drawn from a vocabulary of 20,000 words with
a Zipf-like spread, so BM25's postings are as uneven as real text's. The index is built by
the pipeline's own code (`build_search_index`, BM25); its embeddings are random unit
vectors, since a query's cost (embedding the query, then a cosine scan of every work)
does not depend on what the vectors mean, and embedding 100k real texts takes minutes.
Each query is timed whole, as the command runs it on an open index: median and p95 of 30.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from scholar_pipeline.search.embeddings import DIMENSIONS, semantic_installed
from scholar_pipeline.search.index import build_search_index, index_path, read_documents
from scholar_pipeline.search.query import SearchIndex

WORKS = 100_000
VOCABULARY = 20_000
QUERIES = 30
TARGET_MS = 200


def _unique_works(rng: np.random.Generator) -> pa.Table:
    words = np.array([f"w{n}" for n in range(VOCABULARY)])
    weights = 1 / np.arange(1, VOCABULARY + 1)
    weights /= weights.sum()

    def texts(length: int) -> list[str]:
        return [" ".join(row) for row in words[rng.choice(VOCABULARY, size=(WORKS, length), p=weights)]]

    ids = [f"work-{n:06d}" for n in range(WORKS)]
    return pa.table({
        "work_id": ids, "doi": [f"10.1234/{n}" for n in range(WORKS)], "title": texts(10), "abstract": texts(120),
        "publication_date": pa.array(np.datetime64("2020-01-01") + rng.integers(0, 1800, WORKS).astype("timedelta64[D]")),
        "queries": [["bench"]] * WORKS,
        "sources": [[{"query": "bench", "provider": "openalex", "provider_id": i, "partition_date": None,
                      "record_hash": ""}] for i in ids],
    })


def _timed(index: SearchIndex, queries: list[str], mode: str) -> dict:
    index.search(queries[0], mode=mode)  # warm: the model loads once per process, the file's pages once
    times = []
    for text in queries:
        started = time.perf_counter()
        index.search(text, mode=mode, limit=10)
        times.append((time.perf_counter() - started) * 1000)
    p95 = sorted(times)[int(0.95 * len(times)) - 1]
    return {"mode": mode, "works": WORKS, "median_ms": round(statistics.median(times), 1), "p95_ms": round(p95, 1),
            "target_ms": TARGET_MS, "p95_vs_target": round(p95 / TARGET_MS, 2)}


def run() -> list[dict]:
    rng = np.random.default_rng(9)
    with tempfile.TemporaryDirectory() as home:
        con = duckdb.connect()
        con.register("generated", _unique_works(rng))
        con.execute("CREATE TABLE unique_works AS SELECT * FROM generated")
        started = time.perf_counter()
        build_search_index(read_documents(con), Path(home), semantic=False)
        built_s = time.perf_counter() - started
        vectors = rng.standard_normal((WORKS, DIMENSIONS)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        with duckdb.connect(str(index_path(Path(home)))) as index_con:  # where the semantic build puts them
            index_con.register("vectors", pa.table({
                "work_id": index_con.execute("SELECT work_id FROM documents ORDER BY work_id").fetch_arrow_table().column(0),
                "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), DIMENSIONS)}))
            index_con.execute(f"ALTER TABLE documents ADD COLUMN embedding FLOAT[{DIMENSIONS}]")
            index_con.execute(f"UPDATE documents SET embedding = vectors.embedding::FLOAT[{DIMENSIONS}] FROM vectors "
                              "WHERE documents.work_id = vectors.work_id")
            index_con.execute("CHECKPOINT")
        queries = [" ".join(f"w{n}" for n in rng.integers(10, 2000, 3)) for _ in range(QUERIES)]
        modes = ["bm25", "semantic", "hybrid"] if semantic_installed() else ["bm25"]
        with SearchIndex.open(Path(home)) as index:
            rows = [_timed(index, queries, mode) for mode in modes]
    return [row | {"index_build_s": round(built_s, 1)} for row in rows]
