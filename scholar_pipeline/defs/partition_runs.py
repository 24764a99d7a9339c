"""A run of many partitions of one saved search: each fetched, landed, checked and recorded on its own.

A backfill of a new search over a year on seven providers is 2,555 partitions; a run per
partition pays a process start and a code load (about 15 s here) before its first
request. So runs take ranges of partitions (the backfill policy, the daily schedule), and
this loop gives each partition what a run of its own gives it: its rows replaced in a
transaction of their own with their provenance row, its materializations of `<name>/raw`
and `<name>/works` with their data versions, and its check results (the checks are
partitioned). A partition that fails does not stop the others: the run fails at the end,
naming each failed key and why, and what landed stays recorded, so re-executing the
backfill from failure redoes only the failed keys. Providers are fetched in parallel, a
thread each, every one under its own cross-process rate limit; one provider's days go one
after another, through one client.
"""

from __future__ import annotations

import datetime as dt
import queue
import threading
import traceback
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource

from scholar_pipeline.audit import AuditScope, audit
from scholar_pipeline.defs.data_versions import derived_version_tags, source_version_tags
from scholar_pipeline.defs.resources import ScholarApiResource
from scholar_pipeline.defs.works_checks import LANDING_AUDIT, LANDING_CHECKS, landing_audit, landing_results, evaluation
from scholar_pipeline.fetch import fetch_partition
from scholar_pipeline.metadata import raw_metadata, works_metadata
from scholar_pipeline.providers import PROVIDERS
from scholar_pipeline.providers.base import MissingCredential
from scholar_pipeline.queries import SavedSearch
from scholar_pipeline.settings import drift_severity
from scholar_pipeline.warehouse import ProvenanceRow, replace_partition, write_connection
from scholar_pipeline.works import WORKS_CODE_VERSION, staged_rows

RAW_CODE_VERSION = "raw-v2"
# Run tag that makes `<name>/raw` skip the HTTP cache: monitoring re-fetches must see today's answer.
FETCH_TAG, FETCH_LIVE = "scholar_pipeline/fetch", "live"
_SHOWN_FINDINGS = 20


@dataclass
class _Outcome:
    """What one partition produced, handed from its provider's thread to the run's thread, which records it."""

    key: str
    raw: dg.AssetMaterialization | None = None
    works: dict | None = None  # the metadata of its `works` materialization, once landed
    landed_from: dg.EventLogRecord | None = None  # the recorded fetch that `works` landed, when not this run's
    checks: list[dg.AssetCheckResult] = field(default_factory=list)
    error: str | None = None
    retryable: bool = True


class SavedSearchRun:
    """The partitions of one run of `<name>/raw` and `<name>/works` (or of some of them, or of their checks alone)."""

    def __init__(self, context: dg.AssetExecutionContext, search: SavedSearch, scholar_api: ScholarApiResource,
                 duckdb: DuckDBResource):
        self.context, self.search, self.scholar_api, self.database = context, search, scholar_api, Path(duckdb.database)
        self.raw_key, self.works_key = dg.AssetKey([search.name, "raw"]), dg.AssetKey([search.name, "works"])
        self.fetch = self.raw_key in context.selected_asset_keys
        self.land = self.works_key in context.selected_asset_keys
        self.checks = {key.name for key in context.selected_asset_check_keys}
        self.live = context.run.tags.get(FETCH_TAG) == FETCH_LIVE
        partitions = context.assets_def.partitions_def
        self.keys = [partitions.get_partition_key_from_str(key) for key in context.partition_keys]
        self.done = 0

    def events(self) -> Iterator[dg.AssetMaterialization | dg.AssetCheckEvaluation]:
        """Every partition's events as it finishes; a `dg.Failure` naming the failed partitions at the end."""
        unlanded_checks = sorted((self.checks & set(LANDING_CHECKS)) - ({*LANDING_CHECKS} if self.land else set()))
        if unlanded_checks:
            raise dg.Failure(f"{', '.join(unlanded_checks)} are evaluated as {self.works_key.to_user_string()} lands a "
                             "partition: materialize it for these partitions to check them again", allow_retries=False)
        # A bad setting fails the run before anything is fetched or written.
        severity = dg.AssetCheckSeverity[drift_severity().upper()] if self.land else None
        recorded = {} if self.fetch or not self.land else {key: self._latest(self.raw_key, key) for key in self.keys}
        by_provider: dict[str, list[str]] = {}
        for key in self.keys:
            by_provider.setdefault(key.keys_by_dimension["provider"], []).append(key)
        self.context.log.info(f"{self.search.name}: {len(self.keys)} partitions, {len(by_provider)} providers in parallel")

        outcomes: queue.Queue[_Outcome] = queue.Queue()
        stop = threading.Event()
        failed: dict[str, _Outcome] = {}
        with ThreadPoolExecutor(max_workers=len(by_provider), thread_name_prefix=self.search.name) as pool:
            for provider, keys in by_provider.items():
                pool.submit(self._provider_partitions, provider, keys, recorded, severity, outcomes, stop)
            try:
                for _ in self.keys:
                    outcome = outcomes.get()
                    if outcome.error is not None:
                        failed[outcome.key] = outcome
                    yield from self._record(outcome)
            finally:
                stop.set()  # an interrupted run: each thread ends after its current partition
        if failed:
            raise self._failure(failed)

    def _provider_partitions(self, provider_name: str, keys: list[str], recorded: dict, severity, outcomes: queue.Queue,
                             stop: threading.Event) -> None:
        """One provider's partitions in order, through one client; exactly one outcome per key, whatever happens."""
        remaining = list(keys)
        try:
            provider = PROVIDERS[provider_name]
            with self.scholar_api.client(provider, log=self.context.log) if self.fetch else nullcontext() as client:
                while remaining and not stop.is_set():
                    outcomes.put(self._partition(client, remaining[0], recorded.get(remaining[0]), severity))
                    remaining.pop(0)
        except MissingCredential as error:  # before any request: only the user can mend it
            for key in remaining:
                outcomes.put(_Outcome(key, error=f"{self._where(key)}: {error}", retryable=False))
        except Exception as error:  # the client could not be opened or closed: every partition left is reported
            for key in remaining:
                outcomes.put(_Outcome(key, error=self._describe(key, error)))

    def _partition(self, client, key: dg.MultiPartitionKey, recorded: dg.EventLogRecord | None, severity) -> _Outcome:
        outcome = _Outcome(key)
        provider_name, day = key.keys_by_dimension["provider"], dt.date.fromisoformat(key.keys_by_dimension["date"])
        try:
            manifest_path, raw_run_id = None, self.context.run.run_id
            if self.fetch:
                manifest_path = self._fetch(client, provider_name, day, outcome)
            elif self.land:
                if recorded is None:
                    raise dg.Failure(f"{self.raw_key.to_user_string()} has no materialization for partition {key}; "
                                     "materialize it (or the whole group) for this partition first")
                manifest_path = Path(recorded.asset_materialization.metadata["manifest"].value)
                raw_run_id, outcome.landed_from = recorded.run_id, recorded
            if self.land:
                self._land(manifest_path, raw_run_id, provider_name, day, severity, outcome)
            if LANDING_AUDIT in self.checks:
                outcome.checks.append(self._audit(provider_name, day))
        except Exception as error:
            outcome.error = self._describe(key, error)
        return outcome

    def _fetch(self, client, provider_name: str, day: dt.date, outcome: _Outcome) -> Path:
        provider, landing = PROVIDERS[provider_name], self.scholar_api.landing
        fetched = fetch_partition(
            client, provider, self.scholar_api.settings_for(provider), landing, query=self.search.name, text=self.search.text,
            day=day, mailto=self.scholar_api.mailto, live=self.live, log=self.context.log,
        )
        manifest, path = landing.write_manifest(
            query=self.search.name, query_text=self.search.text, provider=provider_name, day=day, pages=fetched.pages,
            total_reported=fetched.total_reported, content_hash=fetched.content_hash, code_version=RAW_CODE_VERSION,
        )
        self.context.log.info(f"{provider_name} / {self.search.name} / {day}: {manifest.records} records in "
                              f"{len(manifest.pages)} pages landed")
        # The data version is what the records say, not the bytes: providers send fields that change on every call.
        outcome.raw = dg.AssetMaterialization(
            asset_key=self.raw_key, partition=outcome.key, metadata=raw_metadata(manifest, path),
            tags=source_version_tags(manifest.content_hash, RAW_CODE_VERSION),
        )
        return path

    def _land(self, manifest_path: Path, raw_run_id: str, provider_name: str, day: dt.date, severity, outcome: _Outcome) -> None:
        """Normalize the pages into a staging file first, then take the writer lock for the swap alone: the lock blocks
        every other run's landing on the machine."""
        manifest = self.scholar_api.landing.read_manifest(manifest_path)
        with staged_rows(self.scholar_api.landing, manifest) as rows:
            provenance = ProvenanceRow.of(manifest, manifest_path, rows, run_id=self.context.run.run_id, raw_run_id=raw_run_id,
                                          code_version=WORKS_CODE_VERSION)
            with write_connection(self.database, self.scholar_api.home_path, log=self.context.log) as con:
                rows_in_duckdb = replace_partition(con, rows, provenance)
        self.context.log.info(f"{provider_name} / {self.search.name} / {day}: {rows_in_duckdb} rows in `works` "
                              f"({rows.duplicates_dropped} duplicates dropped)")
        outcome.works = works_metadata(rows, manifest, manifest_path, code_version=WORKS_CODE_VERSION)
        outcome.checks += [result for result in landing_results(manifest, rows, rows_in_duckdb, provider_name, severity)
                           if result.check_name in self.checks]

    def _audit(self, provider_name: str, day: dt.date) -> dg.AssetCheckResult:
        scope = AuditScope(query=self.search.name, provider=provider_name, day=day)
        findings = audit(self.scholar_api.home_path, self.database, log=self.context.log.info, scope=scope)
        for finding in findings[:_SHOWN_FINDINGS]:
            self.context.log.warning(str(finding))
        return landing_audit(findings, str(scope))

    def _record(self, outcome: _Outcome) -> Iterator[dg.AssetMaterialization | dg.AssetCheckEvaluation]:
        """A partition's events, in the run's thread (Dagster takes events from the step's own generator)."""
        if outcome.raw is not None:
            yield outcome.raw
        target = None
        if outcome.works is not None:
            landed_from = outcome.landed_from or self._latest(self.raw_key, outcome.key)
            yield dg.AssetMaterialization(asset_key=self.works_key, partition=outcome.key, metadata=outcome.works,
                                          tags=derived_version_tags(WORKS_CODE_VERSION, {self.raw_key: landed_from}))
        if outcome.checks:
            target = self._latest(self.works_key, outcome.key)
        for result in outcome.checks:
            yield evaluation(result, self.works_key, outcome.key, target)
        self.done += 1
        if outcome.error is not None:
            self.context.log.error(f"{outcome.key} failed ({self.done} of {len(self.keys)} partitions done): {outcome.error}")
        elif len(self.keys) > 1:
            self.context.log.info(f"{outcome.key} done ({self.done} of {len(self.keys)} partitions)")

    def _latest(self, asset_key: dg.AssetKey, partition: str) -> dg.EventLogRecord | None:
        records = self.context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=[partition]), limit=1).records
        return records[0] if records else None

    def _failure(self, failed: dict[str, _Outcome]) -> dg.Failure:
        landed = len(self.keys) - len(failed)
        if len(self.keys) == 1:
            description = next(iter(failed.values())).error
        else:
            listed = "\n".join(f"- {key}: {outcome.error}" for key, outcome in sorted(failed.items()))
            description = (f"{len(failed)} of {len(self.keys)} partitions failed; the other {landed} are recorded. "
                           f"Re-execute the backfill (or this run) from failure to redo only these:\n{listed}")
        return dg.Failure(
            description=description,
            metadata={"failed_partitions": dg.MetadataValue.json({key: o.error for key, o in sorted(failed.items())}),
                      "partitions_done": landed},
            allow_retries=any(o.retryable for o in failed.values()),
        )

    def _where(self, key: dg.MultiPartitionKey) -> str:
        keys = key.keys_by_dimension
        return f"{keys['provider']} / saved search {self.search.name!r} / {keys['date']}"

    def _describe(self, key: dg.MultiPartitionKey, error: Exception) -> str:
        """The error as a person reads it: ours already name provider, search and day; anything else gets its place and
        its traceback in the log."""
        message = error.description if isinstance(error, dg.Failure) else str(error)
        if self.search.name in message and key.keys_by_dimension["date"] in message:
            return message
        self.context.log.error(f"{self._where(key)}: {''.join(traceback.format_exception(error))}")
        return f"{self._where(key)}: {type(error).__name__}: {message}"
