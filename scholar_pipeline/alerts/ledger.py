"""`alert_deliveries`: what each channel of each saved search has been told, so nothing is told twice.

Each row is a `digest` sent, a `baseline` (below), or `sending`: a digest about to go out,
written before it is sent, so that nothing is sent that could not be recorded. It becomes a
`digest` once the channel took it, and is removed when the send failed. A `sending` row left
over (a crash between the send and its record) does not count as announced: the next pass
sends the same digest again, under the same id, and says so.

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
DIGEST, BASELINE, SENDING = "digest", "baseline", "sending"
ANNOUNCED = (DIGEST, BASELINE)

# Each work of the search that no delivery to the channel covered, with its records and when it can first have
# arrived: the first landing of the first of its partitions to land (a later re-fetch of the partition does not move it).
_PENDING_SQL = """
WITH announced AS (
    SELECT DISTINCT r.provider, r.provider_id
    FROM alert_deliveries d, unnest(d.records) AS t(r)
    WHERE d.query = $query AND d.channel = $channel AND d.kind IN ('digest', 'baseline')
),
landed AS (
    SELECT provider, partition_date, min(landed_at) AS landed_at FROM provenance WHERE query = $query GROUP BY ALL
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


NOTHING = Pending(work_ids=[], records=[], first_arrived_at=None)


def ensure_ledger(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(DELIVERIES_DDL)


def last_announced_at(con: duckdb.DuckDBPyConnection, query: str, channel: str) -> dt.datetime | None:
    """When the channel's last digest (or its baseline) was recorded; None for a channel never met."""
    return con.execute(f"SELECT max(sent_at) FROM alert_deliveries WHERE query = ? AND channel = ? AND kind IN {ANNOUNCED}",
                       [query, channel]).fetchone()[0]


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
    """One row, one statement: the delivery (or baseline, or intent) is recorded whole or not at all."""
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


def record_intent(con: duckdb.DuckDBPyConnection, *, digest_id: str, query: str, channel: str, pending: Pending,
                  at: dt.datetime) -> bool:
    """Write the `sending` row of a digest about to go out, replacing the channel's earlier one; True when that earlier
    one was for this same digest (its send may have reached the channel before a crash)."""
    earlier = con.execute(f"SELECT count(*) FROM alert_deliveries WHERE query = ? AND channel = ? AND kind = '{SENDING}' "
                          "AND digest_id = ?", [query, channel, digest_id]).fetchone()[0]
    con.execute(f"DELETE FROM alert_deliveries WHERE query = ? AND channel = ? AND kind = '{SENDING}'", [query, channel])
    record_delivery(con, digest_id=digest_id, query=query, channel=channel, kind=SENDING, pending=pending, sent_at=at)
    return earlier > 0


def settle_intent(con: duckdb.DuckDBPyConnection, *, digest_id: str, query: str, channel: str, sent_at: dt.datetime | None) -> None:
    """The `sending` row becomes the `digest` sent at `sent_at`, or is removed when the send failed (None)."""
    where = f"WHERE query = ? AND channel = ? AND digest_id = ? AND kind = '{SENDING}'"
    if sent_at is None:
        con.execute(f"DELETE FROM alert_deliveries {where}", [query, channel, digest_id])
    else:
        con.execute(f"UPDATE alert_deliveries SET kind = '{DIGEST}', sent_at = ? {where}", [sent_at, query, channel, digest_id])


def deliveries(con: duckdb.DuckDBPyConnection, query: str | None = None) -> list[dict]:
    """The recorded deliveries, oldest first (for `scholar-pipeline alerts status` and tests)."""
    if not has_table(con, "alert_deliveries"):
        return []
    cursor = con.execute(
        "SELECT digest_id, query, channel, kind, works, work_ids, sent_at FROM alert_deliveries "
        "WHERE $query IS NULL OR query = $query ORDER BY sent_at, query, channel", {"query": query})
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]
