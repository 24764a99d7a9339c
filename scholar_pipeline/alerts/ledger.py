"""`alert_deliveries`: what each channel of each saved search has been told, so nothing is told twice.

A work is announced by its provider records, not by its `work_id`: a preprint announced
alone keeps counting as announced when its journal version lands later and gives the work
another id. A work is new for a channel while none of its records for the search was in a
delivery to that channel.

The first time the sensor meets a channel it records a `baseline` (the works the search holds
then, sent nowhere): alerts start from when they were set up, and a search backfilled over
years before that does not arrive as one huge "new" digest. A search set up with its alerts
has an empty baseline, so its first backfill is announced.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from scholar_pipeline.warehouse import has_table

DELIVERIES_DDL = """
CREATE TABLE IF NOT EXISTS alert_deliveries (
    digest_id VARCHAR NOT NULL,
    query VARCHAR NOT NULL,
    channel VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    works INTEGER NOT NULL,
    work_ids VARCHAR[] NOT NULL,
    records STRUCT(provider VARCHAR, provider_id VARCHAR)[] NOT NULL,
    sent_at TIMESTAMPTZ NOT NULL
)
"""
DIGEST, BASELINE = "digest", "baseline"

# Each work of the search that no delivery to the channel covered, with its records and when it arrived (the latest
# landing of the first of its partitions to land).
_PENDING_SQL = """
WITH announced AS (
    SELECT DISTINCT r.provider, r.provider_id
    FROM alert_deliveries d, unnest(d.records) AS t(r) WHERE d.query = $query AND d.channel = $channel
),
landed AS (
    SELECT provider, partition_date, max(landed_at) AS landed_at FROM provenance WHERE query = $query GROUP BY ALL
),
sources AS (
    SELECT u.work_id, s.provider, s.provider_id, s.partition_date
    FROM unique_works u, unnest(u.sources) AS t(s) WHERE s.query = $query
)
SELECT s.work_id, list(DISTINCT {'provider': s.provider, 'provider_id': s.provider_id}) AS records,
       min(l.landed_at) AS arrived_at
FROM sources s LEFT JOIN landed l USING (provider, partition_date)
WHERE s.work_id NOT IN (SELECT work_id FROM sources JOIN announced USING (provider, provider_id))
GROUP BY s.work_id
ORDER BY s.work_id
"""


@dataclass(frozen=True)
class Pending:
    """The works a channel has not been told about."""

    work_ids: list[str]
    records: list[dict]  # {'provider', 'provider_id'} of every source row of those works, for the search
    first_arrived_at: dt.datetime | None

    def __len__(self) -> int:
        return len(self.work_ids)


def ensure_ledger(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(DELIVERIES_DDL)


def known_channel(con: duckdb.DuckDBPyConnection, query: str, channel: str) -> bool:
    """Whether the channel has a baseline (it has been met before)."""
    return con.execute("SELECT count(*) FROM alert_deliveries WHERE query = ? AND channel = ?", [query, channel]).fetchone()[0] > 0


def pending_works(con: duckdb.DuckDBPyConnection, query: str, channel: str) -> Pending:
    rows = con.execute(_PENDING_SQL, {"query": query, "channel": channel}).fetchall()
    arrivals = [arrived for *_, arrived in rows if arrived is not None]
    return Pending(work_ids=[work_id for work_id, *_ in rows],
                   records=sorted((record for _, records, _ in rows for record in records),
                                  key=lambda r: (r["provider"], r["provider_id"])),
                   first_arrived_at=min(arrivals, default=None))


def last_landing(con: duckdb.DuckDBPyConnection, query: str) -> dt.datetime | None:
    return con.execute("SELECT max(landed_at) FROM provenance WHERE query = ?", [query]).fetchone()[0]


def record_delivery(con: duckdb.DuckDBPyConnection, *, digest_id: str, query: str, channel: str, kind: str,
                    pending: Pending, sent_at: dt.datetime) -> None:
    """One row, one statement: the delivery is recorded whole or not at all."""
    row = pa.Table.from_pylist([{
        "digest_id": digest_id, "query": query, "channel": channel, "kind": kind, "works": len(pending),
        "work_ids": pending.work_ids, "records": pending.records, "sent_at": sent_at,
    }], schema=pa.schema([("digest_id", pa.string()), ("query", pa.string()), ("channel", pa.string()),
                          ("kind", pa.string()), ("works", pa.int32()), ("work_ids", pa.list_(pa.string())),
                          ("records", pa.list_(pa.struct([("provider", pa.string()), ("provider_id", pa.string())]))),
                          ("sent_at", pa.timestamp("us", tz="UTC"))]))
    con.register("delivery_row", row)
    try:
        con.execute("INSERT INTO alert_deliveries BY NAME SELECT * FROM delivery_row")
    finally:
        con.unregister("delivery_row")


def deliveries(con: duckdb.DuckDBPyConnection, query: str | None = None) -> list[dict]:
    """The recorded deliveries, oldest first (for `scholar-pipeline alerts status` and tests)."""
    if not has_table(con, "alert_deliveries"):
        return []
    cursor = con.execute(
        "SELECT digest_id, query, channel, kind, works, work_ids, sent_at FROM alert_deliveries "
        "WHERE $query IS NULL OR query = $query ORDER BY sent_at, query, channel", {"query": query})
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]
