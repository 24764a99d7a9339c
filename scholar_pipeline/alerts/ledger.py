"""`alert_deliveries`: what each channel of each saved search has been told, so nothing is told twice.

A work is announced by its provider records, not by its `work_id`: a preprint announced
alone keeps counting as announced when its journal version lands later and gives the work
another id, and an arXiv record is matched without its version (`v2` replaces `v1`). A
work is new for a channel while none of its records for the search was in a
`digest` or the `baseline` of that channel.

The rows, by `kind`:
- `baseline`: the first time the sensor meets a channel, the records the search holds then,
  sent nowhere. Alerts start from when they were set up, and a search backfilled over years
  before that does not arrive as one huge "new" digest. A search set up with its alerts has
  an empty baseline, so its first backfill is announced.
- `sending`: a digest about to go out, written before it is sent, so that nothing is sent
  that could not be recorded. It becomes a `digest` once the channel took it, and is removed
  when the send failed. One left over (a crash between the send and its record) does not
  count as announced: its works go out with the next pass, and the pass says so.
- `digest`: a digest the channel took: which works, which records, when.
- `waiting`: when the sensor first saw works pending for the channel since its last digest;
  `max_wait_hours` counts from there.
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
DIGEST, BASELINE, SENDING, WAITING = "digest", "baseline", "sending", "waiting"
_ANNOUNCED = "kind IN ('digest', 'baseline')"
_ROW_SCHEMA = pa.schema([("digest_id", pa.string()), ("query", pa.string()), ("channel", pa.string()),
                         ("kind", pa.string()), ("works", pa.int32()), ("work_ids", pa.list_(pa.string())),
                         ("records", pa.list_(pa.struct([("provider", pa.string()), ("provider_id", pa.string())]))),
                         ("sent_at", pa.timestamp("us", tz="UTC"))])

# A record as the ledger matches it: an arXiv record without its version, since the daily re-fetch replaces `v1` by
# `v2` when the authors revise the e-print, and the work must stay announced.
_SAME_RECORD = "CASE WHEN {0}.provider = 'arxiv' THEN regexp_replace({0}.provider_id, 'v[0-9]+$', '') ELSE {0}.provider_id END"

# Each work of the search none of whose records was announced to the channel, with its records.
_PENDING_SQL = f"""
WITH announced AS (
    SELECT DISTINCT r.provider, {_SAME_RECORD.format("r")} AS record
    FROM alert_deliveries d, unnest(d.records) AS t(r)
    WHERE d.query = $query AND d.channel = $channel AND d.{_ANNOUNCED}
),
sources AS (
    SELECT u.work_id, s.provider, s.provider_id, {_SAME_RECORD.format("s")} AS record
    FROM unique_works u, unnest(u.sources) AS t(s) WHERE s.query = $query
)
SELECT work_id, list(DISTINCT struct_pack(provider, provider_id)) AS records
FROM sources
WHERE work_id NOT IN (SELECT work_id FROM sources JOIN announced USING (provider, record))
GROUP BY work_id
ORDER BY work_id
"""


@dataclass(frozen=True)
class Pending:
    """Works a channel has not been told about (or, for a baseline, the records a search holds)."""

    work_ids: list[str]
    records: list[dict]  # {'provider', 'provider_id'} of every source row of those works, for the search

    def __len__(self) -> int:
        return len(self.work_ids)


def ensure_ledger(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(DELIVERIES_DDL)


def pending_works(con: duckdb.DuckDBPyConnection, query: str, channel: str) -> Pending:
    rows = con.execute(_PENDING_SQL, {"query": query, "channel": channel}).fetchall()
    return Pending(work_ids=[work_id for work_id, _ in rows],
                   records=sorted((record for _, records in rows for record in records),
                                  key=lambda r: (r["provider"], r["provider_id"])))


def known_at_setup(con: duckdb.DuckDBPyConnection, query: str, channel: str, built: bool) -> Pending:
    """A channel's baseline: every record the search holds when the sensor first meets the channel. That is what
    `works` holds, with the works `unique_works` makes of them (when it was built): a landing since its last build is
    held too, and must not come as new once the dataset is built again."""
    held = Pending(work_ids=[], records=[])
    if has_table(con, "works"):
        rows = con.execute("SELECT DISTINCT provider, provider_id FROM works WHERE query = ? ORDER BY ALL", [query]).fetchall()
        held = Pending(work_ids=[], records=[{"provider": p, "provider_id": i} for p, i in rows])
    if not built:
        return held
    works = pending_works(con, query, channel)
    records = sorted({(r["provider"], r["provider_id"]) for r in [*works.records, *held.records]})
    return Pending(work_ids=works.work_ids, records=[{"provider": p, "provider_id": i} for p, i in records])


def last_announced_at(con: duckdb.DuckDBPyConnection, query: str, channel: str) -> dt.datetime | None:
    """When the channel's last digest (or its baseline) was recorded; None for a channel never met."""
    return con.execute(f"SELECT max(sent_at) FROM alert_deliveries WHERE query = ? AND channel = ? AND {_ANNOUNCED}",
                       [query, channel]).fetchone()[0]


def waiting_since(con: duckdb.DuckDBPyConnection, query: str, channel: str, announced_at: dt.datetime) -> dt.datetime | None:
    """When the sensor first saw works pending for the channel after its last digest; None if it has not yet."""
    return con.execute(f"SELECT min(sent_at) FROM alert_deliveries WHERE query = ? AND channel = ? AND kind = '{WAITING}' "
                       "AND sent_at > ?", [query, channel, announced_at]).fetchone()[0]


def last_landing(con: duckdb.DuckDBPyConnection, query: str) -> dt.datetime | None:
    return con.execute("SELECT max(landed_at) FROM provenance WHERE query = ?", [query]).fetchone()[0]


def record_delivery(con: duckdb.DuckDBPyConnection, *, digest_id: str, query: str, channel: str, kind: str,
                    pending: Pending, sent_at: dt.datetime) -> None:
    """One row, one statement: recorded whole or not at all."""
    row = pa.Table.from_pylist([{
        "digest_id": digest_id, "query": query, "channel": channel, "kind": kind, "works": len(pending),
        "work_ids": pending.work_ids, "records": pending.records, "sent_at": sent_at,
    }], schema=_ROW_SCHEMA)
    con.register("delivery_row", row)
    try:
        con.execute("INSERT INTO alert_deliveries BY NAME SELECT * FROM delivery_row")
    finally:
        con.unregister("delivery_row")


def record_intent(con: duckdb.DuckDBPyConnection, *, digest_id: str, query: str, channel: str, pending: Pending,
                  at: dt.datetime) -> tuple[str, int] | None:
    """Write the `sending` row of a digest about to go out, replacing the channel's earlier one, whose digest id and
    works it returns: that digest's send may have reached the channel before a crash kept it from being recorded."""
    earlier = con.execute(f"SELECT digest_id, works FROM alert_deliveries WHERE query = ? AND channel = ? AND kind = '{SENDING}'",
                          [query, channel]).fetchone()
    con.execute(f"DELETE FROM alert_deliveries WHERE query = ? AND channel = ? AND kind = '{SENDING}'", [query, channel])
    record_delivery(con, digest_id=digest_id, query=query, channel=channel, kind=SENDING, pending=pending, sent_at=at)
    return earlier


def settle_intent(con: duckdb.DuckDBPyConnection, *, digest_id: str, query: str, channel: str, sent_at: dt.datetime | None) -> None:
    """The `sending` row becomes the `digest` sent at `sent_at`, or is removed when the send failed (None)."""
    where = f"WHERE query = ? AND channel = ? AND digest_id = ? AND kind = '{SENDING}'"
    if sent_at is None:
        con.execute(f"DELETE FROM alert_deliveries {where}", [query, channel, digest_id])
    else:
        con.execute(f"UPDATE alert_deliveries SET kind = '{DIGEST}', sent_at = ? {where}", [sent_at, query, channel, digest_id])


def deliveries(con: duckdb.DuckDBPyConnection, query: str | None = None) -> list[dict]:
    """The recorded baselines, digests and digests being sent, oldest first (`scholar-pipeline alerts status`)."""
    if not has_table(con, "alert_deliveries"):
        return []
    cursor = con.execute(
        "SELECT digest_id, query, channel, kind, works, work_ids, sent_at FROM alert_deliveries "
        f"WHERE ($query IS NULL OR query = $query) AND kind <> '{WAITING}' ORDER BY sent_at, query, channel", {"query": query})
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]
