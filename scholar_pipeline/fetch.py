"""Fetch one partition: every page one provider returns for one saved search and one day."""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

from scholar_pipeline.client.masking import MASKED_HEADER
from scholar_pipeline.client.provider_client import FetchedPage, ProviderClient, ProviderRequestError
from scholar_pipeline.landing import LandingZone, PageEntry
from scholar_pipeline.normalize import RecordError, normalize_page_checked
from scholar_pipeline.providers.base import MalformedPage, PageInfo, PageRequest, PartitionTooLarge, Provider
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
    page, up to `MAX_CHAIN_RESTARTS` times; so it is when the provider says its cursor
    expired (`Provider.cursor_expired`), or when the answer changed under the chain. A page
    the provider module refuses is asked for again (`_PagingChain._usable_page`); every
    refused answer fetched live is kept in the quarantine for diagnosis.
    """
    chain = _PagingChain(client, provider, settings, landing, provider.first_request(text, day, settings.page_size, mailto),
                         query=query, day=day, log=log)
    for attempt in range(MAX_CHAIN_RESTARTS):
        try:
            return chain.fetch(live=live or attempt > 0, final=False)
        except _ChainRestart as reason:
            if log is not None:
                log.warning(f"{chain.where}: {reason}; fetching the whole chain again without the cache")
    try:
        return chain.fetch(live=True, final=True)
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
# A long fetch says how far it got at most this often: a line per page would cost a stored event per page, and most
# partitions are a page or two (the run says what each partition fetched when it is done).
PROGRESS_EVERY_SECONDS = 10.0
UNUSABLE_PAGE_ATTEMPTS = 3  # a page the provider module refuses is asked for this many times before the partition fails


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
    query: str
    day: dt.date
    log: object = None

    @property
    def where(self) -> str:
        return f"{self.provider.name} / saved search {self.query!r} / {self.day}"

    def fetch(self, live: bool, final: bool) -> FetchedPartition:
        """One fetch of the chain; `final` when no restart is left (an empty page short of the total is then its end)."""
        request: PageRequest | None = self.first_request
        pages: list[PageEntry] = []
        record_hashes: list[str] = []
        total, records = None, 0
        said_at = time.monotonic()
        while request is not None:
            number = len(pages) + 1
            replaying = bool(pages) and pages[0].from_cache
            key = chain_cache_key(self.client.url_for(self.first_request), number, pages[-1].sha256 if pages else "")
            page, info, hashes = self._usable_page(request, key, number, live=live or (bool(pages) and not replaying),
                                                   replaying=replaying, records_before=records, total_before=total, final=final)
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
            if self.log is not None and time.monotonic() - said_at >= PROGRESS_EVERY_SECONDS:
                self.log.info(f"{self.where}: page {number}: {records} of {total} records so far "
                              f"(cache {'hit' if page.from_cache else 'miss'})")
                said_at = time.monotonic()
            request = info.next_request
        return FetchedPartition(pages=pages, total_reported=total, content_hash=hash_of_records(record_hashes))

    def _usable_page(self, request: PageRequest, key: str, number: int, *, live: bool, replaying: bool,
                     records_before: int, total_before: int | None, final: bool) -> tuple[FetchedPage, PageInfo, list[str]]:
        """A page the provider module accepts, asking again (live) up to `UNUSABLE_PAGE_ATTEMPTS` times.

        An unusable answer (not the wire format, an HTML error page with status 200, an empty
        page before the reported total) is often a passing fault of the provider or a proxy.
        Each one leaves the HTTP cache and is kept in the landing zone's quarantine; where
        asking again would move a server-side cursor on, the whole chain starts again instead.
        An empty page short of a total that did not move, still so when asked for the last
        time, is the provider's considered answer: taken as the end, and the partition's
        shortfall fails `matches_provider_total` as an error (no record that did come is lost).
        """
        refusal = None
        for attempt in range(1, UNUSABLE_PAGE_ATTEMPTS + 1):
            if attempt > 1:
                time.sleep(min(self.client.retry.backoff_seconds * 2 ** (attempt - 2), self.client.retry.max_wait_seconds))
            page = self._get(request, key, number, live=live or attempt > 1, replaying=replaying)
            if page.attempts_that_may_have_reached and number > 1 and self.provider.cursor_moves_on_use:
                self.client.evict(key)
                raise _ChainRestart(f"page {number} was answered after a failed attempt that may have reached {self.provider.name}, "
                                    "which moves its cursor on every request it handles, so the answer may be the page after "
                                    "the one asked for")
            last_word = final if self.provider.cursor_moves_on_use else attempt == UNUSABLE_PAGE_ATTEMPTS
            try:
                info, hashes = self._read(request, page, key, number, records_before, total_before, accept_early_end=last_word)
            except MalformedPage as error:
                self.client.evict(key)
                if page.from_cache:
                    raise _CachedChainBroken(f"cached page {number} is unusable ({error})") from None
                kept = self._quarantine(number, page.url, page.status, page.headers, page.body, str(error))
                refusal = f"{error}. URL: {page.url}. The answer is kept in {kept}"
                if number > 1 and self.provider.cursor_moves_on_use:
                    raise _ChainRestart(f"page {number} is unusable ({refusal}), and asking again would move "
                                        f"{self.provider.name}'s cursor on") from None
                if self.log is not None and attempt < UNUSABLE_PAGE_ATTEMPTS:
                    self.log.warning(f"{self.where}: page {number} is unusable ({error}); asking again (attempt {attempt + 1} "
                                     f"of {UNUSABLE_PAGE_ATTEMPTS}); the answer is kept in {kept}")
                continue
            if attempt == 1 and number == 1 and not info.records and self.provider.doubts_empty_first_page and not page.from_cache:
                if self.log is not None:
                    self.log.info(f"{self.where}: page 1 holds no record; asking once more, since {self.provider.name} "
                                  "now and then answers a day so by mistake")
                continue
            return page, info, hashes
        raise PartitionFetchError(
            f"{self.where}: page {number} is unusable after {UNUSABLE_PAGE_ATTEMPTS} attempts: {refusal}. It was not kept in "
            "the HTTP cache, so a rerun asks the provider again; if the provider keeps answering so, its format may have "
            "changed: report it with that file."
        )

    def _get(self, request: PageRequest, key: str, number: int, *, live: bool, replaying: bool) -> FetchedPage:
        try:
            page = self.client.get(request, cache_key=key, refresh=live)
        except ProviderRequestError as error:
            if replaying:
                raise _CachedChainBroken(f"page {number} failed after cached pages ({error})") from None
            kept = self._quarantine(number, error.url, error.status, {}, error.body, str(error)) if error.body else None
            if number > 1 and error.status is not None and self.provider.cursor_expired(error.status, error.body):
                raise _ChainRestart(f"page {number}: {self.provider.name} says its cursor expired ({error}; the answer is "
                                    f"kept in {kept})") from None
            raise PartitionFetchError(f"{self.where}: page {number}: {error}" + (f" The answer is kept in {kept}." if kept else "")) from None
        if replaying and not page.from_cache:
            raise _CachedChainBroken(f"page {number} was not in the cache although the pages before it were")
        return page

    def _read(self, request: PageRequest, page: FetchedPage, key: str, number: int, records_before: int,
              total_before: int | None, accept_early_end: bool) -> tuple[PageInfo, list[str]]:
        """What the page says about paging, and the hashes of its records; MalformedPage for a page to ask for again."""
        try:
            info = self.provider.inspect(request, page.body)
            if info.total is not None and type(info.total) is not int:
                raise MalformedPage(f"the total it reports is {info.total!r}, not a number")
            counted = request.holds_records and not info.superseded
            if counted and number > 1 and info.records == 0:
                self._refuse_an_early_end(key, number, records_before, total_before, info.total, accept_early_end)
            hashes = normalize_page_checked(self.provider.name, page.body).table.column("record_hash").to_pylist() if counted else []
        except PartitionTooLarge as error:
            raise PartitionFetchError(f"{self.where}: {error}") from None
        except MalformedPage:
            raise
        except (RecordError, ValueError, TypeError) as error:  # a record the parser cannot read: asking again gives it again
            self.client.evict(key)
            kept = self._quarantine(number, page.url, page.status, page.headers, page.body, f"{type(error).__name__}: {error}")
            raise PartitionFetchError(
                f"{self.where}: page {number}: {type(error).__name__}: {error}. URL: {page.url}. The answer is kept in {kept} "
                "and was not kept in the HTTP cache; a rerun asks the provider again."
            ) from None
        return info, hashes

    def _refuse_an_early_end(self, key: str, number: int, records_before: int, total_before: int | None,
                             total: int | None, accept: bool) -> None:
        """An empty page ends a chain only once the records reported have come.

        Short of a total that did not move, the page is out of place (MalformedPage: asked
        again). Short of a total that moved (a backend answering a glitch with 0, records
        added while paging), the answer changed under the chain, so it is fetched again from
        its first page: taking the page as the end would drop the rest of the day.
        """
        expected = max(total_before or 0, total or 0)
        if records_before >= expected:
            return
        if total is not None and total_before is not None and total != total_before:
            self.client.evict(key)
            raise _ChainRestart(f"page {number} is empty and the total moved from {total_before} to {total} while paging, "
                                f"with {records_before} records come: the answer changed under the chain")
        problem = f"it holds no records although {records_before} of the {expected} reported have come"
        if not accept:
            raise MalformedPage(f"{problem}; taking it as the end would drop the rest of the day")
        if self.log is not None:
            self.log.warning(f"{self.where}: page {number} {problem}, also when asked for the last time: taken as the end; "
                             "`matches_provider_total` fails as an error for the records missing")

    def _quarantine(self, number: int, url: str, status: int | None, headers: dict[str, str], body: bytes, cause: str) -> Path:
        return self.landing.quarantine(query=self.query, provider=self.provider.name, day=self.day, number=number, url=url,
                                       status=status, headers=headers, body=body, cause=cause)
