"""The cross-process limiter, tested like a library: strict spacing and fair shares across processes."""

import multiprocessing
import time
from collections import Counter

from scholar_pipeline.client.ratelimit import SqliteRateLimiter
from scholar_pipeline_tests.helpers import max_in_any_window


def _worker(path: str, rate: float, count: int, name: str, queue) -> None:
    limiter = SqliteRateLimiter(path)
    for _ in range(count):
        limiter.acquire("provider", rate)
        queue.put((name, time.time()))


def test_slots_are_spaced_by_the_rate_whoever_asks(tmp_path):
    limiter = SqliteRateLimiter(tmp_path / "rl.sqlite", margin=0.05)
    slots = [limiter.reserve("openalex", rate=10) for _ in range(30)]
    gaps = [b - a for a, b in zip(slots, slots[1:])]
    assert min(gaps) >= 0.1 * 1.05 - 1e-6
    # Another provider has its own schedule.
    assert limiter.reserve("crossref", rate=10) < slots[-1]


def test_a_late_waker_pushes_the_next_sender_back(tmp_path):
    """Reserved slots are 1/rate apart, but a sleeper can wake late: actual sends must stay apart too."""
    limiter = SqliteRateLimiter(tmp_path / "rl.sqlite", margin=0.1)
    first, second = limiter.reserve("arxiv", rate=2), limiter.reserve("arxiv", rate=2)
    time.sleep(max(first + 0.3 - time.time(), 0))  # the first caller wakes 0.3 s late and sends
    assert limiter.confirm("arxiv", rate=2) == 0.0
    time.sleep(max(second - time.time(), 0))  # the second wakes on time...
    assert limiter.confirm("arxiv", rate=2) > 0.1  # ...and is told to wait until a period after the first send


def test_four_processes_share_one_limit_fairly(tmp_path):
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    rate, per_process = 8.0, 6
    workers = [context.Process(target=_worker, args=(str(tmp_path / "rl.sqlite"), rate, per_process, f"p{i}", queue)) for i in range(4)]
    for w in workers:
        w.start()
    events = [queue.get(timeout=60) for _ in range(4 * per_process)]
    for w in workers:
        w.join(timeout=30)
    assert max_in_any_window([t for _, t in events]) <= rate
    # Fair: slots are handed out in arrival order, so no process waits for all the others to finish.
    first_half = sorted(events, key=lambda e: e[1])[: len(events) // 2]
    assert set(Counter(name for name, _ in first_half)) == {"p0", "p1", "p2", "p3"}
