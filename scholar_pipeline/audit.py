"""Audit: is every landed row still provable from the bytes it came from?

Three layers are re-hashed against what was recorded when they were written:
- pages: every page a manifest names is in the landing zone and still hashes to its name;
  a page no manifest names is reported as extra;
- manifests: each still hashes to its recorded input hash, and the manifest each
  partition's last landing recorded in `provenance` still exists and names the same pages;
- rows: each `works` row still hashes to its `record_hash` (recomputed from its columns, so
  an edited title shows), and each partition's rows still give its recorded output hash
  and row count; rows of a partition with no provenance are reported as extra.
"""

from __future__ import annotations

import datetime as dt
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import duckdb

from scholar_pipeline.landing import DamagedPage, LandingZone, partition_input_hash
from scholar_pipeline.normalize import record_hash
from scholar_pipeline.schema import RECORD_FIELDS
from scholar_pipeline.warehouse import latest_provenance, snapshot
from scholar_pipeline.warehouse_backends import Warehouse
from scholar_pipeline.works import hash_of_records

_HASHED_COLUMNS = [name for name in RECORD_FIELDS.names if name != "record_hash"]


@dataclass(frozen=True)
class Finding:
    what: str  # e.g. "page changed", "rows changed"
    where: str  # a page's sha256, a manifest's path, or "query / provider / date"
    detail: str

    def __str__(self) -> str:
        return f"{self.what}: {self.where}: {self.detail}"


@dataclass(frozen=True)
class AuditScope:
    """What to audit: everything, one saved search, or one of its partitions. Pages that no manifest names are looked
    at only in an audit of everything, since a narrower one cannot tell whose they are."""
    query: str | None = None
    provider: str | None = None
    day: dt.date | None = None

    def holds(self, query: str, provider: str, day: dt.date | str) -> bool:
        return ((self.query in (None, query)) and (self.provider in (None, provider))
                and (self.day is None or str(self.day) == str(day)))

    @property
    def everything(self) -> bool:
        return self == AuditScope()

    def __str__(self) -> str:
        return " / ".join(str(part) for part in (self.query, self.provider, self.day) if part is not None) or "everything"


def audit(home: Path, warehouse: Warehouse, log=print, scope: AuditScope = AuditScope(),
          con: duckdb.DuckDBPyConnection | None = None) -> list[Finding]:
    """What no longer matches what was recorded; `log` hears what is worth knowing but is no finding. `con`: a
    connection the caller holds (a run audits the partition it just landed without opening the warehouse again)."""
    landing = LandingZone(home / "landing")
    findings = _audit_landing_zone(landing, log, scope)
    if con is not None or warehouse.exists():
        findings += _audit_warehouse(warehouse, landing, scope, log, con)
    return findings


def _audit_landing_zone(landing: LandingZone, log, scope: AuditScope) -> list[Finding]:
    findings, named_by = [], {}
    for path in landing.manifest_paths(scope.query, scope.provider, scope.day):
        try:
            manifest = landing.read_manifest(path)
        except (ValueError, TypeError, KeyError) as error:  # not JSON, or not a manifest
            findings.append(Finding("manifest changed", str(path), f"it no longer reads as a manifest ({error})"))
            continue
        hashes = [page.sha256 for page in manifest.pages]
        if partition_input_hash(hashes) != manifest.input_hash:
            findings.append(Finding("manifest changed", str(path), "its pages no longer hash to its recorded input hash"))
        for sha in hashes:
            named_by.setdefault(sha, path)
    for sha, path in sorted(named_by.items()):
        try:
            landing.read_page(sha)
        except FileNotFoundError:
            findings.append(Finding("page missing", sha, f"named by {path}, not in the landing zone"))
        except DamagedPage as error:
            findings.append(Finding("page changed", sha, f"named by {path}: {error}"))
    if not scope.everything:
        return findings
    stored = landing.stored_pages()
    unnamed = sorted(set(stored) - set(named_by))
    for sha in unnamed:
        try:
            landing.read_page(sha)
        except DamagedPage as error:
            findings.append(Finding("page extra", sha, f"{stored[sha]} is named by no manifest, and {error}"))
    intact = len(unnamed) - sum(f.what == "page extra" for f in findings)
    if intact:  # pages land as they arrive: a fetch that failed or restarted leaves some that no manifest names
        log(f"{intact} intact pages are named by no manifest (left by fetches that did not finish); no finding")
    return findings


def _audit_warehouse(warehouse: Warehouse, landing: LandingZone, scope: AuditScope, log,
                     held: duckdb.DuckDBPyConnection | None) -> list[Finding]:
    """Rows against provenance. DuckDB is read in the writers' queue, one partition at a time, so that runs landing
    meanwhile wait a moment, not the whole audit; each read of rows with the provenance they must match from one
    snapshot (in DuckLake, landings commit meanwhile)."""
    def reading():
        return nullcontext(held) if held is not None else warehouse.read_connection(log=_Waiting(log))

    with reading() as con, snapshot(con):
        tables = {row[0] for row in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        if not {"works", "provenance"} <= tables:
            return []
        partition = (scope.query, scope.provider, scope.day) if None not in (scope.query, scope.provider, scope.day) else None
        recorded = {k: v for k, v in latest_provenance(con, partition).items() if scope.holds(*k)}
        landed = con.execute("SELECT query, provider, partition_date, count(*) FROM works GROUP BY ALL ORDER BY ALL").fetchall()
    findings = []
    for partition in sorted(recorded):
        where = " / ".join(map(str, partition))
        with reading() as con, snapshot(con):  # the partition as last landed, which may be later than `recorded`
            row = latest_provenance(con, partition)[partition]
            rows = _rows_of(con, partition)
        findings += _audit_manifest_of(landing, where, row["manifest_path"], row["page_sha256"])
        findings += _audit_rows(rows, where, row["output_hash"], row["rows_landed"])
    for query, provider, day, count in landed:
        if scope.holds(query, provider, day) and (query, provider, day) not in recorded:
            findings.append(Finding("rows extra", f"{query} / {provider} / {day}", f"{count} rows with no provenance row"))
    return findings


class _Waiting:
    """The audit's `log` as the `warning` a connection waiting for a writer calls."""

    def __init__(self, log):
        self.warning = log


def _audit_manifest_of(landing: LandingZone, where: str, recorded_path: str, page_sha256: list[str]) -> list[Finding]:
    path = landing.recorded_manifest(recorded_path)
    if not path.exists():
        return [Finding("manifest missing", where, f"its last landing recorded {path}, which is gone")]
    if [page.sha256 for page in landing.read_manifest(path).pages] != list(page_sha256):
        return [Finding("manifest changed", where, f"{path} names other pages than its provenance row")]
    return []


def _rows_of(con: duckdb.DuckDBPyConnection, partition: tuple[str, str, dt.date]) -> list[dict]:
    columns = ", ".join(f'"{name}"' for name in _HASHED_COLUMNS + ["record_hash"])
    return con.execute(f"SELECT {columns} FROM works WHERE query = ? AND provider = ? AND partition_date = ?",
                       list(partition)).fetch_arrow_table().to_pylist()


def _audit_rows(rows: list[dict], where: str, output_hash: str, rows_landed: int) -> list[Finding]:
    findings = []
    recomputed = [record_hash({name: row[name] for name in _HASHED_COLUMNS}) for row in rows]
    edited = [row["provider_id"] for row, again in zip(rows, recomputed) if row["record_hash"] != again]
    if edited:
        findings.append(Finding("rows changed", where, f"{len(edited)} rows no longer match their record_hash "
                                                        f"(first: provider_id {edited[0]!r})"))
    if len(rows) != rows_landed or hash_of_records(recomputed) != output_hash:
        findings.append(Finding("rows changed" if len(rows) == rows_landed else "rows missing or extra", where,
                                f"{len(rows)} rows hash to {hash_of_records(recomputed)[:16]}; its landing recorded "
                                f"{rows_landed} rows hashing to {output_hash[:16]}"))
    return findings
