"""Figure 1: rate-limit use. Each provider at a raised limit, four processes fetching four days at once through the
shared limiter: the sustained request rate (the middle 80 % of the requests) as a share of the limit (target ≥ 95 %),
and the one-second windows that held more requests than the limit, counted from the simulator's log (target 0).

The processes call the pipeline's own fetch (`fetch_partition`, the client, the SQLite
limiter under one home), not Dagster: this measures how closely the limiter follows the
limit, not run start-up (figure 5). The simulator enforces the same limit, so a window
over it would also show as a 429.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import tempfile
from unittest import mock

from scholar_pipeline.defs.resources import ScholarApiResource
from scholar_pipeline.fetch import fetch_partition
from scholar_pipeline.providers import PROVIDERS
from scholar_pipeline.simulator import Corpus, ProviderSimulator
from scholar_pipeline.simulator.server import PLACEHOLDER_KEYS

LIMIT = 20.0  # requests a second, for every provider
PROCESSES = 4
PAGE_SIZE = 5  # many requests a day, for a steady state
TEXT = "large language model evaluation"
FIRST_DAY = dt.date(2024, 3, 1)


def _fetch_one_day(provider: str, day: dt.date, home: str) -> None:
    api = ScholarApiResource(home=home, springer_nature_api_key=PLACEHOLDER_KEYS["SPRINGER_NATURE_API_KEY"],
                             core_api_key=PLACEHOLDER_KEYS["CORE_API_KEY"])
    with api.client(PROVIDERS[provider]) as client:
        fetch_partition(client, PROVIDERS[provider], api.settings_for(PROVIDERS[provider]), api.landing, query="bench", text=TEXT,
                        day=day, mailto=None, live=True)


def over_limit_windows(arrivals: list[float], limit: float) -> int:
    """Requests that open a one-second window holding more than `limit` requests."""
    arrivals, over, end = sorted(arrivals), 0, 0
    for start, at in enumerate(arrivals):
        while end < len(arrivals) and arrivals[end] < at + 1.0:
            end += 1
        over += end - start > limit
    return over


def steady_rate(arrivals: list[float], trim: float = 0.1) -> float:
    """Requests a second over the middle of the run: the first and last `trim` of the requests are left out, where the
    processes are still starting (spawned Pythons importing the pipeline) or some have finished their day."""
    first, last = int(len(arrivals) * trim), int(len(arrivals) * (1 - trim)) - 1
    return (last - first) / (arrivals[last] - arrivals[first])


def run() -> list[dict]:
    rows = []
    corpus = Corpus(seed=5, min_per_day=300, max_per_day=300)
    with tempfile.TemporaryDirectory() as home, ProviderSimulator(corpus=corpus, rate_limits=dict.fromkeys(PROVIDERS, LIMIT)) as sim:
        settings = {f"SCHOLAR_PIPELINE_{p.upper()}_{name}": value for p in PROVIDERS
                    for name, value in (("RATE_LIMIT", str(LIMIT)), ("PAGE_SIZE", str(PAGE_SIZE)))}
        with mock.patch.dict(os.environ, {**sim.environ(), **settings}):
            context = multiprocessing.get_context("spawn")
            for provider in PROVIDERS:
                days = [FIRST_DAY + dt.timedelta(days=n) for n in range(PROCESSES)]
                with context.Pool(PROCESSES) as pool:
                    pool.starmap(_fetch_one_day, [(provider, day, home) for day in days])
                log = sim.requests_for(provider)
                arrivals = sorted(r.at for r in log)
                rate = steady_rate(arrivals)
                rows.append({"provider": provider, "limit_per_s": LIMIT, "requests": len(arrivals), "sustained_per_s": round(rate, 2),
                             "share_of_limit": round(rate / LIMIT, 3), "windows_over_limit": over_limit_windows(arrivals, LIMIT),
                             "answers_429": sum(r.status == 429 for r in log)})
    return rows
