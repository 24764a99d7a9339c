"""Resources: the scholarly-API client layer and the warehouse (DuckDB file or DuckLake), configured from the environment."""


import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import dagster as dg

from scholar_pipeline.client.masking import check_secret
from scholar_pipeline.client.provider_client import ProviderClient, RetryPolicy
from scholar_pipeline.client.stack import cache_storage, open_provider_client
from scholar_pipeline.landing import LandingZone
from scholar_pipeline.providers.base import MissingCredential, Provider
from scholar_pipeline.settings import ProviderSettings, cache_url, mailto, pipeline_home, provider_settings
from scholar_pipeline.warehouse_backends import DATA_PATH_ENV, WAREHOUSE_ENV, Warehouse, warehouse_at

# Contract env var of each secret -> the resource field that receives it (as a dg.EnvVar).
SECRET_FIELDS = {
    "OPENALEX_API_KEY": "openalex_api_key",
    "PUBMED_API_KEY": "pubmed_api_key",
    "SPRINGER_NATURE_API_KEY": "springer_nature_api_key",
    "CORE_API_KEY": "core_api_key",
    "CROSSREF_PLUS_TOKEN": "crossref_plus_token",
}


class ScholarApiResource(dg.ConfigurableResource):
    """HTTP access to every provider: shared cache, cross-process rate limits, retries, secrets kept out of storage."""

    home: str
    mailto: Optional[str] = None
    cache_ttl_seconds: float = 86_400.0
    cache_url: Optional[str] = None  # redis://host:port/db to share the response cache; SQLite under home otherwise
    timeout_seconds: float = 60.0  # each connect and socket read
    request_deadline_seconds: float = 300.0  # a whole response, however slowly it trickles in
    max_attempts: int = 6
    backoff_seconds: float = 1.0
    openalex_api_key: Optional[str] = None
    pubmed_api_key: Optional[str] = None
    springer_nature_api_key: Optional[str] = None
    core_api_key: Optional[str] = None
    crossref_plus_token: Optional[str] = None

    @property
    def home_path(self) -> Path:
        return Path(self.home)

    @property
    def landing(self) -> LandingZone:
        return LandingZone(self.home_path / "landing")

    def settings_for(self, provider: Provider) -> ProviderSettings:
        return provider_settings(provider.name, provider.default_settings(self.mailto, keyed=self.secret_for(provider) is not None))

    def secret_for(self, provider: Provider) -> str | None:
        if provider.credential is None:
            return None
        secret = getattr(self, SECRET_FIELDS[provider.credential.env]) or None
        return check_secret(provider.credential.env, secret) if secret else None

    @contextmanager
    def client(self, provider: Provider, log=None) -> Iterator[ProviderClient]:
        """The provider's client; MissingCredential at once, before any request, when a required key is not set."""
        secret = self.secret_for(provider)
        if secret is None and provider.credential is not None and provider.credential.required:
            raise MissingCredential(provider.name, provider.credential)
        settings = self.settings_for(provider)
        storage = cache_storage(self.home_path, self.cache_ttl_seconds, self.cache_url)
        with open_provider_client(
            provider,
            settings,
            home=self.home_path,
            storage=storage,
            secret=secret,
            mailto=self.mailto,
            timeout_seconds=self.timeout_seconds,
            deadline_seconds=self.request_deadline_seconds,
            retry=RetryPolicy(max_attempts=self.max_attempts, backoff_seconds=self.backoff_seconds, max_wait_seconds=settings.max_retry_wait),
            log=log,
        ) as client:
            yield client


def scholar_api_from_env() -> ScholarApiResource:
    """Secrets are passed as dg.EnvVar, so run config and the event log only ever hold their names."""
    secrets = {field: dg.EnvVar(env) for env, field in SECRET_FIELDS.items() if os.environ.get(env)}
    return ScholarApiResource(home=str(pipeline_home()), mailto=mailto(), cache_url=cache_url(), **secrets)


class WarehouseResource(dg.ConfigurableResource):
    """The warehouse the runs land in and the dataset reads: the DuckDB file under `home`, or DuckLake when
    `location` is `ducklake:postgres:<libpq string>` (from SCHOLAR_PIPELINE_WAREHOUSE, passed as a dg.EnvVar so
    that a password in it never reaches run config or the event log)."""

    home: str
    location: Optional[str] = None
    data_path: Optional[str] = None

    @property
    def backend(self) -> Warehouse:
        return warehouse_at(self.location, self.data_path, Path(self.home))


def warehouse_from_env() -> WarehouseResource:
    optional = {field: dg.EnvVar(env) for env, field in ((WAREHOUSE_ENV, "location"), (DATA_PATH_ENV, "data_path"))
                if os.environ.get(env)}
    return WarehouseResource(home=str(pipeline_home()), **optional)


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(
        resources={
            "scholar_api": scholar_api_from_env(),
            "warehouse": warehouse_from_env(),
        }
    )
