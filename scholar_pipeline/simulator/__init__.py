"""A provider simulator for offline tests, demos and benchmarks (see server.py)."""

from scholar_pipeline.simulator.corpus import Corpus
from scholar_pipeline.simulator.server import ProviderSimulator

__all__ = ["Corpus", "ProviderSimulator"]
