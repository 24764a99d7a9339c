"""Health checks for liveness and readiness probes: can this machine load, record, land and cache right now?

Each check gives one line (name, ok or FAIL, a detail, the time it took) and never waits
unbounded: network and lock waits get `timeout` seconds, and a watchdog thread gives up on
a check that has not answered shortly after, so that a probe always gets an answer. A check
that does not apply (no DAGSTER_HOME, no Redis configured) passes as `skipped: ...`.
Every detail is masked before it is shown: API keys from the environment, the Redis and
PostgreSQL passwords, and any `user:password@` in a URL.
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from scholar_pipeline.alerts.channels import setup_problem
from scholar_pipeline.client.masking import mask_credentials, mask_secret, mask_url_password
from scholar_pipeline.client.stack import REDIS_SCHEMES
from scholar_pipeline.providers import PROVIDERS
from scholar_pipeline.queries import SavedSearchError, load_saved_searches
from scholar_pipeline.settings import cache_url, pipeline_home, queries_file, rate_limit_url

DEFAULT_TIMEOUT_SECONDS = 5.0
# Loading the code location is CPU work (1-2 s here), not a wait: its bound only catches a hang.
LOAD_TIMEOUT_SECONDS = 60.0
# How long past its own timeout a check may take to report before the watchdog gives up on it.
GRACE_SECONDS = 3.0
WAREHOUSE_TABLES = ("works", "provenance")  # written together by `warehouse.ensure_tables`
PG_PASSWORD_ENV = "DAGSTER_PG_PASSWORD"
THREAD_PREFIX = "health-check-"


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    seconds: float
    skipped: bool = False

    def line(self) -> str:
        return f"{self.name:<13} {'ok' if self.ok else 'FAIL':<4}  {self.detail}  ({self.seconds:.2f} s)"


class CheckFailed(Exception):
    """A check's one-line reason to FAIL."""


class Skipped(Exception):
    """The check does not apply to this configuration; not a failure."""


def run_checks(timeout: float = DEFAULT_TIMEOUT_SECONDS, require_instance: bool = False) -> list[CheckResult]:
    """Every check, one after the other (the code location first: it and the instance share Dagster's process state),
    each bounded by `timeout` (the code location by LOAD_TIMEOUT_SECONDS), with secrets masked in every detail."""
    home = pipeline_home()
    checks: list[tuple[str, Callable[[], str], float]] = [
        ("code_location", check_code_location, max(LOAD_TIMEOUT_SECONDS, timeout)),
        ("instance", lambda: check_instance(timeout, require_instance), timeout),
        ("warehouse", lambda: check_warehouse(home, timeout), timeout),
        ("redis", lambda: check_redis(cache_url(), timeout), timeout),
        ("rate_limit", lambda: check_rate_limit(timeout), timeout),
        ("home", lambda: check_home_writable(home), timeout),
        ("alerts", check_alert_channels, timeout),
    ]
    secrets = _secrets()
    results = []
    warnings = _LastWarnings()
    root = logging.getLogger()
    root.addHandler(warnings)
    try:
        for name, check, budget in checks:
            result = _bounded(name, check, budget + GRACE_SECONDS, warnings)
            results.append(CheckResult(result.name, result.ok, mask_secrets(result.detail, secrets), result.seconds, result.skipped))
    finally:
        root.removeHandler(warnings)
    return results


class _LastWarnings(logging.Handler):
    """Each check thread's last logged warning, added to its FAIL detail: Dagster's PostgreSQL storage logs why it
    retries a connection (`database "x" does not exist`) and then fails with "too many retries" only. Being a handler
    of the root logger, it also keeps those lines off stderr, where nothing would mask them."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.last: dict[str, str] = {}

    def emit(self, record: logging.LogRecord) -> None:
        self.last[record.threadName] = " ".join(record.getMessage().split())


def _bounded(name: str, check: Callable[[], str], budget: float, warnings: _LastWarnings) -> CheckResult:
    """Run `check` in a daemon thread and stop waiting for it after `budget` seconds (a thread cannot be stopped; the
    process exits without it)."""
    outcome: list[tuple[bool, str, bool]] = []

    def target() -> None:
        try:
            outcome.append((True, check(), False))
        except Skipped as skipped:
            outcome.append((True, f"skipped: {skipped}", True))
        except CheckFailed as failed:
            outcome.append((False, str(failed), False))
        except Exception as error:
            outcome.append((False, one_line(error), False))

    started = time.monotonic()
    thread = threading.Thread(target=target, name=THREAD_PREFIX + name, daemon=True)
    thread.start()
    thread.join(budget)
    seconds = time.monotonic() - started
    ok, detail, skipped = outcome[0] if outcome else (False, f"no answer within {budget:.1f} s", False)
    logged = warnings.last.get(thread.name)
    if not ok and logged:
        detail = f"{detail}; last logged: {logged[:300]}"
    return CheckResult(name, ok, detail, seconds, skipped)


def abandoned_checks() -> bool:
    """Whether a check the watchdog gave up on is still running."""
    return any(thread.name.startswith(THREAD_PREFIX) and thread.is_alive() for thread in threading.enumerate())


def check_code_location() -> str:
    """`scholar_pipeline.definitions` imports and its definitions build: what `dagster dev` and the code server load."""
    try:
        searches = load_saved_searches(queries_file())
    except SavedSearchError as error:
        raise CheckFailed(str(error)) from None
    definitions = importlib.import_module("scholar_pipeline.definitions")
    repository = definitions.defs().get_repository_def()
    assets = len(repository.asset_graph.get_all_asset_keys())
    return (f"{len(searches)} saved searches from {queries_file()}; {assets} assets, "
            f"{len(repository.schedule_defs)} schedules, {len(repository.sensor_defs)} sensors")


def check_alert_channels() -> str:
    """Every variable that a saved search's alert channels read their secrets from is set (here, as where the daemon
    runs), so a digest does not first fail at sending; `scholar-pipeline alerts test` checks the channels themselves."""
    try:
        searches = [search for search in load_saved_searches(queries_file()) if search.alerts]
    except SavedSearchError:
        raise Skipped("the saved-search file does not load (code_location says why)") from None
    if not searches:
        raise Skipped("no saved search has alerts")
    channels = [(search.name, channel) for search in searches for channel in search.alerts.channels]
    problems = [f"{name} → {channel.label}: {problem}" for name, channel in channels
                if (problem := setup_problem(channel)) is not None]
    if problems:
        raise CheckFailed("; ".join(problems))
    return f"{len(channels)} channels of {len(searches)} saved searches, each with its variables set"


def check_instance(timeout: float, require: bool) -> str:
    """The Dagster instance of DAGSTER_HOME (SQLite or PostgreSQL storage) opens and answers a query for its last run.

    A SQLite instance that was never prepared fails instead of being created here: a probe creating the storage beside
    the first runs is the concurrent first use that breaks it (see `scholar_pipeline.instance`)."""
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        if require:
            raise CheckFailed("DAGSTER_HOME is unset (--require-instance)")
        raise Skipped("DAGSTER_HOME unset")
    from dagster import DagsterInstance
    from dagster._core.instance.config import dagster_instance_config

    if not Path(home).is_dir():
        raise CheckFailed(f"DAGSTER_HOME={home} is not a directory")
    config, _ = dagster_instance_config(home)
    runs_db = _sqlite_runs_db(Path(home), config)
    if runs_db is not None and not runs_db.exists():
        raise CheckFailed(f"SQLite instance in {home} is not prepared (no {runs_db}); "
                          f"run `python -m scholar_pipeline.instance {home}` once")
    # libpq's connect timeout (psycopg2 reads it from the environment); Dagster's own default waits for the OS.
    os.environ.setdefault("PGCONNECT_TIMEOUT", str(max(2, round(timeout))))
    instance = DagsterInstance.get()
    try:
        storage = type(instance.run_storage).__name__
        records = instance.get_run_records(limit=1)
    finally:
        instance.dispose()
    if not records:
        return f"{storage} in {home}: no runs yet"
    run = records[0].dagster_run
    return f"{storage} in {home}: last run {run.run_id[:8]} {run.status.value}"


def _sqlite_runs_db(home: Path, config) -> Path | None:
    """Where a SQLite instance keeps its runs; None for any other storage (PostgreSQL creates its tables safely)."""
    storage = config.get("storage")
    if storage is None and "run_storage" not in config:
        return home / "history" / "runs.db"
    base_dir = (storage or {}).get("sqlite", {}).get("base_dir") if isinstance(storage, dict) else None
    if isinstance(base_dir, str):
        return Path(base_dir) / "history" / "runs.db"
    return None


def check_warehouse(home: Path, timeout: float) -> str:
    """The warehouse (the DuckDB file, read-only in the writers' queue, or the DuckLake catalog) opens within
    `timeout` and has its tables."""
    import filelock

    from scholar_pipeline.warehouse_backends import (
        WarehouseBusy,
        WarehouseUnreachable,
        warehouse_from_env,
    )

    try:
        warehouse = warehouse_from_env(home)
    except ValueError as error:
        raise CheckFailed(str(error)) from None
    try:
        if not warehouse.exists():
            return f"nothing landed yet in {warehouse.name}"
        with warehouse.read_connection(timeout_seconds=timeout) as con:
            present = {name for (name,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
            missing = [table for table in WAREHOUSE_TABLES if table not in present]
            if missing:
                raise CheckFailed(f"{warehouse.name} lacks table(s) {', '.join(missing)}; the next landing creates them")
            works, = con.execute("SELECT count(*) FROM works").fetchone()
            landings, = con.execute("SELECT count(*) FROM provenance").fetchone()
    except filelock.Timeout:
        raise CheckFailed(f"busy: a writer (a run landing data) held {home / 'locks' / 'duckdb_writer.lock'} "
                          f"for the whole {timeout:g} s") from None
    except WarehouseBusy as error:
        raise CheckFailed(f"busy: {error}") from None
    except WarehouseUnreachable as error:
        raise CheckFailed(str(error)) from None
    return f"{warehouse.name}: {works} works rows, {landings} landings"


def check_rate_limit(timeout: float) -> str:
    """The Redis that shares the rate limits across machines answers, when one is named."""
    try:
        url = rate_limit_url()
    except ValueError as error:
        raise CheckFailed(str(error)) from None
    if url is None:
        raise Skipped("per machine, in SQLite under the home (no Redis named by SCHOLAR_PIPELINE_RATE_LIMIT_URL or "
                      "SCHOLAR_PIPELINE_CACHE_URL)")
    return f"shared across machines: {check_redis(url, timeout, 'SCHOLAR_PIPELINE_RATE_LIMIT_URL')}"


def check_redis(url: str | None, timeout: float, variable: str = "SCHOLAR_PIPELINE_CACHE_URL") -> str:
    """A Redis (the shared HTTP cache's, or the rate limits') answers PING within `timeout`, with no retry."""
    if not url:
        raise Skipped(f"{variable} unset (HTTP cache in SQLite under the home)")
    shown = mask_url_password(url)
    if not url.startswith(REDIS_SCHEMES):
        raise CheckFailed(f"{variable}={shown} is not a Redis URL ({', '.join(REDIS_SCHEMES)})")
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0))
    try:
        client.ping()
        version = client.info("server").get("redis_version", "?")
    except redis.RedisError as error:
        raise CheckFailed(f"{shown}: {one_line(error)}") from None
    finally:
        client.close()
    return f"{shown}: PONG (Redis {version})"


def check_home_writable(home: Path) -> str:
    """A file can be created, written and removed in the home (a full disk or a read-only mount fails here)."""
    if not home.exists():
        ancestor = next(parent for parent in home.parents if parent.exists())
        if not os.access(ancestor, os.W_OK | os.X_OK):
            raise CheckFailed(f"{home} does not exist and {ancestor} is not writable")
        return f"{home} does not exist yet; the first run creates it in {ancestor} (writable)"
    fd, name = tempfile.mkstemp(dir=home, prefix=".health-")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(b"ok\n")
            file.flush()
            os.fsync(file.fileno())
    finally:
        Path(name).unlink(missing_ok=True)
    return f"{home}: writable, {shutil.disk_usage(home).free / 1e9:.1f} GB free"


def one_line(error: BaseException) -> str:
    """An exception as one line: its type and its message with the whitespace collapsed, cut at 500 characters."""
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return text if len(text) <= 500 else text[:497] + "..."


def mask_secrets(text: str, secrets: list[str]) -> str:
    """`text` without any of `secrets`, URL passwords, libpq `password=` values or secret URL parameters."""
    for secret in secrets:
        text = mask_secret(text, secret)
    return mask_credentials(text)


def _secrets() -> list[str]:
    """The secrets this process could quote: provider API keys, the PostgreSQL password and the Redis URL's password."""
    names = [provider.credential.env for provider in PROVIDERS.values() if provider.credential] + [PG_PASSWORD_ENV]
    secrets = [os.environ.get(name) for name in names]
    url = cache_url()
    if url:
        from urllib.parse import unquote, urlsplit

        try:
            secrets.append(unquote(urlsplit(url).password or ""))
        except ValueError:  # an unparsable port: the URL is shown masked by pattern only
            pass
    return sorted({secret for secret in secrets if secret}, key=len, reverse=True)  # longest first: no partial masks


def report(results: list[CheckResult]) -> dict:
    """The JSON object `scholar-pipeline health --json` prints."""
    failed = [r.name for r in results if not r.ok]
    return {"ok": not failed, "exit_code": 1 if failed else 0, "failed": failed, "home": str(pipeline_home()),
            "checks": [asdict(r) | {"seconds": round(r.seconds, 3)} for r in results]}
