"""A fair, cross-process rate limiter: GCRA slot reservation in one SQLite table.

Why not pyrate-limiter: across four processes its SQLite bucket starved whole processes
(single waits of 21 s at 2 req/s, [20, 20, 0, 0] requests per process) and its Redis
bucket admitted 3 requests in one second at 2 req/s (figures in shared/library_notes.md).

Two steps per request, each one `BEGIN IMMEDIATE` transaction on the provider's row:
1. reserve: take `max(tat, now)` as this caller's slot and move the theoretical arrival
   time (TAT) one period on. Slots are handed out in arrival order, so every process
   gets its share.
2. confirm, on waking at the slot: send only if at least one period has passed since
   the last *confirmed* send, else sleep the difference and try again. A process that
   wakes late (a loaded machine delays sleeps by tens of milliseconds) then pushes the
   next sender back instead of squeezing two requests together.

The period is 1/rate widened by `margin`: what is left of send jitter after the confirm
must not push a one-second window over the limit.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path


class SqliteRateLimiter:
    def __init__(self, path: Path, margin: float = 0.1):
        self.path = Path(path)
        self.margin = margin
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as con:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("CREATE TABLE IF NOT EXISTS rate_slots (key TEXT PRIMARY KEY, tat REAL NOT NULL, last_sent REAL NOT NULL)")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=60, isolation_level=None)

    def period(self, rate: float) -> float:
        return (1.0 / rate) * (1.0 + self.margin)

    def reserve(self, key: str, rate: float) -> float:
        """Reserve the next slot for `key`; returns its wall-clock time."""
        with _Transaction(self._connect()) as con:
            tat, _ = _row(con, key)
            slot = max(tat, time.time())
            con.execute("UPDATE rate_slots SET tat = ? WHERE key = ?", (slot + self.period(rate), key))
        return slot

    def confirm(self, key: str, rate: float) -> float:
        """Record a send now if the last one is a period old; else return how long to wait (> 0)."""
        with _Transaction(self._connect()) as con:
            _, last_sent = _row(con, key)
            now = time.time()
            wait = last_sent + self.period(rate) - now
            if wait <= 0:
                con.execute("UPDATE rate_slots SET last_sent = ? WHERE key = ?", (now, key))
        return max(wait, 0.0)

    def acquire(self, key: str, rate: float) -> float:
        """Block until this caller may send one request; returns the seconds waited."""
        started = time.time()
        send_at = self.reserve(key, rate)
        while True:
            delay = send_at - time.time()
            if delay > 0:
                time.sleep(delay)
            wait = self.confirm(key, rate)
            if wait == 0.0:
                return time.time() - started
            send_at = time.time() + wait


class _Transaction:
    """`BEGIN IMMEDIATE` ... `COMMIT` (or `ROLLBACK`), closing the connection after."""

    def __init__(self, con: sqlite3.Connection):
        self.con = con

    def __enter__(self) -> sqlite3.Connection:
        self.con.execute("BEGIN IMMEDIATE")
        return self.con

    def __exit__(self, error_type, *_) -> None:
        try:
            self.con.execute("ROLLBACK" if error_type else "COMMIT")
        finally:
            self.con.close()


def _row(con: sqlite3.Connection, key: str) -> tuple[float, float]:
    row = con.execute("SELECT tat, last_sent FROM rate_slots WHERE key = ?", (key,)).fetchone()
    if row is None:
        con.execute("INSERT INTO rate_slots (key, tat, last_sent) VALUES (?, 0, 0)", (key,))
        return 0.0, 0.0
    return row
