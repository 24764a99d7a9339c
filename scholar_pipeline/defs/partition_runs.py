"""A run of many partitions of one saved search: each landed, checked and recorded on its own.

A backfill of a new search over a year on seven providers is 2,555 partitions; a run per
partition pays a process start and a code load (about 15 s here) before its first
request. So runs take ranges of partitions (the backfill policy, the daily schedule), and
this loop gives each partition what a run of its own gives it: its rows replaced in a
transaction of their own with their provenance row, its materializations of `<name>/raw`
and `<name>/works` with their data versions, and its check results (the checks are
partitioned). Providers are fetched in parallel (`provider_fetches.py`); each partition
is landed and recorded here, in the step's thread, as its fetch ends, so what is in DuckDB
is what Dagster recorded even when the run is stopped half-way. A partition that fails
does not stop the others: the run fails at the end naming each failed key and why, and
what landed stays recorded, so re-executing the backfill from failure redoes only the
failed keys.
"""

from __future__ import annotations

import datetime as dt
import traceback
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
from dagster._core.definitions.partitions.utils.multi import get_tags_from_multi_partition_key

from scholar_pipeline.audit import AuditScope, audit
from scholar_pipeline.client.masking import mask_credentials
from scholar_pipeline.defs.data_versions import derived_version_tags, source_version_tags
from scholar_pipeline.defs.provider_fetches import Fetched, ProviderFetches, where
from scholar_pipeline.defs.resources import ScholarApiResource, WarehouseResource
from scholar_pipeline.defs.works_checks import (
    LANDING_AUDIT, LANDING_CHECKS, SHOWN_FINDINGS, evaluation, landing_audit, landing_results,
)
from scholar_pipeline.defs.works_table_checks import TABLE_CHECK_DESCRIPTIONS, table_results
from scholar_pipeline.fetch import PartitionFetchError
from scholar_pipeline.landing import Manifest
from scholar_pipeline.metadata import raw_metadata, usage_metadata, works_metadata
from scholar_pipeline.queries import SavedSearch
from scholar_pipeline.settings import drift_severity, max_null_title_share
from scholar_pipeline.warehouse import ProvenanceRow, UsageRow, record_usage, replace_partition
from scholar_pipeline.works import WORKS_CODE_VERSION, PartitionRows, PartitionRowsError, staged_rows

RAW_CODE_VERSION = "raw-v2"
# Run tag that makes `<name>/raw` skip the HTTP cache: monitoring re-fetches must see today's answer.
FETCH_TAG, FETCH_LIVE = "scholar_pipeline/fetch", "live"


@dataclass
class _Failure:
    error: str
    retryable: bool = True


@dataclass
class _Said:
    """What a partition did, for the run's one log line about it (every log line is an event Dagster stores)."""

    parts: list[str] = field(default_factory=list)


class SavedSearchRun:
    """The partitions of one run of `<name>/raw` and `<name>/works` (or of some of them, or of their checks alone)."""

    def __init__(self, context: dg.AssetExecutionContext, search: SavedSearch, scholar_api: ScholarApiResource,
                 warehouse: WarehouseResource):
        self.context, self.search, self.scholar_api, self.warehouse = context, search, scholar_api, warehouse.backend
        self.raw_key, self.works_key = dg.AssetKey([search.name, "raw"]), dg.AssetKey([search.name, "works"])
        self.fetch = self.raw_key in context.selected_asset_keys
        self.land = self.works_key in context.selected_asset_keys
        self.checks = {key.name for key in context.selected_asset_check_keys}
        partitions = context.assets_def.partitions_def
        self.keys = [partitions.get_partition_key_from_str(key) for key in context.partition_keys]

    def events(self) -> Iterator[dg.AssetMaterialization | dg.AssetCheckEvaluation]:
        """Every partition's events as it is done; a `dg.Failure` naming the failed partitions at the end."""
        unlanded_checks = sorted((self.checks & set(LANDING_CHECKS)) - ({*LANDING_CHECKS} if self.land else set()))
        if unlanded_checks:
            raise dg.Failure(f"{', '.join(unlanded_checks)} are evaluated as {self.works_key.to_user_string()} lands a "
                             "partition: materialize it for these partitions to check them again", allow_retries=False)
        # A bad setting fails the run before anything is fetched or written.
        severity = dg.AssetCheckSeverity[drift_severity().upper()] if self.land else None
        self.max_null_title_share = max_null_title_share()
        if self.fetch:
            fetches = ProviderFetches(self.search, self.scholar_api, self.keys, code_version=RAW_CODE_VERSION,
                                      live=self.context.run.tags.get(FETCH_TAG) == FETCH_LIVE, log=self.context.log,
                                      describe=self._describe)
            self.context.log.info(f"{self.search.name}: {len(self.keys)} partitions, {fetches.providers} providers fetched "
                                  "in parallel")
            done = fetches.results()
        else:
            done = (Fetched(key) for key in self.keys)
        failed: dict[str, _Failure] = {}
        self.unrecorded_usage: list[UsageRow] = []
        try:
            for count, fetched in enumerate(done, start=1):
                said = _Said()
                try:
                    yield from self._partition(fetched, severity, said)
                except _PartitionFailed as failure:
                    failed[str(fetched.key)] = failure.args[0]
                self._say(fetched.key, said, failed.get(str(fetched.key)), f"{count} of {len(self.keys)} partitions done")
        finally:
            done.close()  # a stopped run: the fetching threads end after their current partition
            self._record_usage_left()
        if failed:
            raise self._failure(failed)

    def _partition(self, fetched: Fetched, severity, said: _Said) -> Iterator[dg.AssetMaterialization | dg.AssetCheckEvaluation]:
        """One partition's events; `_PartitionFailed` once they cannot go on."""
        key = fetched.key
        if fetched.usage is not None:
            self.unrecorded_usage.append(UsageRow(*self._slice(key), self.context.run.run_id,
                                                  "failed" if fetched.error else "fetched", fetched.usage))
        if fetched.error is not None:
            raise _PartitionFailed(_Failure(fetched.error, fetched.retryable))
        raw_record = None
        if fetched.manifest is not None:
            manifest = fetched.manifest
            said.parts.append(f"{manifest.records} records in {len(manifest.pages)} pages "
                              f"({sum(p.from_cache for p in manifest.pages)} from the HTTP cache)")
            # The data version is what the records say, not the bytes: providers send fields that change on every call.
            yield dg.AssetMaterialization(
                asset_key=self.raw_key, partition=str(key),
                metadata={**raw_metadata(manifest, fetched.manifest_path), **usage_metadata(fetched.usage)},
                tags={**source_version_tags(manifest.content_hash, RAW_CODE_VERSION), **self._partition_tags(key)},
            )
        try:
            if self.land:
                raw_record = self._latest(self.raw_key, key)
                if raw_record is None:
                    raise dg.Failure(f"{self.raw_key.to_user_string()} has no materialization for partition {key}; "
                                     "materialize it (or the whole group) for this partition first")
                manifest_path = Path(raw_record.asset_materialization.metadata["manifest"].value)
                manifest = self.scholar_api.landing.read_manifest(manifest_path)
            # The pages are normalized into a staging file first; the writer lock, which blocks every other run's landing
            # on the machine, is taken for the swap (and the audit of what it wrote) alone.
            with staged_rows(self.scholar_api.landing, manifest) if self.land else nullcontext() as rows, \
                    self.warehouse.landing_connection(self._slice(key), log=self.context.log) if self.land else \
                    nullcontext() as con:
                landed = self._land(con, rows, manifest, manifest_path, raw_record, severity, said) if self.land else None
                if con is not None:  # what the fetches so far spent, in the connection the landing holds anyway
                    self._record_usage(con)
                audited = self._audit(con, key) if LANDING_AUDIT in self.checks else None
                tabled = self._table_checks(con, key)
        except Exception as error:
            raise _PartitionFailed(_Failure(self._describe(key, error))) from None
        if landed is not None:
            metadata, results = landed
            yield dg.AssetMaterialization(
                asset_key=self.works_key, partition=str(key), metadata=metadata,
                tags={**derived_version_tags(WORKS_CODE_VERSION, {self.raw_key: raw_record}), **self._partition_tags(key)},
            )
        results = [*(landed[1] if landed else []), *([audited] if audited else []), *tabled]
        target = self._latest(self.works_key, key) if results else None
        for result in results:
            yield evaluation(result, self.works_key, str(key), target)

    def _land(self, con, rows: PartitionRows, manifest: Manifest, manifest_path: Path, raw_record: dg.EventLogRecord, severity,
              said: _Said) -> tuple[dict, list[dg.AssetCheckResult]]:
        """Replace the partition's rows with the staged rows of its recorded fetch; its works metadata and check results."""
        provenance = ProvenanceRow.of(manifest, manifest_path, rows, run_id=self.context.run.run_id,
                                      raw_run_id=raw_record.run_id, code_version=WORKS_CODE_VERSION)
        rows_in_duckdb = replace_partition(con, rows, provenance, log=self.context.log.warning)
        said.parts.append(f"{rows_in_duckdb} rows in `works` ({rows.duplicates_dropped} duplicates dropped)")
        results = landing_results(manifest, rows, rows_in_duckdb, provenance.provider, severity)
        return (works_metadata(rows, manifest, manifest_path, code_version=WORKS_CODE_VERSION),
                [result for result in results if result.check_name in self.checks])

    def _audit(self, con, key: dg.MultiPartitionKey) -> dg.AssetCheckResult:
        """Right after the landing, in its connection (a check run alone opens its own, in the writers' queue)."""
        keys = key.keys_by_dimension
        scope = AuditScope(query=self.search.name, provider=keys["provider"], day=dt.date.fromisoformat(keys["date"]))
        findings = audit(self.scholar_api.home_path, self.warehouse, log=self.context.log.info, scope=scope, con=con)
        for finding in findings[:SHOWN_FINDINGS]:
            self.context.log.warning(str(finding))
        return landing_audit(findings, str(scope))

    def _table_checks(self, con, key: dg.MultiPartitionKey) -> list[dg.AssetCheckResult]:
        """The partition's rows as DuckDB holds them: in the landing's connection, or (checks run alone) a reader's."""
        if not self.checks & set(TABLE_CHECK_DESCRIPTIONS):
            return []
        with nullcontext(con) if con is not None else self.warehouse.read_connection(log=self.context.log) \
                as reader:
            results = table_results(reader, *self._slice(key), self.max_null_title_share)
        return [result for result in results if result.check_name in self.checks]

    def _record_usage(self, con) -> None:
        """What the fetches not yet recorded spent, in one statement (all or none): a failure leaves them for the next
        try and is only said, since the partitions' own outcome stands."""
        try:
            record_usage(con, self.unrecorded_usage)
        except Exception as error:
            self.context.log.warning(f"{self.search.name}: the usage of {len(self.unrecorded_usage)} fetches is not "
                                     f"recorded in provider_usage yet ({type(error).__name__}: {mask_credentials(str(error))})")
            return
        self.unrecorded_usage.clear()

    def _record_usage_left(self) -> None:
        """The spending of fetches no landing recorded (failed, or not landed in this run), in one write at the end."""
        if not self.unrecorded_usage:
            return
        try:
            with self.warehouse.write_connection(log=self.context.log) as con:
                self._record_usage(con)
        except Exception as error:  # no write connection: the usage report misses these fetches
            self.context.log.warning(f"{self.search.name}: the usage of {len(self.unrecorded_usage)} fetches was not "
                                     f"recorded in provider_usage ({type(error).__name__}: {error})")

    def _say(self, key: dg.MultiPartitionKey, said: _Said, failure: _Failure | None, progress: str) -> None:
        if failure is not None:
            self.context.log.error(f"{self.search.name} {key} failed ({progress}): {failure.error}")
        else:
            self.context.log.info(f"{self.search.name} {key}: {'; '.join(said.parts) or 'audited'} ({progress})")

    def _slice(self, key: dg.MultiPartitionKey) -> tuple[str, str, dt.date]:
        """The partition's slice of `works`: (saved search, provider, publication date)."""
        keys = key.keys_by_dimension
        return self.search.name, keys["provider"], dt.date.fromisoformat(keys["date"])

    @staticmethod
    def _partition_tags(key: dg.MultiPartitionKey) -> dict[str, str]:
        """The `dagster/partition/<dimension>` tags Dagster gives a run of one partition's events, which its partition
        status queries read."""
        return dict(get_tags_from_multi_partition_key(key))

    def _latest(self, asset_key: dg.AssetKey, partition: dg.MultiPartitionKey) -> dg.EventLogRecord | None:
        """This run's materialization of the partition, else the newest on record (another run may have recorded one
        since: what this run fetched is what it lands)."""
        records = self.context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=[str(partition)]), limit=10).records
        return next((r for r in records if r.run_id == self.context.run.run_id), records[0] if records else None)

    def _failure(self, failed: dict[str, _Failure]) -> dg.Failure:
        recorded = len(self.keys) - len(failed)
        if len(self.keys) == 1:
            description = next(iter(failed.values())).error
        else:
            listed = "\n".join(f"- {key}: {failure.error}" for key, failure in sorted(failed.items()))
            description = (f"{len(failed)} of {len(self.keys)} partitions failed; the other {recorded} are recorded. To redo "
                           f"only these, re-execute the backfill from failure (its page in the UI), or launch them again:\n"
                           f"{listed}")
        return dg.Failure(
            description=description,
            metadata={"failed_partitions": dg.MetadataValue.json({key: f.error for key, f in sorted(failed.items())}),
                      "partitions_done": recorded},
            allow_retries=any(f.retryable for f in failed.values()),
        )

    def _describe(self, key: dg.MultiPartitionKey, error: Exception) -> str:
        """The error as a person reads it. The pipeline's own errors name provider, search and day; anything else is
        given its place here, and its traceback in the log."""
        message = mask_credentials((error.description if isinstance(error, dg.Failure) else str(error)) or type(error).__name__)
        if isinstance(error, _NAMED_ERRORS):
            return message
        self.context.log.error(f"{where(self.search, key)}: {mask_credentials(''.join(traceback.format_exception(error)))}")
        return f"{where(self.search, key)}: {type(error).__name__}: {message}"


class _PartitionFailed(Exception):
    """A partition cannot go on; carries its `_Failure`."""


# Errors whose message already names the provider, the saved search and the day.
_NAMED_ERRORS = (PartitionFetchError, PartitionRowsError, dg.Failure)
