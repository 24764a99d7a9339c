"""The provider registry: one module per API, each holding that API's whole wire format."""

from scholar_pipeline.providers.arxiv import Arxiv
from scholar_pipeline.providers.base import Provider
from scholar_pipeline.providers.crossref import Crossref
from scholar_pipeline.providers.openalex import OpenAlex
from scholar_pipeline.providers.plos import Plos

PROVIDERS: dict[str, Provider] = {p.name: p for p in (OpenAlex(), Crossref(), Plos(), Arxiv())}
PROVIDER_NAMES = frozenset(PROVIDERS)
