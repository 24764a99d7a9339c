"""A run killed with `kill -9` in the middle of a fetch leaves nothing behind that the next run trips over.

The run is `dagster asset materialize` (the contract's shell command) in a process group of its own. It is frozen
(SIGSTOP, which no process can ignore) at the moment the test wants, checked to be there, and then killed (SIGKILL)
with every process of its group: while it waits for a rate-limit slot that it has reserved, or while a page's body is
still arriving. Afterwards the rate limiter, the DuckDB writer lock, DuckDB itself and the landing zone must be usable
at once, and a rerun must land exactly the provider's records for the partition. Backfills of many partitions as
parallel runs are tested in test_scenarios.py, with the `dagster dev` they need.
"""

import datetime as dt
import gzip
import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
import zlib
from contextlib import closing
from pathlib import Path

import duckdb
import filelock
import pytest

from scholar_pipeline.client.ratelimit import HOST, SqliteRateLimiter
from scholar_pipeline.instance import prepare_instance
from scholar_pipeline.simulator import Corpus, ProviderSimulator
from scholar_pipeline_tests.conftest import REPO_ROOT
from scholar_pipeline_tests.helpers import SEARCH, home, materialize, max_in_any_window, query_db

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
DAY, PROVIDER = dt.date(2024, 3, 5), "crossref"  # 71 records: five pages of 15
RATE = 1.0  # requests per second: a slot is 1 s away, time enough to catch the run waiting for one
SLOW_PAGES = "crossref:slow@3x2"  # the 3rd and 4th Crossref answers trickle in over a second or more


@pytest.fixture
def simulator():
    """conftest's simulator (same corpus), with two slow Crossref answers to catch a run in the middle of one."""
    with ProviderSimulator(corpus=Corpus(seed=11, min_per_day=120, max_per_day=240), faults=SLOW_PAGES) as sim:
        yield sim


def _materialize_command(partition: str) -> list[str]:
    return [str(BIN / "dagster"), "asset", "materialize", "-m", "scholar_pipeline.definitions",
            "--select", f"group:{SEARCH.name}", "--partition", partition]


def _group(pgid: int) -> dict[int, str]:
    """The processes of a process group, by pid, with their state letter (Z: dead, not yet reaped)."""
    members = {}
    for entry in Path("/proc").iterdir():
        try:
            state, _, pgrp = (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()[:3]
        except (OSError, ValueError):  # not a process, or one gone meanwhile
            continue
        if int(pgrp) == pgid:
            members[int(entry.name)] = state.decode()
    return members


def _reservations(path: Path, key: str, timeout: float = 30) -> list[tuple[float, str, int]] | None:
    """The limiter's reservations for `key`: (slot, host, pid); None if the file stayed locked for `timeout` seconds.

    Read-only, in WAL mode, so no lock is held against the run. Yet a run frozen while closing its last connection
    to the file (which checkpoints it, under an exclusive lock) locks every reader out until it goes on."""
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=timeout)) as con:
            return con.execute("SELECT slot, host, pid FROM rate_reservations WHERE key = ? ORDER BY id", (key,)).fetchall()
    except sqlite3.OperationalError as error:
        if "locked" not in str(error):
            raise
        return None


def _landing_zone_problems(root: Path) -> list[str]:
    """Files under landing/pages that are not whole pages: every one must be `<sha256>.gz` of a body with that hash."""
    problems = []
    for path in sorted(p for p in (root / "pages").rglob("*") if p.is_file()):
        if path.suffix != ".gz":
            problems.append(f"{path.name}: not a page file (left half-written?)")
            continue
        try:
            body = gzip.decompress(path.read_bytes())
        except (EOFError, OSError, zlib.error) as error:
            problems.append(f"{path.name}: does not decompress ({error})")
            continue
        if hashlib.sha256(body).hexdigest() != path.name.removesuffix(".gz"):
            problems.append(f"{path.name}: its body does not hash to its name")
    return problems


def _landed_pages(root: Path) -> set[str]:
    return {p.name for p in (root / "pages").glob("*/*.gz")}


@pytest.mark.parametrize("moment", ["waiting for a rate-limit slot", "receiving a page"])
def test_a_run_killed_during_the_fetch_leaves_everything_usable_and_the_rerun_lands_the_clean_result(
    pipeline_env, simulator, monkeypatch, tmp_path, moment
):
    monkeypatch.setenv("SCHOLAR_PIPELINE_CROSSREF_RATE_LIMIT", str(RATE))
    monkeypatch.setenv("SCHOLAR_PIPELINE_CROSSREF_PAGE_SIZE", "15")
    landing, limits = home() / "landing", home() / "locks" / "rate_limits.sqlite"
    prepare_instance(pipeline_env["DAGSTER_HOME"])  # the Dagster storage exists before any run, as with `dagster dev`
    materialize("2024-03-01", "openalex")  # another partition: DuckDB, its writer lock and the limiter file exist
    rows_before = query_db("SELECT count(*) FROM works")[0][0]
    pages_before = _landed_pages(landing)
    expected = simulator.apis[PROVIDER].record_ids(DAY, DAY, SEARCH.text)
    assert len(expected) == 71

    partition = f"{DAY}|{PROVIDER}"
    output = tmp_path / "killed_run.log"
    with output.open("wb") as log:
        victim = subprocess.Popen(_materialize_command(partition), cwd=REPO_ROOT, env=dict(os.environ), stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    dead_slot = None
    try:
        deadline = time.monotonic() + 240
        while True:
            assert victim.poll() is None, f"the run ended before it was caught {moment}: {output.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"the run was never caught {moment}"
            os.killpg(victim.pid, signal.SIGSTOP)  # frozen: what is checked below stays true until the kill
            members = _group(victim.pid)
            landed = len(_landed_pages(landing) - pages_before)
            if moment == "waiting for a rate-limit slot":
                # A reservation of the run's, at least half a second ahead: a later caller that queued behind it
                # would wait a whole period more than one that knows the run is dead.
                ahead = [slot for slot, host, pid in _reservations(limits, PROVIDER, timeout=0) or []
                         if host == HOST and pid in members and slot > time.time() + 0.5]
                if landed >= 2 and ahead:
                    dead_slot = ahead[0]
                    break
            else:
                # A slow answer (a second or more on the wire) that arrived less than half a second ago is still
                # being sent: the run holds part of a page.
                served = simulator.requests_for(PROVIDER)
                if landed >= 2 and served and served[-1].fault == "slow" and time.time() - served[-1].at < 0.5:
                    break
            os.killpg(victim.pid, signal.SIGCONT)
            time.sleep(0.02)
    finally:
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)
    deadline = time.monotonic() + 30
    while any(state not in "ZX" for state in _group(victim.pid).values()):  # the step worker too
        assert time.monotonic() < deadline, f"the run's processes outlived SIGKILL: {_group(victim.pid)}"
        time.sleep(0.01)

    # The rate limiter: a fresh caller waits no longer than one period at the configured rate, so it did not queue
    # behind the dead run's reservation; and that reservation is gone.
    limiter = SqliteRateLimiter(limits)
    waited = limiter.acquire(PROVIDER, RATE)
    sent_at = time.time()
    assert waited <= limiter.period(RATE) + 0.2, f"waited {waited:.2f} s for a slot, one period is {limiter.period(RATE):.2f} s"
    if dead_slot is not None:
        assert sent_at < dead_slot + limiter.period(RATE), "the fresh caller queued behind the dead run's reservation"
    assert _reservations(limits, PROVIDER) == []

    # The DuckDB writer lock is free, DuckDB opens for writing at once and holds nothing of the killed partition.
    lock = filelock.FileLock(str(home() / "locks" / "duckdb_writer.lock"))
    lock.acquire(timeout=0)
    lock.release()
    with duckdb.connect(str(home() / "scholar.duckdb")) as con:
        assert con.execute("SELECT count(*) FROM works").fetchone()[0] == rows_before
        assert con.execute("SELECT count(*) FROM works WHERE provider = ?", [PROVIDER]).fetchone()[0] == 0

    # The landing zone: the pages the run stored are whole, and no manifest claims the unfinished fetch.
    assert len(_landed_pages(landing) - pages_before) >= 2
    assert _landing_zone_problems(landing) == []
    assert list(landing.glob(f"manifests/{SEARCH.name}/{PROVIDER}/{DAY}/*")) == []

    rerun = subprocess.run(_materialize_command(partition), cwd=REPO_ROOT, env=dict(os.environ),
                           capture_output=True, text=True, timeout=240)

    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    landed = [r[0] for r in query_db("SELECT provider_id FROM works WHERE query = ? AND provider = ? AND partition_date = ?",
                                     [SEARCH.name, PROVIDER, DAY])]
    assert len(landed) == len(set(landed)), "duplicated rows"
    assert sorted(landed) == sorted(expected), "rows lost or foreign"
    assert query_db("SELECT count(*) FROM works")[0][0] == rows_before + len(expected)  # the other partition untouched
    assert len(list(landing.glob(f"manifests/{SEARCH.name}/{PROVIDER}/{DAY}/*.json"))) == 1
    assert _landing_zone_problems(landing) == []
    arrivals = [r.at for r in simulator.requests_for(PROVIDER)]
    assert max_in_any_window(arrivals) <= RATE and {r.status for r in simulator.requests_for(PROVIDER)} == {200}
