"""The provider registry: one module per API, each holding that API's whole wire format."""

from scholar_pipeline.providers.arxiv import Arxiv
from scholar_pipeline.providers.base import Provider
from scholar_pipeline.providers.crossref import Crossref
from scholar_pipeline.providers.openalex import OpenAlex
from scholar_pipeline.providers.plos import Plos
from scholar_pipeline.providers.pubmed import PubMed

PROVIDERS: dict[str, Provider] = {p.name: p for p in (OpenAlex(), Crossref(), Plos(), Arxiv(), PubMed())}
PROVIDER_NAMES = frozenset(PROVIDERS)
