"""The provider registry: one module per API, each holding that API's whole wire format."""

from scholar_pipeline.providers.arxiv import Arxiv
from scholar_pipeline.providers.base import Provider
from scholar_pipeline.providers.core import Core
from scholar_pipeline.providers.crossref import Crossref
from scholar_pipeline.providers.openalex import OpenAlex
from scholar_pipeline.providers.plos import Plos
from scholar_pipeline.providers.pubmed import PubMed
from scholar_pipeline.providers.springer import Springer

PROVIDERS: dict[str, Provider] = {p.name: p for p in (OpenAlex(), Crossref(), Arxiv(), PubMed(), Plos(), Springer(), Core())}
PROVIDER_NAMES = frozenset(PROVIDERS)
