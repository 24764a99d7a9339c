"""Fetch one partition: every page one provider returns for one saved search and one day."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from scholar_pipeline.client.masking import MASKED_HEADER
from scholar_pipeline.client.provider_client import FetchedPage, ProviderClient, ProviderRequestError
from scholar_pipeline.landing import LandingZone, PageEntry
from scholar_pipeline.normalize import RecordError, normalize_page_checked
from scholar_pipeline.providers.base import MalformedPage, PageRequest, PartitionTooLarge, Provider
from scholar_pipeline.settings import ProviderSettings
from scholar_pipeline.works import hash_of_records


class PartitionFetchError(RuntimeError):
    """Raised with the provider, saved search and day in the message."""


@dataclass(frozen=True)
class FetchedPartition:
    pages: list[PageEntry]  # bodies are already in the landing zone
    total_reported: int | None
    content_hash: str  # over the normalized records: moves only when a record changed


def fetch_partition(
    client: ProviderClient, provider: Provider, settings: ProviderSettings, landing: LandingZone, *, query: str, text: str,
    day: dt.date, mailto: str | None, live: bool = False, log=None,
) -> FetchedPartition:
    """Page to the end, all from the cache or all from the provider, never a mix of both.

    A chain is one answer of the provider: a cursor can be server-side state (Crossref
    sends one cursor string for the whole scroll, moves it on each use and expires it
    after five minutes), and a provider's answer changes between fetches. So whether a
    chain is replayed is decided by its first page: after a live first page every later
    page is fetched live too, and a replay that misses or breaks part-way starts again
    live from the first page. A page is cached under its place in the chain *and* the hash
    of the page before it (`chain_cache_key`), so a cached page can only follow the very
    page it followed when it was fetched: a live chain that stopped half-way, or two runs
    fetching the same partition at once, cannot leave a replayable mix of two answers.
    `live` skips the cache from the start (monitoring re-fetches).

    Where a failed request may have moved a server-side cursor (`cursor_moves_on_use`), a
    page after the first that was retried after such a failure (anything but a 429) could be
    the page after the one asked for, so the chain is fetched again live from its first
    page, up to `MAX_CHAIN_RESTARTS` times.
    """
    chain = _PagingChain(client, provider, settings, landing, provider.first_request(text, day, settings.page_size, mailto),
                         where=f"{provider.name} / saved search {query!r} / {day}", log=log)
    for attempt in range(MAX_CHAIN_RESTARTS):
        try:
            return chain.fetch(live=live or attempt > 0)
        except _ChainRestart as reason:
            if log is not None:
                log.warning(f"{chain.where}: {reason}; fetching the whole chain again without the cache")
    try:
        return chain.fetch(live=True)
    except _ChainRestart as reason:
        raise PartitionFetchError(
            f"{chain.where}: {reason}; this happened on {MAX_CHAIN_RESTARTS + 1} fetches of the whole chain in a row, so the "
            "provider is failing too often to page through this day: retry the partition later"
        ) from None


def chain_cache_key(first_url: str, page_number: int, previous_page_sha256: str) -> str:
    """A page's cache key: its place in its chain, not its URL (Crossref repeats one cursor string on every page),
    bound to the page before it."""
    return hashlib.sha256(f"{first_url}#page={page_number}#after={previous_page_sha256}".encode()).hexdigest()


MAX_CHAIN_RESTARTS = 3


class _ChainRestart(Exception):
    """The chain must be fetched again live from its first page; the message says why."""


class _CachedChainBroken(_ChainRestart):
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

    def fetch(self, live: bool) -> FetchedPartition:
        request: PageRequest | None = self.first_request
        pages: list[PageEntry] = []
        record_hashes: list[str] = []
        total, records = None, 0
        while request is not None:
            number = len(pages) + 1
            replaying = bool(pages) and pages[0].from_cache
            key = chain_cache_key(self.client.url_for(self.first_request), number, pages[-1].sha256 if pages else "")
            page = self._get(request, key, number, live=live or (bool(pages) and not replaying), replaying=replaying)
            if page.attempts_that_may_have_reached and pages and self.provider.cursor_moves_on_use:
                self.client.evict(key)
                raise _ChainRestart(f"page {number} was answered after a failed attempt that may have reached {self.provider.name}, "
                                    "which moves its cursor on every request it handles, so the answer may be the page after "
                                    "the one asked for")
            info, hashes = self._read(request, page, key, number)
            pages.append(self.landing.land_page(number, page, info.records, info.total, info.superseded))
            record_hashes += hashes
            records += info.records
            total = info.total if info.total is not None else total
            if max(records, total or 0) > self.settings.max_records:  # said by the first page that shows it
                raise PartitionFetchError(
                    f"{self.where}: more than {self.settings.max_records} records (the provider reports {total}); narrow "
                    f"the saved search or raise SCHOLAR_PIPELINE_{self.provider.name.upper()}_MAX_RECORDS"
                )
            if self.log is not None and MASKED_HEADER in page.headers:
                self.log.warning(f"{self.where}: page {number}: the provider echoed the API key "
                                 f"{page.headers[MASKED_HEADER]} time(s) in its answer; it is masked as *** in what was landed")
            if self.log is not None:
                self.log.info(f"{self.where}: page {number}: {info.records} records ({records} of {total}; "
                              f"cache {'hit' if page.from_cache else 'miss'})")
            request = info.next_request
        return FetchedPartition(pages=pages, total_reported=total, content_hash=hash_of_records(record_hashes))

    def _get(self, request: PageRequest, key: str, number: int, *, live: bool, replaying: bool) -> FetchedPage:
        try:
            page = self.client.get(request, cache_key=key, refresh=live)
        except ProviderRequestError as error:
            if replaying:
                raise _CachedChainBroken(f"page {number} failed after cached pages ({error})") from None
            raise PartitionFetchError(f"{self.where}: page {number}: {error}") from None
        if replaying and not page.from_cache:
            raise _CachedChainBroken(f"page {number} was not in the cache although the pages before it were")
        return page

    def _read(self, request: PageRequest, page: FetchedPage, key: str, number: int):
        """What the page says about paging, and the hashes of its records; a rejected page leaves the cache."""
        try:
            info = self.provider.inspect(request, page.body)
            if info.total is not None and type(info.total) is not int:
                raise MalformedPage(f"the total it reports is {info.total!r}, not a number")
            counted = request.holds_records and not info.superseded
            hashes = normalize_page_checked(self.provider.name, page.body).table.column("record_hash").to_pylist() if counted else []
        except PartitionTooLarge as error:
            raise PartitionFetchError(f"{self.where}: {error}") from None
        except MalformedPage as error:
            self.client.evict(key)
            if page.from_cache:
                raise _CachedChainBroken(f"cached page {number} is unusable ({error})") from None
            raise PartitionFetchError(
                f"{self.where}: page {number} is unusable: {error}. URL: {page.url}. It was not kept in the HTTP cache, "
                "so a rerun asks the provider again."
            ) from None
        except (RecordError, ValueError, TypeError) as error:  # a record the parser cannot read, named where it can be
            self.client.evict(key)
            raise PartitionFetchError(
                f"{self.where}: page {number}: {type(error).__name__}: {error}. URL: {page.url}. The page was not kept in "
                "the HTTP cache; a rerun asks the provider again."
            ) from None
        return info, hashes
