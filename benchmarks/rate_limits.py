"""Figure 1: rate-limit use. Each provider at a raised limit (20/s), four processes fetching a day each through the
shared limiter, started together. Measured at the server, from the simulator's request log:

- `share_of_limit`: requests a second while all four processes are fetching (from the last one's first arrival to
  the first one's last), as a share of the limit (target ≥ 95 %);
- `windows_over_limit`: one-second windows, one starting at each arrival, holding more requests than the limit
  (target 0); `max_in_1s`, the most any holds; `refused`: answers other than 200 (no faults are injected: a 429, or
  PLOS's 503, is the simulator refusing a request over the same limit);
- `queued_share`: the send rate over the gaps after which the next request had been waiting for the limiter since
  before the previous send, as a share of the limit: what the limiter itself lets through; `share_of_limit` is lower
  by the moments when all four processes were busy with their pages (the machine's load shows there);
- `send_to_arrival_ms_*`: from the limiter's confirmed send to the simulator logging the arrival (the jitter the
  limit must survive); `slot_to_arrival_ms_*`: the same from the reserved slot (late wake-ups and queueing too).

The processes run the pipeline's own fetch (`fetch_partition`, the client, the SQLite limiter under one home), not
Dagster. Pages of one record, and days sized for about 100 pages each (PLOS and Springer serve a small part of the
corpus, so their days hold more works), built before the clock starts: the simulator's work per request stays small
next to the limiter's. Each worker tags its requests with a header below the limiter (which process, which request)
and notes each one's slot and confirmed send time, so the server's log can be matched to the limiter's schedule.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import statistics
import tempfile
import time
from typing import NamedTuple
from unittest import mock

from scholar_pipeline.client.ratelimit import SqliteRateLimiter
from scholar_pipeline.client.transports import WholeBodyTransport
from scholar_pipeline.defs.resources import ScholarApiResource
from scholar_pipeline.fetch import fetch_partition
from scholar_pipeline.providers import PROVIDERS
from scholar_pipeline.simulator import Corpus, ProviderSimulator
from scholar_pipeline.simulator.server import PLACEHOLDER_KEYS

LIMIT = 20.0  # requests a second, for every provider
PROCESSES = 4
PAGE_SIZE = 1  # one record a page: the simulator's work per page (it filters the whole day) and the pipeline's stay small
# Works a day for about 100 pages of this benchmark's search (it finds ~60 % of a day; PLOS serves only PLOS ONE's
# works, Springer its two journals): about 100 requests a process.
WORKS_PER_DAY = {"openalex": 160, "crossref": 172, "arxiv": 164, "pubmed": 160, "plos": 880, "springer": 500, "core": 276}
TEXT = "large language model evaluation"
FIRST_DAY = dt.date(2024, 3, 1)
SEND_HEADER = "x-benchmark-send"  # "<process>:<request>", added below the limiter


def _fetch_one_day(provider: str, day: dt.date, home: str, barrier, results) -> None:
    """Fetch one day once every process is ready; puts the reserved slot and the confirmed send time of each request
    this process sent, in order, on `results`."""
    asked: list[float] = []  # when the request asked the limiter for a slot
    slots: list[float] = []
    confirmed: list[float] = []
    reserve, confirm, handle = SqliteRateLimiter._reserve, SqliteRateLimiter._confirm, WholeBodyTransport.handle_request

    def reserving(self, *args, **kwargs):
        asked.append(time.time())
        reservation, slot = reserve(self, *args, **kwargs)
        slots.append(slot)
        return reservation, slot

    def confirming(self, con, *args, **kwargs):
        wait, send = confirm(self, con, *args, **kwargs)
        if send is not None:  # the time the limiter counts the send from
            confirmed.append(con.execute("SELECT sent FROM rate_send_log WHERE id = ?", (send,)).fetchone()[0])
        return wait, send

    def tagged(self, request):  # below the limiter: the request has its slot and is about to be sent
        request.headers[SEND_HEADER] = f"{day.isoformat()}:{len(slots) - 1}"
        return handle(self, request)

    api = ScholarApiResource(home=home, springer_nature_api_key=PLACEHOLDER_KEYS["SPRINGER_NATURE_API_KEY"],
                             core_api_key=PLACEHOLDER_KEYS["CORE_API_KEY"])
    with mock.patch.object(SqliteRateLimiter, "_reserve", reserving), mock.patch.object(WholeBodyTransport, "handle_request", tagged), \
            mock.patch.object(SqliteRateLimiter, "_confirm", confirming):
        with api.client(PROVIDERS[provider]) as client:
            barrier.wait(timeout=120)  # every process is up (spawned, imported): all start fetching at once
            fetch_partition(client, PROVIDERS[provider], api.settings_for(PROVIDERS[provider]), api.landing, query="bench",
                            text=TEXT, day=day, mailto=None, live=True)
    results.put({"process": day.isoformat(), "asked": asked, "slots": slots, "confirmed": confirmed})


def over_limit_windows(arrivals: list[float], limit: float) -> tuple[int, int]:
    """One-second windows, one starting at each arrival, holding more than `limit` requests; and the most any holds."""
    arrivals, over, most, end = sorted(arrivals), 0, 0, 0
    for start, at in enumerate(arrivals):
        while end < len(arrivals) and arrivals[end] < at + 1.0:
            end += 1
        over += end - start > limit
        most = max(most, end - start)
    return over, most


class Request(NamedTuple):
    """One request the server logged, with the limiter's schedule for it (wall-clock seconds)."""
    process: str
    asked: float  # the process asked the limiter for a slot
    slot: float  # the slot it reserved
    sent: float  # the limiter confirmed the send
    arrived: float  # the simulator logged its arrival
    status: int


def all_active(requests: list[Request]) -> list[Request]:
    """The requests that arrived while every process was fetching: from the last process's first arrival to the first
    process's last."""
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    for r in requests:
        first[r.process], last[r.process] = min(first.get(r.process, r.arrived), r.arrived), max(last.get(r.process, r.arrived), r.arrived)
    start, end = max(first.values()), min(last.values())
    return sorted((r for r in requests if start <= r.arrived <= end), key=lambda r: r.arrived)


def queued_rate(requests: list[Request]) -> float:
    """Sends a second over the gaps after which the next request had been waiting for the limiter since before the
    previous send: what the limiter lets through whenever there is a request to send (the gaps in which every process
    was busy with its pages are left out)."""
    by_send = sorted(requests, key=lambda r: r.sent)
    gaps = [b.sent - a.sent for a, b in zip(by_send, by_send[1:]) if b.asked <= a.sent]
    return len(gaps) / sum(gaps)


def _percentile(values: list[float], share: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[round(share * 1000) - 1] if len(values) > 1 else values[0]


def _ms(seconds: float) -> float:
    return round(1000 * seconds, 1)


def collect(provider: str, home: str) -> list[Request]:
    """Four processes fetch a day each, starting together; every request the server logged, with its schedule."""
    corpus = Corpus(seed=5, min_per_day=WORKS_PER_DAY[provider], max_per_day=WORKS_PER_DAY[provider])
    # The cap on requests in flight raised with the rate (at 1, arXiv's and Crossref's, it would measure their answer times).
    settings = {f"SCHOLAR_PIPELINE_{provider.upper()}_RATE_LIMIT": str(LIMIT), f"SCHOLAR_PIPELINE_{provider.upper()}_PAGE_SIZE": str(PAGE_SIZE),
                f"SCHOLAR_PIPELINE_{provider.upper()}_MAX_IN_FLIGHT": str(PROCESSES)}
    days = [FIRST_DAY + dt.timedelta(days=n) for n in range(PROCESSES)]
    for day in days:  # the simulator builds a day's works on its first request for it: not while the clock runs
        corpus.works_on(day)
    with ProviderSimulator(corpus=corpus, rate_limits={provider: LIMIT}, in_flight_limits={provider: PROCESSES}) as sim, mock.patch.dict(os.environ, {**sim.environ(), **settings}):
        context = multiprocessing.get_context("spawn")
        barrier, results = context.Barrier(PROCESSES), context.Queue()
        workers = [context.Process(target=_fetch_one_day, args=(provider, day, home, barrier, results)) for day in days]
        for worker in workers:
            worker.start()
        try:
            schedules = {s["process"]: s for s in (results.get(timeout=600) for _ in workers)}
        finally:
            for worker in workers:
                worker.join(timeout=60)
        assert all(worker.exitcode == 0 for worker in workers), [worker.exitcode for worker in workers]
        log = sim.requests_for(provider)
    requests = []
    for logged in log:
        process, index = next(v for k, v in logged.headers.items() if k.lower() == SEND_HEADER).split(":")
        schedule, n = schedules[process], int(index)
        requests.append(Request(process, schedule["asked"][n], schedule["slots"][n], schedule["confirmed"][n], logged.at, logged.status))
    return requests


def summarize(provider: str, requests: list[Request]) -> dict:
    active = all_active(requests)
    span = active[-1].arrived - active[0].arrived
    rate = (len(active) - 1) / span
    over, most = over_limit_windows([r.arrived for r in requests], LIMIT)
    transit = [r.arrived - r.sent for r in requests]  # what the limiter must allow for between a send and its arrival
    late = [r.arrived - r.slot for r in requests]  # the same from the reserved slot: queueing behind late wakers too
    return {"provider": provider, "limit_per_s": LIMIT, "requests": len(requests), "all_active_requests": len(active),
            "all_active_s": round(span, 1), "share_of_limit": round(rate / LIMIT, 3),
            "queued_share": round(queued_rate(active) / LIMIT, 3), "windows_over_limit": over, "max_in_1s": most,
            "refused": sum(r.status != 200 for r in requests),
            "send_to_arrival_ms_p50": _ms(statistics.median(transit)), "send_to_arrival_ms_p99": _ms(_percentile(transit, 0.99)),
            "send_to_arrival_ms_max": _ms(max(transit)), "slot_to_arrival_ms_p50": _ms(statistics.median(late)),
            "slot_to_arrival_ms_p99": _ms(_percentile(late, 0.99))}


def measure(provider: str, home: str) -> dict:
    return summarize(provider, collect(provider, home))


def run() -> list[dict]:
    rows = []
    for provider in PROVIDERS:
        with tempfile.TemporaryDirectory() as home:
            rows.append(measure(provider, home))
    return rows
