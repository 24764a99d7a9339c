"""Where the warehouse lives: a DuckDB file under the home, or DuckLake, which many machines write at once.

`SCHOLAR_PIPELINE_WAREHOUSE` chooses. Unset, the tables live in `<home>/scholar.duckdb`,
whose write connection locks the whole file against every other process, readers too:
writers queue on a machine-wide file lock, which holds however a run is launched (UI,
schedule, CLI, tests) and which the operating system releases when its holder dies, even
by `kill -9` (a Dagster pool slot would stay claimed by a killed run until run monitoring
noticed). A reader holding the file (a notebook) makes the writer wait and say so in the
log, up to a deadline, instead of failing at once.

Set to `ducklake:postgres:<libpq connection string>`, the same tables live in DuckLake: a
PostgreSQL catalog and Parquet data files under `SCHOLAR_PIPELINE_WAREHOUSE_DATA_PATH` (a
folder every worker mounts, or an `s3://` URL of any S3-compatible store, reached with the
standard `AWS_*` variables). Every connection is its own transaction against the catalog,
so run workers on any number of machines land partitions at once, with no writer queue:
only two landings of the same partition take turns (`DuckLake.landing_connection`).
Both give plain DuckDB connections on which the tables keep their names and columns
(`USE lake`), so the rest of the code does not know which it has.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from contextlib import AbstractContextManager, closing, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping, Protocol
from urllib.parse import urlsplit

import duckdb
import filelock

from scholar_pipeline.client.masking import mask_credentials
from scholar_pipeline.duckdb_extensions import load_extension
from scholar_pipeline.sql import sql_string
from scholar_pipeline.warehouse import ensure_tables

WAREHOUSE_ENV = "SCHOLAR_PIPELINE_WAREHOUSE"
DATA_PATH_ENV = "SCHOLAR_PIPELINE_WAREHOUSE_DATA_PATH"
DUCKLAKE_PREFIX = "ducklake:postgres:"
WRITER_THREADS = 1  # DuckDB threads of a write connection (see `DuckDBFile.write_connection`)
LAKE = "lake"  # the name the DuckLake catalog is attached as
# Taken around creating the DuckLake catalog: two processes attaching a fresh catalog at once both try to
# create it and one fails on PostgreSQL's unique index of type names.
CATALOG_LOCK_ID = 0x5C401A4  # pg_advisory_lock key, one per PostgreSQL database
S3_SCHEME = "s3://"
CONNECT_TIMEOUT_SECONDS = 10  # reaching the catalog's PostgreSQL, from DuckDB and from psycopg2
CATALOG_LOCK_TIMEOUT = "120s"  # waiting for another process that is creating the catalog
# `works` is partitioned as it is replaced: DuckLake finds a conflict between two transactions that delete from one data
# file, so a file must never hold two partitions (nor can merging files mix them).
PARTITIONED_BY = ("query", "provider", "partition_date")
Partition = tuple[str, str, dt.date]  # (query, provider, partition date): one slice of `works`


class WarehouseBusy(RuntimeError):
    """The DuckDB file stayed locked by another process past the deadline."""


class WarehouseUnreachable(RuntimeError):
    """The DuckLake catalog could not be opened; the message is masked."""


class Warehouse(Protocol):
    """One small interface over both backends: connections on which `works`, `provenance` and the dataset
    tables are reachable by their bare names."""

    @property
    def name(self) -> str:
        """Where it is, for logs and errors, with any password masked."""

    def exists(self) -> bool:
        """Whether anything was ever landed (the file or the catalog's tables exist)."""

    def write_connection(self, log=None, timeout_seconds: float = 1800) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        """A connection that may write; closed on exit."""

    def read_connection(self, log=None, timeout_seconds: float = 1800) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        """A connection that only reads; closed on exit."""

    def exclusive(self, task: str) -> AbstractContextManager[bool]:
        """Whether this process may run `task` now, held until exit: one at a time among all that use the warehouse
        (a sensor's pass whose previous evaluation outlived its deadline, two daemons during a deploy)."""

    def landing_connection(self, partition: Partition, log=None,
                           timeout_seconds: float = 1800) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        """A write connection for landing `partition` (query, provider, date), the only one landing it among all
        writers until exit: two landings of a partition at once would leave one's rows under the other's provenance,
        or both's rows."""


@dataclass(frozen=True)
class DuckDBFile:
    """The DuckDB file under the home: one writer at a time on the machine (see the module's docstring)."""

    database: Path
    home: Path

    @property
    def name(self) -> str:
        return str(self.database)

    def exists(self) -> bool:
        return self.database.exists()

    @contextmanager
    def write_connection(self, log=None, timeout_seconds: float = 1800) -> Iterator[duckdb.DuckDBPyConnection]:
        """The one write connection of the machine: queue on the writer lock, then wait out any reader of the file.

        DuckDB works on one thread here: a landing inserts one partition from its staging file,
        and each further thread holds row groups of its own while it reads (100k rows: 30 MB
        more at the peak) without landing it any sooner (0.2 s either way), beside the run's
        provider threads that fetch and normalize meanwhile."""
        with self._queued_connection(log, timeout_seconds, read_only=False) as con:
            con.execute(f"SET threads = {WRITER_THREADS}")
            yield con

    @contextmanager
    def read_connection(self, log=None, timeout_seconds: float = 1800) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection taken in the writers' queue: DuckDB refuses a reader while a writer holds the
        file, so a reader that runs beside the pipeline (the audit) waits its turn instead of failing."""
        with self._queued_connection(log, timeout_seconds, read_only=True) as con:
            yield con

    def landing_connection(self, partition: Partition, log=None,
                           timeout_seconds: float = 1800) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        """The write connection: the machine's one writer lands one partition at a time."""
        return self.write_connection(log, timeout_seconds)

    @contextmanager
    def exclusive(self, task: str) -> Iterator[bool]:
        (self.home / "locks").mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(str(self.home / "locks" / f"{task}.lock"))
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            yield False
            return
        try:
            yield True
        finally:
            lock.release()

    @property
    def lock_path(self) -> Path:
        return self.home / "locks" / "duckdb_writer.lock"

    @contextmanager
    def _queued_connection(self, log, timeout_seconds: float, read_only: bool) -> Iterator[duckdb.DuckDBPyConnection]:
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout_seconds
        with filelock.FileLock(str(self.lock_path), timeout=timeout_seconds):
            con = self._connect_when_free(deadline, log, read_only)
            try:
                yield con
            finally:
                con.close()

    def _connect_when_free(self, deadline: float, log, read_only: bool, poll_seconds: float = 1.0) -> duckdb.DuckDBPyConnection:
        reported = False
        while True:
            try:
                return duckdb.connect(str(self.database), read_only=read_only)
            except duckdb.IOException as error:
                if "lock" not in str(error).lower():
                    raise
                if time.monotonic() > deadline:
                    raise WarehouseBusy(
                        f"{self.database} stayed locked by another process: {error}. Close other DuckDB connections to "
                        "it (a notebook, a BI tool) or read a copy of the file while runs write."
                    ) from None
                if log is not None and not reported:
                    log.warning(f"waiting for another process to release {self.database} ({error})")
                    reported = True
                time.sleep(poll_seconds)


@dataclass(frozen=True)
class DuckLake:
    """DuckLake with its catalog in PostgreSQL (`catalog` is the libpq connection string) and its Parquet files
    under `data_path`, which the catalog records when it is created. Later connections to local files may leave it
    unset; with s3:// files every connection needs it, to reach the store."""

    catalog: str = field(repr=False)  # may hold a password: shown only as `name`
    data_path: str | None = None

    @property
    def name(self) -> str:
        shown = mask_credentials(f"{DUCKLAKE_PREFIX}{self.catalog}")
        return f"{shown} (data files in {self.data_path})" if self.data_path else shown

    def __repr__(self) -> str:
        return f"DuckLake({self.name!r})"

    def exists(self) -> bool:
        return self._catalog_state() == "ready"

    @contextmanager
    def write_connection(self, log=None, timeout_seconds: float = 1800) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection of its own: DuckLake commits each transaction against the catalog, so writers need no
        queue; the landing's thread count matches the DuckDB file's for the same reasons."""
        if self._catalog_state() != "ready":
            self._create_catalog(log)
        with self._connection(read_only=False) as con:
            con.execute(f"SET threads = {WRITER_THREADS}")
            yield con

    @contextmanager
    def read_connection(self, log=None, timeout_seconds: float = 1800) -> Iterator[duckdb.DuckDBPyConnection]:
        """Each statement reads the snapshot of its moment: landings commit meanwhile, so a reader of several
        statements that must agree takes them in one transaction (`warehouse.snapshot`)."""
        with self._connection(read_only=True) as con:
            yield con

    @contextmanager
    def landing_connection(self, partition: Partition, log=None,
                           timeout_seconds: float = 1800) -> Iterator[duckdb.DuckDBPyConnection]:
        """A write connection, once no other writer lands `partition`: a session-level advisory lock in the catalog's
        PostgreSQL, keyed by the partition and waited for. DuckLake alone would let two first landings of a partition
        both commit (each inserts, neither deletes what the other wrote), and a second landing retried after a
        conflict would commit the rows of the one that lost."""
        import psycopg2

        lock = f"scholar_pipeline:landing:{'|'.join(map(str, partition))}"
        with closing(self._pg()) as pg, pg.cursor() as cursor:
            pg.autocommit = True
            cursor.execute("SELECT set_config('lock_timeout', %s, false)", [f"{int(timeout_seconds * 1000)}"])
            try:
                cursor.execute("SELECT pg_advisory_lock(hashtext(%s))", [lock])
            except psycopg2.errors.LockNotAvailable:
                raise WarehouseBusy(f"DuckLake {self.name}: another writer kept landing {' / '.join(map(str, partition))} "
                                    f"for {timeout_seconds:.0f} s; is a run of it stuck?") from None
            try:
                with self.write_connection(log, timeout_seconds) as con:
                    yield con
            finally:
                with suppress(psycopg2.Error):  # a session that dropped has released the lock already
                    cursor.execute("SELECT pg_advisory_unlock(hashtext(%s))", [lock])

    @contextmanager
    def exclusive(self, task: str) -> Iterator[bool]:
        """A session-level advisory lock in the catalog's PostgreSQL, keyed by the task's name; PostgreSQL releases
        it when the session ends, however the process ends."""
        import psycopg2

        with closing(self._pg()) as pg, pg.cursor() as cursor:
            pg.autocommit = True
            cursor.execute("SELECT pg_try_advisory_lock(hashtext(%s))", [f"scholar_pipeline:{task}"])
            held = cursor.fetchone()[0]
            try:
                yield held
            finally:
                if held:  # a session that dropped has lost the lock already: that must not hide the task's own error
                    with suppress(psycopg2.Error):
                        cursor.execute("SELECT pg_advisory_unlock(hashtext(%s))", [f"scholar_pipeline:{task}"])

    @contextmanager
    def _connection(self, read_only: bool) -> Iterator[duckdb.DuckDBPyConnection]:
        con = duckdb.connect()
        try:
            load_extension(con, "postgres_scanner", "duckdb-ext-postgres")
            load_extension(con, "ducklake", "duckdb-ext-ducklake")
            if (self.data_path or "").startswith(S3_SCHEME):
                _reach_object_store(con)
            options = ["READ_ONLY"] if read_only else []
            if self.data_path and not read_only:
                options.append(f"DATA_PATH {sql_string(self.data_path)}")
            attach = f"ATTACH {sql_string(DUCKLAKE_PREFIX + _with_connect_timeout(self.catalog))} AS {LAKE}"
            try:
                con.execute(attach + (f" ({', '.join(options)})" if options else ""))
            except duckdb.Error as error:
                raise WarehouseUnreachable(f"DuckLake {self.name}: {mask_credentials(str(error)).strip()}") from None
            con.execute(f"USE {LAKE}")
            with _masking_connection_strings():
                yield con
        finally:
            con.close()

    def _catalog_state(self) -> str:
        """"ready" when the catalog holds `works` and `provenance`, "missing" otherwise."""
        import psycopg2

        try:
            with closing(self._pg()) as pg, pg.cursor() as cursor:
                cursor.execute("SELECT to_regclass('ducklake_table') IS NOT NULL")
                if not cursor.fetchone()[0]:
                    return "missing"
                cursor.execute("SELECT count(DISTINCT table_name) FROM ducklake_table "
                               "WHERE table_name IN ('works', 'provenance') AND end_snapshot IS NULL")
                return "ready" if cursor.fetchone()[0] == 2 else "missing"
        except psycopg2.Error as error:
            raise WarehouseUnreachable(f"DuckLake catalog {self.name}: {mask_credentials(str(error)).strip()}") from None

    def _create_catalog(self, log) -> None:
        """Create the catalog and the tables once, whoever asks first: the others wait on the advisory lock,
        then find them made."""
        import psycopg2

        with closing(self._pg()) as pg, pg.cursor() as cursor:
            pg.autocommit = True
            cursor.execute(f"SET lock_timeout = '{CATALOG_LOCK_TIMEOUT}'")
            try:
                cursor.execute("SELECT pg_advisory_lock(%s)", [CATALOG_LOCK_ID])
            except psycopg2.errors.LockNotAvailable:
                raise WarehouseUnreachable(f"DuckLake {self.name}: another process held the lock on creating the "
                                           f"catalog for {CATALOG_LOCK_TIMEOUT}; if none is creating it, look for a "
                                           "stuck session in pg_stat_activity") from None
            try:
                if self._catalog_state() == "ready":
                    return
                if not self.data_path:
                    raise WarehouseUnreachable(f"DuckLake {self.name} has no catalog yet: set {DATA_PATH_ENV} "
                                               "to the folder or s3:// URL its data files go to")
                if log is not None:
                    log.info(f"creating the DuckLake catalog and tables in {self.name}")
                with self._connection(read_only=False) as con:
                    ensure_tables(con)
                    con.execute(f"ALTER TABLE works SET PARTITIONED BY ({', '.join(PARTITIONED_BY)})")
            finally:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [CATALOG_LOCK_ID])

    def _pg(self):
        """A psycopg2 connection to the catalog's database; an error names it, with its password masked."""
        import psycopg2

        try:
            return psycopg2.connect(self.catalog, connect_timeout=CONNECT_TIMEOUT_SECONDS)
        except psycopg2.Error as error:
            raise WarehouseUnreachable(f"DuckLake catalog {self.name}: {mask_credentials(str(error)).strip()}") from None


@contextmanager
def _masking_connection_strings() -> Iterator[None]:
    """DuckDB errors without the catalog's password. One that reconnects to a lost catalog quotes the whole connection
    string ("Unable to connect to Postgres at "host=... password=...""), and run logs, failure descriptions and the
    event log show errors as they are. The error is raised again as its own type (a conflict stays a
    TransactionException), its original suppressed, which tracebacks and Dagster's error records then leave out."""
    try:
        yield
    except duckdb.Error as error:
        shown = mask_credentials(str(error))
        if shown == str(error):
            raise
        raise type(error)(shown) from None


def _reach_object_store(con: duckdb.DuckDBPyConnection, environ: Mapping[str, str] = os.environ) -> None:
    """Data files in S3 or an S3-compatible store (MinIO, R2, Ceph): httpfs with a DuckDB secret made from the
    variables the AWS tools read, `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT_URL_S3`) naming a store other than AWS's.
    Without `AWS_ACCESS_KEY_ID`, the AWS tools' credential chain (a profile in AWS_SHARED_CREDENTIALS_FILE, a pod's or an
    instance's role) through DuckDB's aws extension."""
    load_extension(con, "httpfs", "duckdb-ext-httpfs")
    options = {"REGION": environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or "us-east-1"}
    provider = ""
    if environ.get("AWS_ACCESS_KEY_ID"):
        options |= {"KEY_ID": environ["AWS_ACCESS_KEY_ID"], "SECRET": environ.get("AWS_SECRET_ACCESS_KEY", "")}
        if environ.get("AWS_SESSION_TOKEN"):
            options["SESSION_TOKEN"] = environ["AWS_SESSION_TOKEN"]
    else:
        load_extension(con, "aws", "duckdb-ext-aws")
        provider = "PROVIDER credential_chain, "
    endpoint = environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL")
    settings = ""
    if endpoint:
        parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        options["ENDPOINT"] = parts.netloc
        settings = f", USE_SSL {'true' if parts.scheme == 'https' else 'false'}, URL_STYLE 'path'"
    listed = ", ".join(f"{name} {sql_string(value)}" for name, value in options.items())
    con.execute(f"CREATE SECRET scholar_pipeline_s3 (TYPE s3, {provider}{listed}{settings})")


def _with_connect_timeout(catalog: str) -> str:
    """The libpq string (key=value or URI) with a connect timeout, unless it sets one: libpq waits for the operating
    system's, minutes, for a host that drops packets."""
    if "connect_timeout" in catalog:
        return catalog
    if "://" in catalog:
        return f"{catalog}{'&' if '?' in catalog else '?'}connect_timeout={CONNECT_TIMEOUT_SECONDS}"
    return f"{catalog} connect_timeout={CONNECT_TIMEOUT_SECONDS}"


def warehouse_from_env(home: Path, environ: Mapping[str, str] = os.environ) -> Warehouse:
    """The warehouse `SCHOLAR_PIPELINE_WAREHOUSE` names: the DuckDB file under `home` when it is unset."""
    location = (environ.get(WAREHOUSE_ENV) or "").strip()
    return warehouse_at(location, environ.get(DATA_PATH_ENV) or None, home)


def warehouse_at(location: str | None, data_path: str | None, home: Path) -> Warehouse:
    if not location:
        return DuckDBFile(home / "scholar.duckdb", home)
    if location.startswith(DUCKLAKE_PREFIX) and location[len(DUCKLAKE_PREFIX):].strip():
        return DuckLake(location[len(DUCKLAKE_PREFIX):].strip(), data_path)
    raise ValueError(f"{WAREHOUSE_ENV} must be unset (the DuckDB file under the home) or "
                     f"'{DUCKLAKE_PREFIX}<libpq connection string>', not {mask_credentials(location)!r}")
