"""Fetch one partition: every page one provider returns for one saved search and one day."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from scholar_pipeline.client.provider_client import ProviderClient, ProviderRequestError
from scholar_pipeline.landing import LandingZone, PageEntry
from scholar_pipeline.providers.base import MalformedPage, PageRequest, Provider
from scholar_pipeline.settings import ProviderSettings


class PartitionFetchError(RuntimeError):
    """Raised with the provider, saved search and day in the message."""


@dataclass(frozen=True)
class FetchedPartition:
    pages: list[PageEntry]  # bodies are already in the landing zone
    total_reported: int | None


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
    chain = _PagingChain(client, provider, settings, landing, provider.first_request(text, day, settings.page_size, mailto),
                         where=f"{provider.name} / saved search {query!r} / {day}", log=log)
    try:
        return chain.fetch(refresh=False)
    except _CachedChainBroken as broken:
        if log is not None:
            log.warning(f"{chain.where}: {broken}; fetching the whole chain again without the cache")
        return chain.fetch(refresh=True)


class _CachedChainBroken(Exception):
    pass


@dataclass(frozen=True)
class _PagingChain:
    client: ProviderClient
    provider: Provider
    settings: ProviderSettings
    landing: LandingZone
    first_request: PageRequest
    where: str
    log: object = None

    def cache_key(self, page_number: int) -> str:
        """A page's place in its chain, not its URL: Crossref repeats one cursor string on every page."""
        return hashlib.sha256(f"{self.client.url_for(self.first_request)}#page={page_number}".encode()).hexdigest()

    def fetch(self, refresh: bool) -> FetchedPartition:
        request: PageRequest | None = self.first_request
        pages: list[PageEntry] = []
        total, records = None, 0
        while request is not None:
            number = len(pages) + 1
            replaying = any(p.from_cache for p in pages)
            try:
                page = self.client.get(request, cache_key=self.cache_key(number), refresh=refresh)
            except ProviderRequestError as error:
                if replaying:
                    raise _CachedChainBroken(f"page {number} failed after cached pages ({error})") from None
                raise PartitionFetchError(f"{self.where}: page {number}: {error}") from None
            if replaying and not page.from_cache:
                raise _CachedChainBroken(f"page {number} was not in the cache although the pages before it were")
            try:
                info = self.provider.inspect(request, page.body)
            except MalformedPage as error:
                raise PartitionFetchError(f"{self.where}: page {number} is unusable: {error}. URL: {page.url}") from None
            pages.append(self.landing.land_page(number, page, info.records))
            records += info.records
            total = info.total if info.total is not None else total
            if records > self.settings.max_records:
                raise PartitionFetchError(
                    f"{self.where}: more than {self.settings.max_records} records (the provider reports {total}); narrow "
                    f"the saved search or raise SCHOLAR_PIPELINE_{self.provider.name.upper()}_MAX_RECORDS"
                )
            if self.log is not None:
                self.log.info(f"{self.where}: page {number}: {info.records} records ({records} of {total}; "
                              f"cache {'hit' if page.from_cache else 'miss'})")
            request = info.next_request
        return FetchedPartition(pages=pages, total_reported=total)
