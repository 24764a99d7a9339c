"""A fair, cross-process rate limiter: GCRA slot reservation in SQLite.

Why not pyrate-limiter: across four processes its SQLite bucket starved whole processes
(single waits of 21 s at 2 req/s, [20, 20, 0, 0] requests per process) and its Redis
bucket admitted 3 requests in one second at 2 req/s (figures in shared/library_notes.md).

Two steps per request, each one `BEGIN IMMEDIATE` transaction on the provider's rows:
1. reserve: the caller's slot is one period after the latest reservation still held (or
   after the last send, or now, whichever is later), written as a row (key, slot, host,
   pid). Slots are handed out in arrival order, so every process gets its share.
2. confirm, on waking at the slot: send only if at least one period has passed since
   the last *confirmed* send, else sleep the difference and try again. A process that
   wakes late (a loaded machine delays sleeps by tens of milliseconds) then pushes the
   next sender back instead of squeezing two requests together. The confirmed send
   deletes the caller's reservation; so does an acquire that ends in an exception.

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
"alive" is a wait, and of a wrong "dead" a less fair order, never two requests inside a
period, since the confirm step alone enforces the spacing.

The period is 1/rate widened by `margin`: what is left of send jitter after the confirm
must not push a one-second window over the limit. A wait longer than `long_wait` seconds
is reported to `log` (a logger, whose `.info` is used, or any callable taking a string).

Every connection is closed when done with (a dropped sqlite3 connection lingers, files
open, until the garbage collector finds it). `acquire` keeps one for its whole call, idle
while asleep, because closing the last connection to a WAL database checkpoints it.
Tables: `rate_sends` (key, last_sent) and `rate_reservations`; the `rate_slots` table of
the single-TAT version, left in older files, is no longer read.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path


def _host() -> str:
    """This host and, on Linux, its pid namespace: a pid names a process only within one."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    return f"{socket.gethostname()} {namespace}".strip()


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


class SqliteRateLimiter:
    def __init__(self, path: Path, margin: float = 0.1, *, log=None, long_wait: float = 5.0, poll: float = 1.0):
        self.path = Path(path)
        self.margin = margin
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

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=60, isolation_level=None)

    def period(self, rate: float) -> float:
        return (1.0 / rate) * (1.0 + self.margin)

    def reserve(self, key: str, rate: float) -> float:
        """Reserve the next slot for `key`; returns its wall-clock time. Held until it is a period old."""
        with closing(self._connect()) as con:
            return self._reserve(con, key, rate)[1]

    def confirm(self, key: str, rate: float) -> float:
        """Record a send now if the last one is a period old; else return how long to wait (> 0)."""
        with closing(self._connect()) as con:
            return self._confirm(con, key, rate, None)

    def acquire(self, key: str, rate: float, log=None) -> float:
        """Block until this caller may send one request; returns the seconds waited.

        `log` (else the limiter's own) hears about a wait longer than `long_wait` seconds.
        """
        started = time.time()
        # One connection for the whole acquire, idle (no transaction, no lock) while asleep: closing
        # the last connection to a WAL database checkpoints it, which costs more than the rest.
        with closing(self._connect()) as con:
            reservation, send_at = self._reserve(con, key, rate)
            sent = False
            try:
                log = log if log is not None else self.log
                if log is not None and send_at - started > self.long_wait:
                    message = f"waiting {send_at - started:.1f} s for a {key} rate-limit slot ({rate:g} requests/s across every process using {self.path})"
                    getattr(log, "info", log)(message)
                while (delay := send_at - time.time()) > 0:
                    time.sleep(min(delay, self.poll))
                    if send_at > time.time():  # still early: the callers ahead may have died meanwhile
                        send_at = self._refresh(con, key, rate, reservation) or 0.0
                while (wait := self._confirm(con, key, rate, reservation)) > 0:
                    time.sleep(wait)
                sent = True
                return time.time() - started
            finally:
                if not sent:  # interrupted (a run being terminated, say): free the slot for the others
                    with _immediate(con):
                        con.execute("DELETE FROM rate_reservations WHERE id = ?", (reservation,))

    def _reserve(self, con: sqlite3.Connection, key: str, rate: float) -> tuple[int, float]:
        period = self.period(rate)
        with _immediate(con):
            now = time.time()
            latest = _tidy(con, key, now, period)
            slot = max(now, _last_sent(con, key) + period, latest + period)
            row = con.execute(
                "INSERT INTO rate_reservations (key, slot, host, pid) VALUES (?, ?, ?, ?)", (key, slot, HOST, os.getpid())
            )
            return row.lastrowid, slot

    def _refresh(self, con: sqlite3.Connection, key: str, rate: float, reservation: int) -> float | None:
        """Drop dead reservations, close the gaps and return this reservation's (possibly earlier) slot."""
        with _immediate(con):
            _tidy(con, key, time.time(), self.period(rate))
            row = con.execute("SELECT slot FROM rate_reservations WHERE id = ?", (reservation,)).fetchone()
        return None if row is None else row[0]

    def _confirm(self, con: sqlite3.Connection, key: str, rate: float, reservation: int | None) -> float:
        """Record a send (deleting the caller's reservation) if the last one is a period old; else the wait."""
        with _immediate(con):
            last_sent = _last_sent(con, key)
            now = time.time()
            wait = last_sent + self.period(rate) - now
            if wait <= 0:
                con.execute("INSERT OR REPLACE INTO rate_sends (key, last_sent) VALUES (?, ?)", (key, now))
                if reservation is not None:
                    con.execute("DELETE FROM rate_reservations WHERE id = ?", (reservation,))
        return max(wait, 0.0)


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


def _tidy(con: sqlite3.Connection, key: str, now: float, period: float) -> float:
    """Drop `key`'s spent and dead reservations, pull the rest forward; returns the latest slot held (0 if none).

    Spent: a period old, so it can hold no one back. Dead: its process is gone. Those left
    keep their order (by id, i.e. arrival); a future slot moves to one period after the one
    before it (or after the last send, or now) when that is earlier, and never later.
    """
    rows = con.execute("SELECT id, slot, host, pid FROM rate_reservations WHERE key = ? ORDER BY id", (key,)).fetchall()
    gone = {(host, pid) for host, pid in {(host, pid) for _, _, host, pid in rows} if host == HOST and _process_gone(pid)}
    drop = [(id_,) for id_, slot, host, pid in rows if slot < now - period or (host, pid) in gone]
    con.executemany("DELETE FROM rate_reservations WHERE id = ?", drop)
    dropped = {id_ for id_, in drop}
    earliest, latest = max(now, _last_sent(con, key) + period), 0.0
    for id_, slot, _, _ in rows:
        if id_ in dropped:
            continue
        if slot > now and (moved := max(earliest, latest + period)) < slot:
            con.execute("UPDATE rate_reservations SET slot = ? WHERE id = ?", (moved, id_))
            slot = moved
        latest = slot
    return latest


def _process_gone(pid: int) -> bool:
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
