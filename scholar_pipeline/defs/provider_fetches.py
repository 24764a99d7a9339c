"""The fetches of a run of many partitions: one thread per provider, each under its own cross-process rate limit.

Fetching is the slow part (the providers' rate limits), so providers go in parallel, each
through one client over its days in order. The threads only fetch: what a fetch produced
is landed and recorded by the step's own thread (`partition_runs.py`), so a run that is
stopped never leaves rows in DuckDB that Dagster did not record. The threads are daemons:
a run cancelled in the UI ends with its process, even while a thread waits out a
provider's long Retry-After; a fetch cut short leaves only whole pages and no manifest.
"""

from __future__ import annotations

import datetime as dt
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from scholar_pipeline.client.usage import Usage
from scholar_pipeline.defs.resources import ScholarApiResource
from scholar_pipeline.fetch import fetch_partition
from scholar_pipeline.landing import Manifest
from scholar_pipeline.providers import PROVIDERS
from scholar_pipeline.providers.base import MissingCredential
from scholar_pipeline.queries import SavedSearch

_POLL_SECONDS = 1.0


@dataclass(frozen=True)
class Fetched:
    """One partition's fetch: its manifest, or why there is none."""

    key: dg.MultiPartitionKey
    manifest: Manifest | None = None
    manifest_path: Path | None = None
    error: str | None = None
    retryable: bool = True  # False when only the user can mend it (a missing key)
    usage: Usage | None = None  # what the fetch spent, failed or not (None: no request was possible)


class ProviderFetches:
    """Fetch `keys` of `search`, a thread per provider; `results()` hands each partition over as its fetch ends."""

    def __init__(self, search: SavedSearch, scholar_api: ScholarApiResource, keys: list[dg.MultiPartitionKey], *,
                 code_version: str, live: bool, log, describe: Callable[[dg.MultiPartitionKey, Exception], str]):
        self.search, self.scholar_api, self.keys = search, scholar_api, keys
        self.code_version, self.live, self.log, self.describe = code_version, live, log, describe
        self._results: queue.Queue[Fetched] = queue.Queue()
        self._stop = threading.Event()
        by_provider: dict[str, list[dg.MultiPartitionKey]] = {}
        for key in keys:
            by_provider.setdefault(key.keys_by_dimension["provider"], []).append(key)
        self._threads = [threading.Thread(target=self._fetch_provider, args=(provider, provider_keys), daemon=True,
                                          name=f"{search.name}-{provider}") for provider, provider_keys in by_provider.items()]

    @property
    def providers(self) -> int:
        return len(self._threads)

    def results(self) -> Iterator[Fetched]:
        """Every key's fetch, in the order they end; the threads stop after their current partition when this is closed."""
        for thread in self._threads:
            thread.start()
        handed: set[str] = set()
        try:
            while len(handed) < len(self.keys):
                try:
                    fetched = self._results.get(timeout=_POLL_SECONDS)
                except queue.Empty:
                    if not any(thread.is_alive() for thread in self._threads) and self._results.empty():
                        yield from self._never_reported(handed)
                        return
                    continue
                handed.add(str(fetched.key))
                yield fetched
        finally:
            self._stop.set()

    def _never_reported(self, handed: set[str]) -> Iterator[Fetched]:
        """Keys whose thread ended without a word (a bug, logged with its traceback): failed, not forgotten."""
        for key in self.keys:
            if str(key) not in handed:
                yield Fetched(key, error=f"{self._where(key)}: its fetch ended without a result; see the run's log")

    def _fetch_provider(self, provider_name: str, keys: list[dg.MultiPartitionKey]) -> None:
        """One provider's days in order, through one client; a result for every key it gets to, whatever happens."""
        remaining = list(keys)
        provider = PROVIDERS[provider_name]
        try:
            with self.scholar_api.client(provider, log=self.log) as client:
                while remaining and not self._stop.is_set():
                    self._results.put(self._fetch_one(client, remaining[0]))
                    remaining.pop(0)
        except MissingCredential as error:  # before any request: only the user can mend it
            for key in remaining:
                self._results.put(Fetched(key, error=f"{self._where(key)}: {error}", retryable=False))
        except Exception as error:  # the client could not be opened or closed: every partition left is reported
            for key in remaining:
                self._results.put(Fetched(key, error=self.describe(key, error)))

    def _fetch_one(self, client, key: dg.MultiPartitionKey) -> Fetched:
        provider_name, day = key.keys_by_dimension["provider"], dt.date.fromisoformat(key.keys_by_dimension["date"])
        provider, landing = PROVIDERS[provider_name], self.scholar_api.landing
        before = client.usage.snapshot()
        try:
            fetched = fetch_partition(
                client, provider, self.scholar_api.settings_for(provider), landing, query=self.search.name,
                text=self.search.text, day=day, mailto=self.scholar_api.mailto, live=self.live, log=self.log,
            )
            manifest, path = landing.write_manifest(
                query=self.search.name, query_text=self.search.text, provider=provider_name, day=day, pages=fetched.pages,
                total_reported=fetched.total_reported, content_hash=fetched.content_hash, code_version=self.code_version,
            )
        except Exception as error:
            return Fetched(key, error=self.describe(key, error), usage=client.usage.snapshot().minus(before))
        return Fetched(key, manifest=manifest, manifest_path=path, usage=client.usage.snapshot().minus(before))

    def _where(self, key: dg.MultiPartitionKey) -> str:
        return where(self.search, key)


def where(search: SavedSearch, key: dg.MultiPartitionKey) -> str:
    """A partition as errors name it."""
    keys = key.keys_by_dimension
    return f"{keys['provider']} / saved search {search.name!r} / {keys['date']}"
