"""The cross-process limiter, tested like a library: strict spacing, no window over the limit wherever between send and answer requests arrive, fair shares, dead processes forgotten.

The workers below live in this module and run under the spawn start method, so this module
imports nothing heavy at the top (helpers.py pulls in Dagster): each child imports it again.
"""

import multiprocessing
import os
import random
import re
import signal
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from queue import Empty

import pytest

from scholar_pipeline.client.ratelimit import OWN_PLACES, SqliteRateLimiter


def _worker(path: str, rate: float, count: int, name: str, queue, barrier) -> None:
    limiter = SqliteRateLimiter(path)
    barrier.wait(timeout=120)  # every process is up: all start asking at once
    for _ in range(count):
        limiter.acquire("provider", rate)
        queue.put((name, time.time()))


def _jittery_worker(path: str, rate: float, count: int, seed: int, queue, barrier) -> None:
    """Send through `sending` like the client does; each request "arrives" at a random moment between its send and its
    answer (up to 80 ms later), which is all the limiter may assume about the provider. A `transit` longer than any
    answer takes: the arrival is bounded by the answer alone, also when a loaded machine holds this process back
    between them (with the default 0.1 s, a process paused 20 ms there "arrives" after its send stopped counting)."""
    rng = random.Random(seed)
    limiter = SqliteRateLimiter(path, margin=0.0, transit=5.0)
    barrier.wait(timeout=120)
    for _ in range(count):
        with limiter.sending("provider", rate):
            time.sleep(rng.uniform(0, 0.08) if rng.random() < 0.5 else 0)
            queue.put(time.time())
            time.sleep(rng.uniform(0, 0.02))


def _reserve_and_hang(path: str, key: str, rate: float, count: int, queue) -> None:
    """Queue `count` reservations, report the last slot, then wait to be killed."""
    limiter = SqliteRateLimiter(path)
    slots = [limiter.reserve(key, rate) for _ in range(count)]
    queue.put(slots[-1])
    time.sleep(300)


def _slow_answers_worker(limiter_at: str, key: str, cap: int | None, count: int, queue, barrier) -> None:
    """Send `count` requests through `sending` with `cap` in flight, each answered 0.1 s later; report each one's
    (start, end) inside the block. `limiter_at`: a SQLite file, or a redis:// URL."""
    if limiter_at.startswith("redis://"):
        from scholar_pipeline.client.redis_ratelimit import RedisRateLimiter

        limiter = RedisRateLimiter(limiter_at, fallback=None)
    else:
        limiter = SqliteRateLimiter(limiter_at)
    barrier.wait(timeout=120)
    for _ in range(count):
        with limiter.sending(key, rate=100.0, in_flight=cap):
            started = time.time()
            time.sleep(0.1)
            queue.put((started, time.time(), os.getpid()))


def _hang_in_flight(path: str, key: str, queue) -> None:
    """Send one request with one allowed in flight, say so, and never end it (until killed)."""
    with SqliteRateLimiter(path).sending(key, rate=100.0, in_flight=1):
        queue.put("sent")
        time.sleep(300)


def most_open_at_once(intervals: list[tuple[float, float]]) -> int:
    """The most (start, end) intervals that overlap at one moment (an end before a start at the same instant)."""
    events = sorted([(end, -1) for _, end, *_ in intervals] + [(start, 1) for start, *_ in intervals])
    open_now = most = 0
    for _, change in events:
        open_now += change
        most = max(most, open_now)
    return most


def slow_answers(limiter_at: str, key: str, cap: int | None, processes: int = 4, count: int = 5) -> list[tuple[float, float, int]]:
    """(start, end, pid) of each request, in the order they were reported, when `processes` processes sent
    slow-answered requests together."""
    context = multiprocessing.get_context("spawn")
    queue, barrier = context.Queue(), context.Barrier(processes)
    workers = [context.Process(target=_slow_answers_worker, args=(limiter_at, key, cap, count, queue, barrier))
               for _ in range(processes)]
    for worker in workers:
        worker.start()
    intervals = [_get(queue, workers) for _ in range(processes * count)]
    for worker in workers:
        worker.join(timeout=30)
    return intervals


def fairly_shared(intervals: list[tuple[float, float, int]]) -> bool:
    """Whether, at every request's start, no process had started two more requests than another."""
    started: Counter = Counter({pid: 0 for _, _, pid in intervals})
    for _, _, pid in sorted(intervals):
        started[pid] += 1
        if max(started.values()) - min(started.values()) > 1:
            return False
    return True


class _Recording(SqliteRateLimiter):
    """The real limiter, keeping every connection it opens so the test can look at them afterwards."""

    def _connect(self) -> sqlite3.Connection:
        con = super()._connect()
        self.__dict__.setdefault("connections", []).append(con)
        return con


def _is_closed(con: sqlite3.Connection) -> bool:
    try:
        con.execute("SELECT 1")
    except sqlite3.ProgrammingError:
        return True
    return False


def _open_descriptors_to(path: Path) -> int:
    """How many of this process's file descriptors are open on `path` (or its -wal/-shm files)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith(str(path))
        except OSError:  # the descriptor listdir itself used, closed since
            pass
    return count


def _get(queue, processes, timeout: float = 120):
    """The next item from `queue`, failing at once (not after `timeout`) if a process it waits on has failed."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return queue.get(timeout=0.5)
        except Empty:
            dead = [p.exitcode for p in processes if p.exitcode not in (None, 0)]
            assert not dead, f"a child process failed (exit codes {dead})"
            assert time.monotonic() < deadline, "no report from the child processes"


@contextmanager
def _holder(tmp_path: Path, key: str, rate: float, count: int) -> Iterator[float]:
    """A process that has reserved `count` slots (yields the last), SIGKILLed and reaped on leaving the block."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    holder = context.Process(target=_reserve_and_hang, args=(str(tmp_path / "rl.sqlite"), key, rate, count, queue))
    holder.start()
    try:
        yield _get(queue, [holder])
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(timeout=30)
    assert holder.exitcode == -signal.SIGKILL


def test_every_connection_is_closed(tmp_path):
    """An unclosed sqlite3 connection is not freed when dropped (it sits in a reference cycle until the
    garbage collector runs), so it keeps the database, -wal and -shm files open: close them all."""
    limiter = _Recording(tmp_path / "rl.sqlite")
    for _ in range(20):
        limiter.acquire("openalex", rate=1000)
    limiter.reserve("crossref", rate=1000)
    assert len(limiter.connections) >= 20
    assert [c for c in limiter.connections if not _is_closed(c)] == []
    if Path("/proc/self/fd").is_dir():  # and none is left holding the file (or its WAL) open
        assert _open_descriptors_to(tmp_path / "rl.sqlite") == 0


def test_concurrent_reservations_are_spaced_by_the_period_and_keys_are_independent(tmp_path):
    """Eight threads with a limiter each reserve on two keys at once: no two slots of a key closer than a period."""
    rate, margin, per_thread, threads = 1.0, 0.05, 10, 8  # a slow rate: the schedule, not the clock, spaces the slots
    period = (1 / rate) * (1 + margin)
    barrier = threading.Barrier(threads)
    slots: dict[str, list[float]] = {"openalex": [], "crossref": []}
    errors: list[BaseException] = []

    def reserve(index: int) -> None:
        try:
            limiter = SqliteRateLimiter(tmp_path / "rl.sqlite", margin=margin)
            keys = ["openalex", "crossref"] if index % 2 else ["crossref", "openalex"]
            barrier.wait(timeout=60)
            for _ in range(per_thread):
                for key in keys:
                    slots[key].append(limiter.reserve(key, rate))
        except BaseException as error:  # a thread's exception would otherwise vanish
            errors.append(error)

    workers = [threading.Thread(target=reserve, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert errors == []
    for key, taken in slots.items():
        taken.sort()
        assert len(taken) == threads * per_thread
        gaps = [b - a for a, b in zip(taken, taken[1:])]
        assert min(gaps) >= period - 1e-6, key
        # Each key has a schedule of its own: were the keys one queue, 160 slots would span twice this.
        assert taken[-1] - taken[0] < 1.5 * len(taken) * period, key


def test_a_late_waker_pushes_the_next_sender_back(tmp_path):
    """Reserved slots are 1/rate apart, but a sleeper can wake late: actual sends must stay apart too."""
    limiter = SqliteRateLimiter(tmp_path / "rl.sqlite", margin=0.1)
    first, second = limiter.reserve("arxiv", rate=2), limiter.reserve("arxiv", rate=2)
    time.sleep(max(first + 0.3 - time.time(), 0))  # the first caller wakes 0.3 s late and sends
    assert limiter.confirm("arxiv", rate=2) == 0.0
    time.sleep(max(second - time.time(), 0))  # the second wakes on time...
    assert limiter.confirm("arxiv", rate=2) > 0.1  # ...and is told to wait until a period after the first send


def test_four_processes_share_one_limit_fairly(tmp_path):
    from scholar_pipeline_tests.helpers import max_in_any_window

    context = multiprocessing.get_context("spawn")
    queue, barrier = context.Queue(), context.Barrier(4)
    rate, per_process = 8.0, 6
    workers = [
        context.Process(target=_worker, args=(str(tmp_path / "rl.sqlite"), rate, per_process, f"p{i}", queue, barrier)) for i in range(4)
    ]
    for w in workers:
        w.start()
    events = [_get(queue, workers) for _ in range(4 * per_process)]
    for w in workers:
        w.join(timeout=30)
    assert max_in_any_window([t for _, t in events]) <= rate
    # Fair: slots are handed out in arrival order, so no process waits for all the others to finish.
    first_half = sorted(events, key=lambda e: e[1])[: len(events) // 2]
    assert set(Counter(name for name, _ in first_half)) == {"p0", "p1", "p2", "p3"}


def test_a_killed_process_leaves_no_wait_behind(tmp_path):
    rate = 2.0
    limiter = SqliteRateLimiter(tmp_path / "rl.sqlite")
    with _holder(tmp_path, "openalex", rate, count=40) as last_slot:
        pass
    left_behind = last_slot + limiter.period(rate) - time.time()  # what waiting for the dead reservations would cost
    assert left_behind > 15
    waited = limiter.acquire("openalex", rate)
    assert waited < left_behind / 4
    # The next caller queues behind the live send only, not behind the dead process's slots.
    assert limiter.reserve("openalex", rate) < time.time() + 2 * limiter.period(rate)


def test_a_caller_already_queued_behind_a_killed_process_moves_up(tmp_path):
    """A live caller asleep behind dead reservations notices within a poll, and says why it is waiting."""
    rate = 2.0
    limiter = SqliteRateLimiter(tmp_path / "rl.sqlite", poll=0.5)
    messages: list[str] = []
    queued = threading.Event()
    result: list[float] = []

    def log(message: str) -> None:
        messages.append(message)
        queued.set()

    caller = threading.Thread(target=lambda: result.append(limiter.acquire("crossref", rate, log=log)))
    with _holder(tmp_path, "crossref", rate, count=40):
        caller.start()
        assert queued.wait(timeout=60)  # it has reserved its slot, behind the holder's 40
    caller.join(timeout=120)
    [message] = messages
    assert message.startswith("waiting ") and " s for a crossref rate-limit slot" in message
    told = float(message.split()[1])
    assert told > 15
    assert result and result[0] < told / 4


def test_short_waits_are_silent_and_long_ones_reported(tmp_path):
    reported: list[str] = []
    limiter = SqliteRateLimiter(tmp_path / "rl.sqlite", log=reported.append, long_wait=2.0)
    assert limiter.acquire("crossref", rate=1000) < 2.0
    held = [limiter.reserve("core", rate=2) for _ in range(6)]  # held by this live process: a queue of 3.3 s
    waited = limiter.acquire("core", rate=2)
    [message] = reported
    assert re.fullmatch(r"waiting \d+\.\d s for a core rate-limit slot \(.*\)", message)
    told = float(message.split()[1])
    assert 2.0 < told <= waited + 0.05
    assert told <= held[-1] + limiter.period(2) - held[0] + 0.05


def test_an_interrupted_acquire_gives_its_slot_back(tmp_path):
    """A run terminated while waiting raises out of acquire; its reservation must not hold the queue."""

    class Terminated(Exception):
        pass

    def terminate(message: str) -> None:
        raise Terminated(message)

    limiter = SqliteRateLimiter(tmp_path / "rl.sqlite", long_wait=1.0)
    held = [limiter.reserve("pubmed", rate=1) for _ in range(3)]
    with pytest.raises(Terminated):
        limiter.acquire("pubmed", rate=1, log=terminate)
    # The next slot follows the last one still held, not the abandoned one after it.
    assert limiter.reserve("pubmed", rate=1) == pytest.approx(held[-1] + limiter.period(1), abs=1e-6)


def _send_log(path: Path, key: str) -> list[tuple[float, float]]:
    with closing(sqlite3.connect(path)) as con:
        return con.execute("SELECT sent, arrived_by FROM rate_send_log WHERE key = ? ORDER BY id", (key,)).fetchall()


def test_the_window_is_the_rate_in_whole_requests_and_at_least_a_second():
    assert SqliteRateLimiter.window(20.0) == (20, 1.0)
    assert SqliteRateLimiter.window(100 / 60) == (2, pytest.approx(1.2))  # the simulator's Springer: 2 in any second
    assert SqliteRateLimiter.window(1 / 3) == (1, pytest.approx(3.0))  # arXiv: one every three seconds
    assert SqliteRateLimiter.window(10 / 60) == (1, pytest.approx(6.0))


def test_a_request_that_arrives_late_cannot_put_one_too_many_in_a_window(tmp_path):
    """Sends exactly a period apart (no margin), but every other request reaches the provider only just before its
    answer comes back, 0.15 s after its send, and the others at once: spacing alone would put six arrivals within a
    second at 5/s (the late one, then the five sent in the second after it). The limiter counts a send as arriving any
    time until its answer, so the sixth waits a second after that answer."""
    from scholar_pipeline_tests.helpers import max_in_any_window

    limiter = SqliteRateLimiter(tmp_path / "rl.sqlite", margin=0.0, transit=1.0)
    arrivals = []
    for i in range(16):
        with limiter.sending("pubmed", rate=5):
            if i % 2 == 0:
                time.sleep(0.15)
            arrivals.append(time.time())
    assert max_in_any_window(arrivals) <= 5
    # What the limiter recorded: when each request went out, at most four earlier ones were answered less than a second before.
    log = _send_log(tmp_path / "rl.sqlite", "pubmed")
    assert len(log) == 16
    assert all(sum(arrived_by > sent - 1.0 for _, arrived_by in log[:k]) <= 4 for k, (sent, _) in enumerate(log))


def test_a_send_counts_until_its_answer_or_for_transit_seconds_without_one(tmp_path):
    """An answer proves the request has arrived; without one (still in flight, failed, or only `acquire`d) the send is
    taken to arrive up to `transit` seconds after it went out."""

    class Cut(Exception):
        pass

    limiter = SqliteRateLimiter(tmp_path / "rl.sqlite", transit=60.0)
    with limiter.sending("core", rate=1000):
        body_done = time.time()
    after = time.time()
    with pytest.raises(Cut), limiter.sending("core", rate=1000):
        raise Cut
    limiter.acquire("core", rate=1000)
    answered, cut, acquired = _send_log(tmp_path / "rl.sqlite", "core")
    assert body_done <= answered[1] <= after
    assert cut[1] == pytest.approx(cut[0] + 60.0, abs=1e-6) and acquired[1] == pytest.approx(acquired[0] + 60.0, abs=1e-6)

    # Four sends at 4/s with no answer: the fifth waits until the first's transit is over, plus a window.
    limiter = SqliteRateLimiter(tmp_path / "rl.sqlite", margin=0.0, transit=0.3)
    for _ in range(5):
        limiter.acquire("plos", rate=4)
    sent = [s for s, _ in _send_log(tmp_path / "rl.sqlite", "plos")]
    assert sent[4] >= sent[0] + 0.3 + 1.0


def test_four_processes_with_late_arrivals_never_exceed_the_limit(tmp_path):
    """The guarantee across processes, with no margin: arrivals anywhere between send and answer."""
    from scholar_pipeline_tests.helpers import max_in_any_window

    context = multiprocessing.get_context("spawn")
    queue, barrier = context.Queue(), context.Barrier(4)
    rate, per_process = 7.0, 12
    workers = [context.Process(target=_jittery_worker, args=(str(tmp_path / "rl.sqlite"), rate, per_process, i, queue, barrier))
               for i in range(4)]
    for w in workers:
        w.start()
    arrivals = [_get(queue, workers) for _ in range(4 * per_process)]
    for w in workers:
        w.join(timeout=30)
    assert max_in_any_window(arrivals) <= rate


@pytest.mark.parametrize("cap", [1, 2, None])
def test_requests_in_flight_across_processes_never_exceed_the_cap(tmp_path, cap):
    """Answers (0.1 s) far slower than the period (0.01 s): the rate alone would keep all four processes' requests
    open together; a cap holds them to it, and is reached, not undershot."""
    requests = slow_answers(str(tmp_path / "rl.sqlite"), "arxiv", cap)
    assert most_open_at_once(requests) == (cap if cap is not None else 4)
    # Taken in line: a process just answered cannot take the place again from those waiting for it.
    assert cap is None or fairly_shared(requests)


def test_a_request_that_failed_or_whose_process_died_is_no_longer_in_flight(tmp_path):
    class Cut(Exception):
        pass

    path = tmp_path / "rl.sqlite"
    limiter = SqliteRateLimiter(path)
    with pytest.raises(Cut), limiter.sending("arxiv", rate=100.0, in_flight=1):
        raise Cut
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    holder = context.Process(target=_hang_in_flight, args=(str(path), "arxiv", queue))
    holder.start()
    assert _get(queue, [holder]) == "sent"
    sent, done = threading.Event(), threading.Event()

    def send_and_hold() -> None:
        with limiter.sending("arxiv", rate=100.0, in_flight=1):
            sent.set()
            done.wait(timeout=60)

    waiting = threading.Thread(target=send_and_hold, daemon=True)
    waiting.start()
    assert not sent.wait(timeout=1.0)  # the holder's request is in flight: no second one
    os.kill(holder.pid, signal.SIGKILL)
    holder.join(timeout=30)
    assert sent.wait(timeout=10)  # not IN_FLIGHT_EXPIRY (600 s): the dead process's request is dropped at the next look
    with closing(sqlite3.connect(path)) as con:
        assert con.execute("SELECT count(*) FROM rate_in_flight").fetchone()[0] == 1  # the waiter's, open
        done.set()
        waiting.join(timeout=10)
        assert con.execute("SELECT count(*) FROM rate_in_flight").fetchone()[0] == 0


def holding_in_thread(limiter, key: str = "arxiv", rate: float = 100.0) -> tuple[threading.Event, threading.Event]:
    """A thread that sends through `limiter` with one request allowed in flight and stays in its block until told:
    returns (entered, leave)."""
    entered, leave = threading.Event(), threading.Event()

    def hold() -> None:
        with limiter.sending(key, rate=rate, in_flight=1):
            entered.set()
            leave.wait(timeout=60)

    threading.Thread(target=hold, daemon=True).start()
    return entered, leave


def test_limiters_of_one_process_naming_one_file_differently_share_its_places(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first_entered, first_leave = holding_in_thread(SqliteRateLimiter(Path("rl.sqlite")))
    assert first_entered.wait(timeout=10)
    second_entered, second_leave = holding_in_thread(SqliteRateLimiter(tmp_path / "rl.sqlite"))
    assert not second_entered.wait(timeout=1.0)  # the first one's place is not taken for a forgotten one of this process
    first_leave.set()
    assert second_entered.wait(timeout=10)
    second_leave.set()


def test_a_place_whose_release_failed_is_dropped_by_the_next_look_of_its_process(tmp_path, monkeypatch):
    limiter = SqliteRateLimiter(tmp_path / "rl.sqlite")
    real_give_back = SqliteRateLimiter._give_back
    monkeypatch.setattr(SqliteRateLimiter, "_give_back", lambda self, con, place: OWN_PLACES.discard((self._real_path, place)))
    with limiter.sending("arxiv", rate=100.0, in_flight=1):
        pass
    with closing(sqlite3.connect(tmp_path / "rl.sqlite")) as con:
        assert con.execute("SELECT holding FROM rate_in_flight").fetchall() == [(1,)]  # left behind, as by a failed delete
    monkeypatch.setattr(SqliteRateLimiter, "_give_back", real_give_back)
    entered, leave = holding_in_thread(limiter)
    assert entered.wait(timeout=5)  # not after the place's expiry (600 s)
    leave.set()


def test_a_place_expires_counting_from_the_send_not_from_the_wait_for_a_slot(tmp_path):
    """Expiry 0.5 s; the holder waits about a second for its rate slot after taking its place, then stays in flight.
    Counted from the admission, its place would have expired and a second caller would hold one beside it."""
    limiter = SqliteRateLimiter(tmp_path / "rl.sqlite", in_flight_expiry=0.5)
    limiter.acquire("arxiv", rate=1.0)  # the next send waits a period, a second
    entered, leave = holding_in_thread(limiter, rate=1.0)
    assert entered.wait(timeout=10)
    second_entered, second_leave = holding_in_thread(limiter, rate=1.0)
    time.sleep(0.2)
    with closing(sqlite3.connect(tmp_path / "rl.sqlite")) as con:
        assert [holding for holding, in con.execute("SELECT holding FROM rate_in_flight ORDER BY id")] == [1, 0]
    leave.set()
    assert second_entered.wait(timeout=10)
    second_leave.set()
