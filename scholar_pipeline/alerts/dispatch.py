"""One pass of the alerts: for every channel of every saved search with `alerts:`, send the digest that is due.

The pass holds the warehouse's write connection throughout (on a DuckDB file, its place in the
writers' queue), so what is pending is read, sent and recorded with no other writer between,
and a digest is recorded the moment its channel took it. A send that fails is not recorded:
its works stay pending and go out with the next pass, under the same digest id if nothing
was added meanwhile. The one window left is a crash between a channel's "ok" and the
record's commit; the digest id (webhook `Idempotency-Key`, mail `Message-ID`) lets a
receiver drop that repeat.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from scholar_pipeline.alerts.channels import DeliveryFailed, deliver
from scholar_pipeline.alerts.digest import Digest, DigestWork, ReviewCounts, digest_id, review_counts_of, top_works
from scholar_pipeline.alerts.ledger import (
    BASELINE, DIGEST, Pending, ensure_ledger, known_channel, last_landing, pending_works, record_delivery,
)
from scholar_pipeline.queries import SavedSearch
from scholar_pipeline.warehouse import has_table
from scholar_pipeline.warehouse_backends import Warehouse

WAREHOUSE_WAIT_SECONDS = 20  # a pass waits this long for its turn at the warehouse, then tries again next tick


@dataclass
class PassOutcome:
    """What one pass did, in lines a person reads in the sensor's tick history."""

    sent: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = self.sent + self.waiting
        return "\n".join(lines) if lines else "nothing new to announce"


def send_due_digests(warehouse: Warehouse, searches: Sequence[SavedSearch], *, now: dt.datetime | None = None,
                     environ: Mapping[str, str] = os.environ, log: Callable[[str], None] = print) -> PassOutcome:
    now = now or dt.datetime.now(dt.timezone.utc)
    outcome = PassOutcome()
    alerting = [search for search in searches if search.alerts]
    if not alerting or not warehouse.exists():
        return outcome
    with warehouse.write_connection(timeout_seconds=WAREHOUSE_WAIT_SECONDS) as con:
        if not (has_table(con, "unique_works") and has_table(con, "provenance")):
            outcome.waiting.append("dataset/unique_works has not been built yet")
            return outcome
        ensure_ledger(con)
        for search in alerting:
            for channel in search.alerts.channels:
                pending = pending_works(con, search.name, channel.label)
                if not known_channel(con, search.name, channel.label):
                    record_delivery(con, digest_id=digest_id(search.name, channel.label, pending.records), query=search.name,
                                    channel=channel.label, kind=BASELINE, pending=pending, sent_at=now)
                    log(f"{search.name} → {channel.label}: alerts start now; the {len(pending):,} works the search holds "
                        "are taken as known, and the next new work is announced")
                    continue
                if not pending:
                    continue
                wait = _time_to_wait(search, pending, last_landing(con, search.name), now)
                if wait is not None:
                    outcome.waiting.append(f"{search.name} → {channel.label}: {len(pending):,} new works, sent once the "
                                           f"search has had no landing for {search.alerts.quiet_minutes:g} min "
                                           f"(in {wait})")
                    continue
                digest = Digest(
                    digest_id=digest_id(search.name, channel.label, pending.records), search=search.name,
                    description=search.description or search.text, channel=channel.label, new_works=len(pending),
                    top=top_works(con, search.name, pending.work_ids, search.alerts.top),
                    counts=review_counts_of(con, search.name))
                try:
                    where = deliver(channel, digest, environ)
                except DeliveryFailed as error:
                    outcome.failed.append(f"{error}; {len(pending):,} works stay pending and are sent on the next tick")
                    log(outcome.failed[-1])
                    continue
                record_delivery(con, digest_id=digest.digest_id, query=search.name, channel=channel.label, kind=DIGEST,
                                pending=pending, sent_at=now)
                outcome.sent.append(f"{search.name} → {channel.label}: {len(pending):,} new works sent to {where} "
                                    f"(digest {digest.digest_id})")
                log(outcome.sent[-1])
    return outcome


def _time_to_wait(search: SavedSearch, pending: Pending, landed: dt.datetime | None, now: dt.datetime) -> dt.timedelta | None:
    """None when the digest is due: the search has been quiet long enough, or its oldest new work waited too long."""
    quiet = dt.timedelta(minutes=search.alerts.quiet_minutes)
    if landed is None or now - landed >= quiet:
        return None
    if pending.first_arrived_at is not None and now - pending.first_arrived_at >= dt.timedelta(hours=search.alerts.max_wait_hours):
        return None
    return dt.timedelta(seconds=round((landed + quiet - now).total_seconds()))


SAMPLE_WORK = DigestWork(work_id="sample", title="A sample work: what a digest of new works looks like", year=2024,
                         venue="Journal of Examples", doi="10.5555/12345678", url=None, providers=["openalex", "crossref"])


def send_sample(warehouse: Warehouse, search: SavedSearch,
                environ: Mapping[str, str] = os.environ) -> list[tuple[str, str | None, str | None]]:
    """`scholar-pipeline alerts test`: a digest marked [test] to every channel of the search, recorded nowhere, with
    the search's own works when the warehouse has some. Returns (channel, where it went, error) per channel."""
    top, new_works, counts = [SAMPLE_WORK], 1, ReviewCounts()
    if warehouse.exists():
        with warehouse.read_connection(timeout_seconds=WAREHOUSE_WAIT_SECONDS) as con:
            if has_table(con, "unique_works") and has_table(con, "provenance"):
                work_ids = [w for (w,) in con.execute(
                    "SELECT work_id FROM unique_works WHERE list_contains(queries, ?)", [search.name]).fetchall()]
                if work_ids:
                    top, new_works = top_works(con, search.name, work_ids, search.alerts.top), len(work_ids)
                    counts = review_counts_of(con, search.name)
    results = []
    for channel in search.alerts.channels:
        digest = Digest(digest_id=f"test-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}", search=search.name,
                        description=search.description or search.text, channel=channel.label, new_works=new_works,
                        top=top, counts=counts, test=True)
        try:
            results.append((channel.label, deliver(channel, digest, environ), None))
        except DeliveryFailed as error:
            results.append((channel.label, None, str(error)))
    return results
