"""One pass of the alerts: for every channel of every saved search with `alerts:`, send the digest that is due.

A pass runs alone (`Warehouse.exclusive`: a previous evaluation that outlived the sensor's
deadline, or a second daemon during a deploy, makes it step aside). It works in three steps,
so that no warehouse connection is held while a channel answers:
1. in one write transaction, record the baselines of new channels, and for each digest that
   is due a `sending` row (ledger.py): what cannot be recorded is not sent;
2. send, starting no send that could run past `PASS_BUDGET_SECONDS` into the pass (Dagster
   gives a sensor evaluation 60 s); what is left waits for the next tick;
3. in one write transaction, turn each `sending` row into the `digest` sent, or remove it,
   whatever ended step 2, waiting up to `RECORD_WAIT_SECONDS` for the warehouse.
A send that fails is not recorded: its works stay pending and go out with the next pass.
A crash between a channel's "ok" and step 3 leaves a `sending` row: the next pass sends those
works again, under the same digest id (webhook `Idempotency-Key`, mail `Message-ID`) when
nothing new arrived meanwhile, and says so, rather than lose them.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from scholar_pipeline.alerts.channels import SEND_SECONDS, DeliveryFailed, deliver
from scholar_pipeline.alerts.config import Channel
from scholar_pipeline.alerts.digest import Digest, DigestWork, ReviewCounts, digest_id, review_counts_of, top_works
from scholar_pipeline.alerts.ledger import (
    BASELINE, WAITING, Pending, ensure_ledger, known_at_setup, last_announced_at, last_landing, pending_works,
    record_delivery, record_intent, settle_intent, waiting_since,
)
from scholar_pipeline.queries import SavedSearch
from scholar_pipeline.warehouse import has_table, retry_conflicts, transaction
from scholar_pipeline.warehouse_backends import Warehouse

WAREHOUSE_WAIT_SECONDS = 20  # step 1 waits this long for its turn at the warehouse, then tries again next tick
PASS_BUDGET_SECONDS = 40  # Dagster gives a sensor evaluation 60 s
# Step 3 waits much longer: what it records was sent. Past the sensor's deadline the evaluation goes on in the code
# server, and the pass's exclusive lock keeps the next one aside until it is done.
RECORD_WAIT_SECONDS = 600


@dataclass
class PassOutcome:
    """What one pass did, in lines a person reads in the sensor's tick history."""

    sent: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = self.sent + self.waiting
        return "\n".join(lines) if lines else "nothing new to announce"


@dataclass(frozen=True, eq=False)
class _Due:
    search: SavedSearch
    channel: Channel
    digest: Digest
    pending: Pending
    unrecorded: tuple[str, int] | None  # an earlier pass's digest (id, works) whose send never got recorded


def send_due_digests(warehouse: Warehouse, searches: Sequence[SavedSearch], *, now: dt.datetime | None = None,
                     environ: Mapping[str, str] = os.environ, log: Callable[[str], None] = print,
                     budget_seconds: float = PASS_BUDGET_SECONDS) -> PassOutcome:
    deadline = time.monotonic() + budget_seconds
    now = now or dt.datetime.now(dt.timezone.utc)
    outcome = PassOutcome()
    alerting = [search for search in searches if search.alerts]
    if not alerting or not warehouse.exists():
        return outcome
    with warehouse.exclusive("alerts") as alone:
        if not alone:
            outcome.waiting.append("another pass of the alerts is still running (a slow channel?); this one steps aside")
            return outcome
        due = _prepare(warehouse, alerting, now, outcome, log)
        sent: list[_Due] = []
        try:
            _send(due, sent, environ, deadline, outcome, log)
        finally:
            if due:
                _record(warehouse, due, sent, now, log)
    return outcome


def _prepare(warehouse: Warehouse, searches: Sequence[SavedSearch], now: dt.datetime, outcome: PassOutcome,
             log: Callable[[str], None]) -> list[_Due]:
    """Step 1, in one transaction (so one DuckLake snapshot)."""
    due = []
    with warehouse.write_connection(timeout_seconds=WAREHOUSE_WAIT_SECONDS) as con, transaction(con):
        ensure_ledger(con)
        built = has_table(con, "unique_works") and has_table(con, "provenance")
        if not built:
            outcome.waiting.append("dataset/unique_works has not been built yet")
        for search in searches:
            for channel in search.alerts.channels:
                where = f"{search.name} → {channel.label}"
                announced_at = last_announced_at(con, search.name, channel.label)
                if announced_at is None:
                    known = known_at_setup(con, search.name, channel.label, built)
                    record_delivery(con, digest_id=digest_id(search.name, channel.label, known.records), query=search.name,
                                    channel=channel.label, kind=BASELINE, pending=known, sent_at=now)
                    log(f"{where}: alerts start now; the {len(known.records):,} records the search holds are taken as "
                        "known, and the next new work is announced")
                    continue
                pending = pending_works(con, search.name, channel.label) if built else Pending([], [])
                if not pending:
                    continue
                since = waiting_since(con, search.name, channel.label, announced_at)
                wait = _time_to_wait(search, last_landing(con, search.name), since or now, now)
                if wait is not None:
                    if since is None:
                        record_delivery(con, digest_id="", query=search.name, channel=channel.label, kind=WAITING,
                                        pending=pending, sent_at=now)
                    outcome.waiting.append(f"{where}: {len(pending):,} new works, sent once the search has had no "
                                           f"landing for {search.alerts.quiet_minutes:g} min (in {wait})")
                    continue
                digest = Digest(
                    digest_id=digest_id(search.name, channel.label, pending.records), search=search.name,
                    description=search.description or search.text, channel=channel.label, new_works=len(pending),
                    top=top_works(con, search.name, pending.work_ids, search.alerts.top),
                    counts=review_counts_of(con, search.name))
                unrecorded = record_intent(con, digest_id=digest.digest_id, query=search.name, channel=channel.label,
                                           pending=pending, at=now)
                due.append(_Due(search, channel, digest, pending, unrecorded))
    return due


def _send(due: list[_Due], sent: list[_Due], environ: Mapping[str, str], deadline: float, outcome: PassOutcome,
          log: Callable[[str], None]) -> None:
    """Step 2: each digest the pass has time for; `sent` gathers those the channels took."""
    for item in due:
        where = f"{item.search.name} → {item.channel.label}"
        if time.monotonic() + SEND_SECONDS > deadline:
            outcome.waiting.append(f"{where}: {len(item.pending):,} new works, left for the next tick (this pass has no "
                                   f"time left for a send)")
            continue
        if item.unrecorded:
            earlier, works = item.unrecorded
            same = "sending it again under the same id" if earlier == item.digest.digest_id else \
                f"its {works:,} works go out again in digest {item.digest.digest_id}"
            log(f"{where}: digest {earlier} was being sent when a pass ended without recording how (a crash?); {same}")
        try:
            to = deliver(item.channel, item.digest, environ)
        except DeliveryFailed as error:
            outcome.failed.append(f"{error}; {len(item.pending):,} works stay pending and are sent on the next tick")
            log(outcome.failed[-1])
            continue
        sent.append(item)
        outcome.sent.append(f"{where}: {len(item.pending):,} new works sent to {to} (digest {item.digest.digest_id})")
        log(outcome.sent[-1])


def _record(warehouse: Warehouse, due: list[_Due], sent: list[_Due], now: dt.datetime, log: Callable[[str], None]) -> None:
    """Step 3."""
    def settle() -> None:
        with warehouse.write_connection(timeout_seconds=RECORD_WAIT_SECONDS) as con, transaction(con):
            for item in due:
                settle_intent(con, digest_id=item.digest.digest_id, query=item.search.name, channel=item.channel.label,
                              sent_at=now if item in sent else None)

    try:
        retry_conflicts(settle, "the alerts ledger", log=log)
    except Exception as error:
        unrecorded = ", ".join(f"{d.search.name} → {d.channel.label} ({d.digest.digest_id})" for d in sent)
        raise RuntimeError(f"could not record the digests just sent ({type(error).__name__}: {error}): "
                           f"{unrecorded or 'none'}. The next pass sends their works again and says so; make the "
                           "warehouse writable") from error


def _time_to_wait(search: SavedSearch, landed: dt.datetime | None, waiting_since: dt.datetime,
                  now: dt.datetime) -> dt.timedelta | None:
    """None when the digest is due: the search has been quiet long enough, or its new works have waited too long
    (since the sensor first saw them pending)."""
    quiet = dt.timedelta(minutes=search.alerts.quiet_minutes)
    if landed is None or now - landed >= quiet:
        return None
    if now - waiting_since >= dt.timedelta(hours=search.alerts.max_wait_hours):
        return None
    return dt.timedelta(seconds=round((landed + quiet - now).total_seconds()))


SAMPLE_WORK = DigestWork(work_id="sample", title="A sample work: what a digest of new works looks like", year=2024,
                         venue="Journal of Examples", doi="10.5555/12345678", url=None, providers=["openalex", "crossref"])


def send_sample(warehouse: Warehouse, search: SavedSearch,
                environ: Mapping[str, str] = os.environ) -> list[tuple[str, str | None, str | None]]:
    """`scholar-pipeline alerts test`: a digest marked [test] to every channel of the search, recorded nowhere, with
    the search's top works as "new" when the warehouse has some. Returns (channel, where it went, error) per channel."""
    top, counts = [SAMPLE_WORK], ReviewCounts()
    if warehouse.exists():
        with warehouse.read_connection(timeout_seconds=WAREHOUSE_WAIT_SECONDS) as con:
            if has_table(con, "unique_works") and has_table(con, "provenance"):
                work_ids = [w for (w,) in con.execute(
                    "SELECT work_id FROM unique_works WHERE list_contains(queries, ?)", [search.name]).fetchall()]
                if work_ids:
                    top, counts = top_works(con, search.name, work_ids, search.alerts.top), review_counts_of(con, search.name)
    results = []
    for channel in search.alerts.channels:
        digest = Digest(digest_id=f"test-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}", search=search.name,
                        description=search.description or search.text, channel=channel.label, new_works=len(top),
                        top=top, counts=counts, test=True)
        try:
            results.append((channel.label, deliver(channel, digest, environ), None))
        except DeliveryFailed as error:
            results.append((channel.label, None, str(error)))
    return results
