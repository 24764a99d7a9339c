"""Fetch one partition: every page one provider returns for one saved search and one day."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from scholar_pipeline.client.provider_client import ProviderClient, ProviderRequestError
from scholar_pipeline.landing import LandingZone, PageEntry
from scholar_pipeline.providers.base import MalformedPage, Provider
from scholar_pipeline.settings import ProviderSettings


class PartitionFetchError(RuntimeError):
    """Raised with the provider, saved search and day in the message."""


@dataclass(frozen=True)
class FetchedPartition:
    pages: list[PageEntry]  # bodies are already in the landing zone
    total_reported: int | None

    @property
    def records(self) -> int:
        return sum(p.records for p in self.pages)


def fetch_partition(
    client: ProviderClient, provider: Provider, settings: ProviderSettings, landing: LandingZone, *, query: str, text: str,
    day: dt.date, mailto: str | None, log=None,
) -> FetchedPartition:
    """Page to the end, from the cache or from the provider, never a mix of both.

    A cursor can be server-side state (Crossref sends one cursor string for the whole
    scroll and moves it on each use; it expires after five minutes), so a live page that
    follows cached ones may come from another point of the scroll, or fail. When a chain
    replayed from the cache misses or breaks part-way, it is fetched again from the first
    page, bypassing the cache."""
    where = f"{provider.name} / saved search {query!r} / {day}"
    try:
        return _fetch_chain(client, provider, settings, landing, where, text, day, mailto, log, refresh=False)
    except _CachedChainBroken as broken:
        if log is not None:
            log.warning(f"{where}: {broken}; fetching the whole chain again without the cache")
        return _fetch_chain(client, provider, settings, landing, where, text, day, mailto, log, refresh=True)


class _CachedChainBroken(Exception):
    pass


def _fetch_chain(client, provider, settings, landing, where, text, day, mailto, log, refresh: bool) -> FetchedPartition:
    request = provider.first_request(text, day, settings.page_size, mailto)
    chain = client.url_for(request)
    pages: list[PageEntry] = []
    total, records = None, 0
    while request is not None:
        cache_key = hashlib.sha256(f"{chain}#page={len(pages) + 1}".encode()).hexdigest()
        replaying = any(p.from_cache for p in pages)
        try:
            page = client.get(request, cache_key=cache_key, refresh=refresh)
        except ProviderRequestError as error:
            if replaying:
                raise _CachedChainBroken(f"page {len(pages) + 1} failed after cached pages ({error})") from None
            raise PartitionFetchError(f"{where}: page {len(pages) + 1}: {error}") from None
        if replaying and not page.from_cache:
            raise _CachedChainBroken(f"page {len(pages) + 1} was not in the cache although the pages before it were")
        try:
            info = provider.inspect(request, page.body)
        except MalformedPage as error:
            raise PartitionFetchError(f"{where}: page {len(pages) + 1} is unusable: {error}. URL: {page.url}") from None
        pages.append(landing.land_page(len(pages) + 1, page, info.records))
        records += info.records
        total = info.total if info.total is not None else total
        if records > settings.max_records:
            raise PartitionFetchError(
                f"{where}: more than {settings.max_records} records (the provider reports {total}); narrow the saved "
                f"search or raise SCHOLAR_PIPELINE_{provider.name.upper()}_MAX_RECORDS"
            )
        if log is not None:
            log.info(f"{where}: page {len(pages)}: {info.records} records ({records} of {total}; cache {'hit' if page.from_cache else 'miss'})")
        request = info.next_request
    return FetchedPartition(pages=pages, total_reported=total)
