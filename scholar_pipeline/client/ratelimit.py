"""A fair, cross-process rate limiter: GCRA slot reservation in one SQLite table.

Why not pyrate-limiter: across four processes its SQLite bucket starved whole processes
(single waits of 21 s at 2 req/s, [20, 20, 0, 0] requests per process) and its Redis
bucket admitted 3 requests in one second at 2 req/s (figures in shared/library_notes.md).
This limiter hands out slots in arrival order, so every process gets its share, and it
never admits two requests closer than 1/rate apart (plus a safety margin), whoever sends them.

Each provider's row holds the theoretical arrival time (TAT) of its next free slot. A
caller takes `max(tat, now)` as its slot inside one `BEGIN IMMEDIATE` transaction,
moves the TAT one period on, commits, and sleeps until its slot.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path


class SqliteRateLimiter:
    def __init__(self, path: Path, margin: float = 0.05):
        """`margin` widens the spacing between slots: send jitter must not push a window over the limit."""
        self.path = Path(path)
        self.margin = margin
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as con:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("CREATE TABLE IF NOT EXISTS slots (key TEXT PRIMARY KEY, tat REAL NOT NULL)")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=60, isolation_level=None)

    def reserve(self, key: str, rate: float) -> float:
        """Reserve the next slot for `key` at `rate` requests per second; returns its wall-clock time."""
        period = (1.0 / rate) * (1.0 + self.margin)
        con = self._connect()
        try:
            con.execute("BEGIN IMMEDIATE")
            row = con.execute("SELECT tat FROM slots WHERE key = ?", (key,)).fetchone()
            slot = max(row[0] if row else 0.0, time.time())
            con.execute(
                "INSERT INTO slots (key, tat) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET tat = excluded.tat",
                (key, slot + period),
            )
            con.execute("COMMIT")
        finally:
            con.close()
        return slot

    def acquire(self, key: str, rate: float) -> float:
        """Block until this caller may send one request; returns the seconds waited."""
        wait = self.reserve(key, rate) - time.time()
        if wait > 0:
            time.sleep(wait)
        return max(wait, 0.0)
