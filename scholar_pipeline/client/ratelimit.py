"""A fair, cross-process rate limiter: slot reservation and a sliding-window send log in SQLite.

Why not pyrate-limiter: across four processes its SQLite bucket starved whole processes
(single waits of 21 s at 2 req/s, [20, 20, 0, 0] requests per process) and its Redis
bucket admitted 3 requests in one second at 2 req/s (figures in shared/library_notes.md).

The limit: no window of n/rate seconds holds more than n arrivals at the provider, n =
ceil(rate) (`window`: 20/s is 20 in any second). Two steps per request, each one `BEGIN
IMMEDIATE` transaction on the provider's rows:
1. reserve: the caller's slot is one period after the latest reservation still held (or
   after the last send, or now), and no earlier than the window has room, counting the
   slots before it as sends; written as a row (key, slot, host, pid). Slots are handed
   out in arrival order, so every process gets its share.
2. confirm, on waking at the slot: send only if a period has passed since the last
   *confirmed* send (a process that wakes late pushes the next sender back instead of
   squeezing two requests together) and fewer than n earlier sends can have arrived
   within the last window; else sleep until both hold and try again. The confirmed send
   is logged in `rate_send_log` with the latest time it can arrive: `transit` seconds
   after it (0.1 s), brought forward to the moment its answer comes back when the
   caller sends inside `sending` (an answer proves arrival). It deletes the caller's
   reservation; so does an acquire that ends in an exception.

Why a send log and not a margin: the provider counts arrivals, and a send arrives late
by whatever the sender's process, the network and the server's own scheduling add. With
4 processes at 20/s (`benchmarks/rate_limits.py`), confirm to the simulator's log took
p50 0.5-0.8 ms, p99 3-8 ms, max 5-20 ms on the project's 2-core machine, and p99 18-41
ms, max 25-116 ms with three busy loops on its cores. Spacing alone needs a margin above
the worst of that: 10 % held (90-91 % of the limit), none put L+1 in about half the
windows (library notes). The log holds the limit by construction for every request
answered within `transit`; a slower one is assumed to have arrived within `transit` of
its send (what matters is its delay less that of the sends a window later: jitter, as
the margin assumed). So `margin` (headroom widening the period) defaults to 0: 96-99 %
of the limit at the server, 0 windows over, 0 refusals (83-92 % with the busy loops,
which starve the fetching processes themselves). The cost falls on providers
slower to answer than `transit`: n sends per window plus `transit` (91 % of 20/s, what
the 10 % margin cost everywhere).

Dead processes: a reservation is a promise to send later, and a process killed with
`kill -9` (or by the OOM killer) while queued never keeps it. Kept, its slots would delay
every later caller for nothing (at low rates with several processes, a run was seen
waiting ~100 s for slots nobody would use). So every reserve, and every waiting caller
about once per `poll` seconds, drops the reservations of processes that no longer exist
(`os.kill(pid, 0)` raises ProcessLookupError, or /proc shows an unreaped zombie) and
moves the remaining future slots earlier to close the gaps. Order is kept (arrival, by
row id), no slot ever moves later and no two come closer than a period; a waiting caller
re-reads its slot when it polls, so a live process queued behind a dead one moves up
too. Pids are only judged for rows written on this host and pid namespace (containers
sharing the file have pids of their own). Rows the check cannot judge (another host, a
pid reused since, Windows) stay until their slot is a period old: the cost of a wrong
"alive" is a wait, and of a wrong "dead" a less fair order, never a send the period or
the window forbids, since the confirm step alone enforces both. A dead process's sends
need nothing: unanswered, they count for `transit` seconds.

Connections: some providers also cap the requests awaiting an answer at once (arXiv one
"across all your machines", Crossref's public pool one), and refuse or block a client over
it whatever its rate: with answers slower than the period (arXiv takes seconds), spacing
alone keeps several open. `sending(..., in_flight=k)` first takes one of k places, in line
(`rate_in_flight`: a row per caller, waiting or holding, first come first served, so a
process that has just been answered cannot take the place from one that waits), then
acquires its send as above, and gives the place back when its block ends, answered or
not. A waiting row is dropped when its process is gone or has not looked for `STALE_WAITER`
seconds; a holding one when its process is gone, when this process no longer knows it (a
release that failed), or `in_flight_expiry` seconds after it was taken (a process on
another machine, stopped unseen; set above the client's whole-response deadline).

A wait longer than `long_wait` seconds is reported to `log` (a logger, whose `.info` is
used, or any callable taking a string). Every connection is closed when done with (a
dropped sqlite3 connection lingers, files open, until the garbage collector finds it).
`acquire` keeps one for its whole call, idle while asleep, because closing the last
connection to a WAL database checkpoints it; `synchronous=NORMAL` spares each commit an
fsync (0.4 ms, p99 7 ms here), at the risk of losing the last sends in a power cut.
Tables: `rate_sends` (key, last_sent), `rate_reservations`, `rate_in_flight` and
`rate_send_log` (kept a minute past its window, for diagnosis); the `rate_slots` table of
the single-TAT version, left in older files, is no longer read.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path


def _host() -> str:
    """This host and, on Linux, its pid namespace and boot: a pid names a process only within one."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    try:  # hosts cloned from one image share a name and their first pid namespace's number, never a boot id
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = ""
    return " ".join(part for part in (socket.gethostname(), namespace, boot) if part)


HOST = _host()


def _switch_to_wal(con: sqlite3.Connection, attempts: int = 600) -> None:
    """WAL mode, once per file. Switching needs the file to itself and SQLite does not wait for that (the busy
    timeout does not apply), so processes creating the file at the same moment take turns here."""
    for _ in range(attempts):
        try:
            con.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error):
                raise
            time.sleep(0.05)
    con.execute("PRAGMA journal_mode=WAL")


KEEP_SENDS = 60.0  # seconds a send stays in `rate_send_log` once it can no longer count (for diagnosis and tests)
IN_FLIGHT_POLL = 0.05  # seconds between a waiting caller's looks for a free place among the requests in flight
STALE_WAITER = 10.0  # seconds without a look after which a caller waiting in line is taken to be gone
IN_FLIGHT_EXPIRY = 600.0  # the default longest a place is held: twice the client's default whole-response deadline
# This process's places from taking to giving back ((the limiter file's real path, row id); a Redis place's member,
# unique): a row of this pid not here was left by a release that failed, and is dropped rather than held until it expires.
OWN_PLACES: set[object] = set()


class SqliteRateLimiter:
    def __init__(self, path: Path, margin: float = 0.0, *, transit: float = 0.1, log=None, long_wait: float = 5.0,
                 poll: float = 1.0, in_flight_expiry: float = IN_FLIGHT_EXPIRY):
        self.path = Path(path)
        self._real_path = os.path.realpath(self.path)  # one name per file, however each limiter of a process names it
        self.margin, self.transit, self.in_flight_expiry = margin, transit, in_flight_expiry
        self.log, self.long_wait, self.poll = log, long_wait, poll
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as con:
            _switch_to_wal(con)
            with _immediate(con):
                con.execute("CREATE TABLE IF NOT EXISTS rate_sends (key TEXT PRIMARY KEY, last_sent REAL NOT NULL)")
                con.execute(
                    "CREATE TABLE IF NOT EXISTS rate_reservations"
                    " (id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, slot REAL NOT NULL, host TEXT NOT NULL, pid INTEGER NOT NULL)"
                )
                con.execute("CREATE INDEX IF NOT EXISTS rate_reservations_key ON rate_reservations (key, id)")
                con.execute(
                    "CREATE TABLE IF NOT EXISTS rate_send_log"
                    " (id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, sent REAL NOT NULL, arrived_by REAL NOT NULL)"
                )
                con.execute("CREATE INDEX IF NOT EXISTS rate_send_log_key ON rate_send_log (key, arrived_by)")
                con.execute(
                    "CREATE TABLE IF NOT EXISTS rate_in_flight (id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL,"
                    " host TEXT NOT NULL, pid INTEGER NOT NULL, holding INTEGER NOT NULL, seen REAL NOT NULL)"
                )
                con.execute("CREATE INDEX IF NOT EXISTS rate_in_flight_key ON rate_in_flight (key)")

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        con.execute("PRAGMA synchronous=NORMAL")  # WAL: no fsync per commit (~0.4 ms, p99 7 ms here); a power cut may lose the last sends
        return con

    def period(self, rate: float) -> float:
        return (1.0 / rate) * (1.0 + self.margin)

    @staticmethod
    def window(rate: float) -> tuple[int, float]:
        """(n, seconds): no `seconds`-long window may hold more than n arrivals. n = ceil(rate), at least one, so the
        window is at least a second (20/s: 20 in 1 s; 100/min: 2 in 1.2 s; 1 per 3 s: 1 in 3 s)."""
        n = max(1, math.ceil(rate - 1e-9))
        return n, n / rate

    def reserve(self, key: str, rate: float) -> float:
        """Reserve the next slot for `key`; returns its wall-clock time. Held until it is a period old."""
        with closing(self._connect()) as con:
            return self._reserve(con, key, rate)[1]

    def confirm(self, key: str, rate: float) -> float:
        """Record a send now if the last one is a period old and the window has room; else return how long to wait (> 0)."""
        with closing(self._connect()) as con:
            return self._confirm(con, key, rate, None)[0]

    def acquire(self, key: str, rate: float, log=None) -> float:
        """Block until this caller may send one request; returns the seconds waited.

        `log` (else the limiter's own) hears about a wait longer than `long_wait` seconds. The send
        counts as possibly arriving until `transit` seconds after it: use `sending` to end that
        sooner, when the answer comes back.
        """
        with closing(self._connect()) as con:
            return self._acquire(con, key, rate, log)[0]

    @contextmanager
    def sending(self, key: str, rate: float, log=None, in_flight: int | None = None) -> Iterator[float]:
        """`acquire`, then send the request inside the block (yields the seconds waited). A block that ends without
        an exception means an answer came back: the request has arrived, so it stops counting toward later windows
        at that moment rather than `transit` seconds after the send. One that raises keeps the `transit` bound (a
        request cut off half-way may still reach the provider). With `in_flight`, the caller first waits in line
        for one of that many places among the key's requests in flight, across processes, until the block ends."""
        with closing(self._connect()) as con:
            place, waited_in_line = self._take_place(con, key, in_flight, log) if in_flight is not None else (None, 0.0)
            try:
                waited, send = self._acquire(con, key, rate, log)
                if place is not None:  # the place's expiry counts from the send, not from the wait for a slot
                    with _immediate(con):
                        con.execute("UPDATE rate_in_flight SET seen = ? WHERE id = ?", (time.time(), place))
                yield waited_in_line + waited
                answered = time.time()
                with _immediate(con):
                    con.execute("UPDATE rate_send_log SET arrived_by = min(arrived_by, ?) WHERE id = ?", (answered, send))
            finally:
                if place is not None:
                    self._give_back(con, place)

    def _take_place(self, con: sqlite3.Connection, key: str, cap: int, log) -> tuple[int, float]:
        """Wait in line for one of `cap` places; returns the place (its row) and the seconds waited."""
        started, said = time.time(), False
        with _immediate(con):
            place = con.execute("INSERT INTO rate_in_flight (key, host, pid, holding, seen) VALUES (?, ?, ?, 0, ?)",
                                (key, HOST, os.getpid(), started)).lastrowid
            OWN_PLACES.add((self._real_path, place))
        try:
            while True:
                with _immediate(con):
                    if _admitted(con, self._real_path, key, cap, place, time.time(), self.in_flight_expiry):
                        return place, time.time() - started
                if not said and time.time() - started > self.long_wait and (log := log if log is not None else self.log):
                    said = True
                    getattr(log, "info", log)(f"waiting {time.time() - started:.0f} s for one of the {cap} places among "
                                              f"{key}'s requests in flight (across every process using {self.path})")
                time.sleep(IN_FLIGHT_POLL)
        except BaseException:
            self._give_back(con, place)
            raise

    def _give_back(self, con: sqlite3.Connection, place: int) -> None:
        """Free the place. Forgotten first, so should the delete fail (the file locked past the busy timeout) this
        process's next look drops the row; the failure is not raised over the error that may be on its way out."""
        OWN_PLACES.discard((self._real_path, place))
        with contextlib.suppress(sqlite3.Error), _immediate(con):
            con.execute("DELETE FROM rate_in_flight WHERE id = ?", (place,))

    def _acquire(self, con: sqlite3.Connection, key: str, rate: float, log) -> tuple[float, int]:
        """Reserve, sleep until the slot, confirm; returns the seconds waited and the send's row in `rate_send_log`.

        One connection for the whole acquire, idle (no transaction, no lock) while asleep: closing
        the last connection to a WAL database checkpoints it, which costs more than the rest.
        """
        started = time.time()
        reservation, send_at = self._reserve(con, key, rate)
        send = None
        try:
            log = log if log is not None else self.log
            if log is not None and send_at - started > self.long_wait:
                message = f"waiting {send_at - started:.1f} s for a {key} rate-limit slot ({rate:g} requests/s across every process using {self.path})"
                getattr(log, "info", log)(message)
            while (delay := send_at - time.time()) > 0:
                time.sleep(min(delay, self.poll))
                if send_at > time.time():  # still early: the callers ahead may have died meanwhile
                    send_at = self._refresh(con, key, rate, reservation) or 0.0
            while True:
                wait, send = self._confirm(con, key, rate, reservation)
                if send is not None:
                    return time.time() - started, send
                time.sleep(wait)
        finally:
            if send is None:  # interrupted (a run being terminated, say): free the slot for the others
                with _immediate(con):
                    con.execute("DELETE FROM rate_reservations WHERE id = ?", (reservation,))

    def _reserve(self, con: sqlite3.Connection, key: str, rate: float) -> tuple[int, float]:
        period = self.period(rate)
        with _immediate(con):
            slot = _tidy(con, key, time.time(), period, self.window(rate))
            row = con.execute(
                "INSERT INTO rate_reservations (key, slot, host, pid) VALUES (?, ?, ?, ?)", (key, slot, HOST, os.getpid())
            )
            return row.lastrowid, slot

    def _refresh(self, con: sqlite3.Connection, key: str, rate: float, reservation: int) -> float | None:
        """Drop dead reservations, close the gaps and return this reservation's (possibly earlier) slot."""
        with _immediate(con):
            _tidy(con, key, time.time(), self.period(rate), self.window(rate))
            row = con.execute("SELECT slot FROM rate_reservations WHERE id = ?", (reservation,)).fetchone()
        return None if row is None else row[0]

    def _confirm(self, con: sqlite3.Connection, key: str, rate: float, reservation: int | None) -> tuple[float, int | None]:
        """Record a send (deleting the caller's reservation) if the last one is a period old and fewer than n earlier
        sends can have arrived within the last window (`window`); returns (0, the send's row), else (the wait, None)."""
        n, seconds = self.window(rate)
        with _immediate(con):
            now = time.time()
            con.execute("DELETE FROM rate_send_log WHERE key = ? AND arrived_by < ?", (key, now - max(seconds, KEEP_SENDS)))
            recent = [at for at, in con.execute("SELECT arrived_by FROM rate_send_log WHERE key = ? AND arrived_by > ?", (key, now - seconds))]
            wait = max(_last_sent(con, key) + self.period(rate), _window_opens(recent, n, seconds)) - now
            if wait > 0:
                return wait, None
            con.execute("INSERT OR REPLACE INTO rate_sends (key, last_sent) VALUES (?, ?)", (key, now))
            send = con.execute("INSERT INTO rate_send_log (key, sent, arrived_by) VALUES (?, ?, ?)",
                               (key, now, now + self.transit)).lastrowid
            if reservation is not None:
                con.execute("DELETE FROM rate_reservations WHERE id = ?", (reservation,))
        return 0.0, send


@contextmanager
def _immediate(con: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One `BEGIN IMMEDIATE` ... `COMMIT` (or `ROLLBACK`) on an autocommit connection."""
    con.execute("BEGIN IMMEDIATE")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def _last_sent(con: sqlite3.Connection, key: str) -> float:
    row = con.execute("SELECT last_sent FROM rate_sends WHERE key = ?", (key,)).fetchone()
    return 0.0 if row is None else row[0]


def _tidy(con: sqlite3.Connection, key: str, now: float, period: float, window: tuple[int, float]) -> float:
    """Drop `key`'s spent and dead reservations, pull the rest forward; returns the slot the next reservation gets.

    Spent: a period old, so it can hold no one back. Dead: its process is gone. Those left
    keep their order (by id, i.e. arrival); a future slot moves to the earliest time that is a
    period after the slot before it (or after the last send, or now) and leaves the window
    room, counting the slots before it as sends (`_window_opens`), when that is earlier;
    never later. So is the next reservation's slot found.
    """
    n, seconds = window
    rows = con.execute("SELECT id, slot, host, pid FROM rate_reservations WHERE key = ? ORDER BY id", (key,)).fetchall()
    gone = {(host, pid) for host, pid in {(host, pid) for _, _, host, pid in rows} if host == HOST and process_gone(pid)}
    drop = [(id_,) for id_, slot, host, pid in rows if slot < now - period or (host, pid) in gone]
    con.executemany("DELETE FROM rate_reservations WHERE id = ?", drop)
    dropped = {id_ for id_, in drop}
    earliest = max(now, _last_sent(con, key) + period)
    times = [at for at, in con.execute("SELECT arrived_by FROM rate_send_log WHERE key = ? AND arrived_by > ?", (key, now - seconds))]
    held: list[float] = []
    for id_, slot, _, _ in rows:
        if id_ in dropped:
            continue
        if slot > now and (moved := max(earliest, held[-1] + period if held else 0.0, _window_opens(times, n, seconds))) < slot:
            con.execute("UPDATE rate_reservations SET slot = ? WHERE id = ?", (moved, id_))
            slot = moved
        held.append(slot)
        times.append(slot)
    return max(earliest, held[-1] + period if held else 0.0, _window_opens(times, n, seconds))


def _admitted(con: sqlite3.Connection, limiter: str, key: str, cap: int, place: int, now: float, expiry: float) -> bool:
    """Make `place` a holding one if it is first in line and fewer than `cap` are held; else note that it looked.

    Rows that can no longer be anyone's are dropped first (see the module docstring)."""
    rows = con.execute("SELECT id, host, pid, holding, seen FROM rate_in_flight WHERE key = ? ORDER BY id", (key,)).fetchall()
    gone = {id_ for id_, host, pid, holding, seen in rows if seen < now - (expiry if holding else STALE_WAITER)
            or place_abandoned(host, pid, (limiter, id_))}
    con.executemany("DELETE FROM rate_in_flight WHERE id = ?", [(id_,) for id_ in gone])
    left = [(id_, holding) for id_, _, _, holding, _ in rows if id_ not in gone]
    first_waiting = next((id_ for id_, holding in left if not holding), None)
    if first_waiting == place and sum(holding for _, holding in left) < cap:
        con.execute("UPDATE rate_in_flight SET holding = 1, seen = ? WHERE id = ?", (now, place))
        return True
    # Refreshed, or back in its place in line if it was taken for gone (a process paused longer than STALE_WAITER).
    con.execute("INSERT OR REPLACE INTO rate_in_flight (id, key, host, pid, holding, seen) VALUES (?, ?, ?, ?, 0, ?)",
                (place, key, HOST, os.getpid(), now))
    return False


def place_abandoned(host: str, pid: int, own: object) -> bool:
    """Whether a place among the requests in flight (`own`: its key in OWN_PLACES) can be nobody's: on this host, of
    a process gone, or of this process, which no longer knows it (a release that failed). Another host's: unknown."""
    if host != HOST:
        return False
    return own not in OWN_PLACES if pid == os.getpid() else process_gone(pid)


def _window_opens(times: list[float], n: int, seconds: float) -> float:
    """When fewer than n of `times` (sends' latest arrivals, or slots) lie in the window before it; 0 if already."""
    return sorted(times)[-n] + seconds if len(times) >= n else 0.0


def process_gone(pid: int) -> bool:
    """True only when process `pid` surely no longer runs on this host."""
    if pid == os.getpid():
        return False
    if os.name == "nt":  # os.kill would terminate it: no cheap check, keep its reservations
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: another user's process, alive
        return False
    try:  # killed but not yet reaped by its parent: a zombie still answers os.kill
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except (OSError, IndexError):
        return False
