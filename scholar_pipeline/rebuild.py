"""Rebuild `works` from the landing zone alone: no network, no HTTP cache, no Dagster run.

Each partition is rebuilt from the manifest its last landing recorded in `provenance` (or,
when DuckDB holds none, from its newest manifest) and its rebuilt output hash is compared
with the one recorded (or, without a provenance row, with the manifest's content hash,
which equals it for a partition without repeated records). A partition is written again
only when it must be: landed under another `WORKS_CODE_VERSION`, or not in DuckDB at all;
rows that rebuild to other rows than recorded under the same code version are reported and
kept, unless forced. A write is a normal partition swap with a provenance row
whose `run_id` is NULL (Dagster's asset history does not see it).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from scholar_pipeline.landing import LandingZone
from scholar_pipeline.warehouse import ProvenanceRow, latest_provenance, replace_partition
from scholar_pipeline.warehouse_backends import Warehouse
from scholar_pipeline.works import WORKS_CODE_VERSION, staged_rows


@dataclass(frozen=True)
class PartitionSelection:
    query: str | None = None
    provider: str | None = None
    first: dt.date | None = None
    last: dt.date | None = None

    def holds(self, query: str, provider: str, day: dt.date) -> bool:
        return ((self.query is None or query == self.query) and (self.provider is None or provider == self.provider)
                and (self.first is None or day >= self.first) and (self.last is None or day <= self.last))


@dataclass(frozen=True)
class Rebuilt:
    query: str
    provider: str
    partition_date: dt.date
    recorded_hash: str | None  # from provenance, else the manifest's content hash
    recorded_in: str  # "provenance" or "manifest"
    rebuilt_hash: str
    recorded_code_version: str | None
    written: bool
    landed_meanwhile: bool = False  # a run landed the partition again while this rebuild read its pages: left to it

    @property
    def equal(self) -> bool:
        return self.recorded_hash == self.rebuilt_hash

    @property
    def unexplained(self) -> bool:
        """Other rows than recorded although nothing that turns pages into rows changed: the data does not reproduce.
        (A manifest written before content hashes records none: nothing to compare with.)"""
        return (self.recorded_hash is not None and not self.equal and not self.landed_meanwhile
                and self.recorded_code_version in (None, WORKS_CODE_VERSION))


def rebuild(home: Path, warehouse: Warehouse, selection: PartitionSelection = PartitionSelection(), log=print,
            force: bool = False) -> list[Rebuilt]:
    """Rebuild every selected partition the landing zone holds; `log` hears one line per partition as it goes.

    Rows that do not reproduce under the same code version are kept unless `force`: `works`
    keeps no history, and the pages or the code may be what is wrong."""
    landing = LandingZone(home / "landing")
    newest_manifest: dict[tuple[str, str, dt.date], Path] = {}
    for path in landing.manifest_paths():  # oldest first, so the last one wins
        query, provider, day = path.parts[-4], path.parts[-3], dt.date.fromisoformat(path.parts[-2])
        if selection.holds(query, provider, day):
            newest_manifest[query, provider, day] = path
    recorded = _recorded_landings(warehouse)
    results = []
    for key in sorted(newest_manifest):
        previous = recorded.get(key)
        manifest_path = landing.recorded_manifest(previous["manifest_path"]) if previous else newest_manifest[key]
        manifest = landing.read_manifest(manifest_path)
        with staged_rows(landing, manifest) as rows:  # normalized before the writer lock is taken
            must_write = (previous is None or previous["code_version"] != WORKS_CODE_VERSION
                          or (force and previous["output_hash"] != rows.output_hash))
            landed_meanwhile = False
            if must_write:  # the writer lock per partition: runs landing other partitions wait seconds, not the whole rebuild
                provenance = ProvenanceRow.of(manifest, manifest_path, rows, run_id=None,
                                              raw_run_id=previous["raw_run_id"] if previous else None,
                                              code_version=WORKS_CODE_VERSION)
                with warehouse.landing_connection(key) as con:  # a run that landed it since wins: checked in the swap's transaction
                    landed_meanwhile = replace_partition(
                        con, rows, provenance, only_if_last_landed_at=(previous or {}).get("landed_at")) is None
        result = Rebuilt(
            query=key[0], provider=key[1], partition_date=key[2],
            recorded_hash=previous["output_hash"] if previous else manifest.content_hash,
            recorded_in="provenance" if previous else "manifest", rebuilt_hash=rows.output_hash,
            recorded_code_version=previous["code_version"] if previous else None, written=must_write and not landed_meanwhile,
            landed_meanwhile=landed_meanwhile,
        )
        log(describe(result))
        results.append(result)
    return results


def _recorded_landings(warehouse: Warehouse) -> dict[tuple[str, str, dt.date], dict]:
    if not warehouse.exists():
        return {}
    with warehouse.read_connection() as con:
        tables = {row[0] for row in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        return latest_provenance(con) if "provenance" in tables else {}


def describe(result: Rebuilt) -> str:
    recorded = (result.recorded_hash or "none")[:16]
    if result.landed_meanwhile:
        outcome = "landed again by a run meanwhile, left as that run wrote it"
    elif result.equal:
        outcome = "equal" + (", rewritten" if result.written else "")
    elif result.recorded_hash is None:
        outcome = "nothing recorded to compare with, written"
    elif not result.unexplained:
        outcome = f"changed by code version {result.recorded_code_version} -> {WORKS_CODE_VERSION}, rewritten"
    elif result.written:
        outcome = "DIFFERENT, replaced by what the landed pages give (--force)"
    else:
        outcome = "DIFFERENT, kept as it is (find the cause; --force replaces it with what the landed pages give)"
    return (f"{result.query} / {result.provider} / {result.partition_date}: recorded {recorded} ({result.recorded_in}), "
            f"rebuilt {result.rebuilt_hash[:16]}: {outcome}")
