"""Backup and restore of what a deployment cannot fetch again: the warehouse, the landing zone and the Dagster instance.

    scholar-pipeline backup /backups/2024-03-02 [--previous /backups/2024-03-01]
    scholar-pipeline restore /backups/2024-03-02 [--home H] [--force] [--no-instance]

A backup is a folder: `instance/` (the Dagster instance), `warehouse/` (the DuckDB tables),
`landing/` (pages, manifests, quarantine) and `backup.json`, written last, which lists the
sha256 of every file, the versions that wrote them and what the warehouse held (provenance
rows, the latest output hash per partition). A folder without `backup.json` is an
interrupted backup. The HTTP cache and `exports/` are left out: both are derived (fetched
again, or built again by `dataset/exports`).

Parts are taken in this order so that a run landing meanwhile leaves no restored part
pointing at something another part lacks: the instance first (pg_dump reads one snapshot),
then the warehouse (its provenance may name runs the instance does not have yet: Dagster
sees those partitions as missing and a rerun replaces their rows, the same rows), then the
landing zone, whose manifests and pages are written before the rows they give land.

Warehouse: `EXPORT DATABASE (FORMAT parquet, COMPRESSION zstd)` through a read connection
taken in the writers' queue (`warehouse.read_connection`), which waits for a landing in
flight and holds the next one off until the export is done. Measured on a 100k-row `works`
table (2 cores, shared; two providers' rows rewritten once, as reruns do): the export holds
the queue 0.4 s and writes 4.0 MB (zstd; 8.7 MB with DuckDB's default snappy); a checkpoint
and a copy of the file under the write lock hold it 0.02 s and copy the whole 9.2 MB file;
`IMPORT DATABASE` restores in 0.8-1.2 s, into a 6.8 MB file. The export is chosen: its Parquet files are read by any DuckDB version
and by pyarrow (a DuckDB file only by the same or later versions), it leaves out the free
blocks that partition rewrites leave in the file, and a fraction of a second in the queue is
nothing beside a landing.

Landing zone: pages are named by their content and manifests never change, so `--previous`
(an earlier backup) makes a backup incremental: a file whose size and modification time are
the same as in the previous backup is hard-linked from it instead of copied; every backup
stays a whole one, restorable alone.

Instance: on PostgreSQL (deploy/dagster.yaml), `pg_dump --format=custom` and `pg_restore`,
with the connection from the instance's config and the password in PGPASSWORD only, never
on a command line, in backup.json or in a message. On SQLite, each storage database is
copied with SQLite's online backup API, which gives a consistent copy while runs write.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import time
from contextlib import closing
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from types import SimpleNamespace

import duckdb
import filelock

from scholar_pipeline.schema import SCHEMA_VERSION
from scholar_pipeline.sql import sql_string
from scholar_pipeline.warehouse import latest_provenance
from scholar_pipeline.warehouse_backends import WAREHOUSE_ENV, DuckDBFile
from scholar_pipeline.works import WORKS_CODE_VERSION

FORMAT = "scholar-pipeline-backup-v1"
MANIFEST = "backup.json"
DATABASE = "scholar.duckdb"
WAREHOUSE_DIR, LANDING_DIR, INSTANCE_DIR = "warehouse", "landing", "instance"
PG_DUMP = "dagster.pgdump"
EXPORT_OPTIONS = "FORMAT parquet, COMPRESSION zstd"
_HASH_CHUNK = 1 << 20


class BackupError(RuntimeError):
    """A backup or a restore that cannot go on; the message says why and what to do."""


class DamagedBackup(BackupError):
    """A file of the backup is missing or no longer hashes to what backup.json recorded."""


class RestoreRefused(BackupError):
    """The restore would overwrite data (a non-empty home or instance) and was not forced."""


@dataclass(frozen=True)
class PostgresTarget:
    """Where a PostgreSQL instance lives, as libpq takes it: the password travels apart, in PGPASSWORD only."""
    host: str
    port: int
    user: str
    database: str
    password: str
    params: tuple[tuple[str, str], ...] = ()

    def conninfo(self) -> str:
        """A libpq connection string without the password, for pg_dump's and pg_restore's `--dbname`."""
        fields = [("host", self.host), ("port", str(self.port)), ("user", self.user), ("dbname", self.database), *self.params]
        quoted = (value.replace("\\", "\\\\").replace("'", "\\'") for _, value in fields)
        return " ".join(f"{key}='{value}'" for (key, raw), value in zip(fields, quoted) if raw)

    def environ(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if key != "PGPASSWORD"}
        return env | ({"PGPASSWORD": self.password} if self.password else {})

    def shown(self) -> dict:
        return {"host": self.host, "port": self.port, "user": self.user, "database": self.database}


@dataclass(frozen=True)
class SqliteTarget:
    """A SQLite instance: its storage databases in Dagster's fixed layout under one folder."""
    root: Path

    def databases(self) -> list[Path]:
        history = self.root / "history"
        found = [history / "runs.db", *sorted((history / "runs").glob("*.db")), self.root / "schedules" / "schedules.db"]
        return [path for path in found if path.exists()]


def instance_storage(dagster_home: Path) -> PostgresTarget | SqliteTarget:
    """The storage that DAGSTER_HOME's dagster.yaml configures, read without opening the instance (which would create
    tables in an empty database, where pg_restore must find none)."""
    from dagster._core.instance.config import dagster_instance_config
    from dagster_postgres.utils import pg_url_from_config
    from sqlalchemy.engine import make_url

    config, _ = dagster_instance_config(str(dagster_home))
    config = _resolve_env(config)
    if {"run_storage", "event_log_storage", "schedule_storage"} & set(config):
        raise BackupError(f"{dagster_home}/dagster.yaml configures each storage apart; this backup reads the `storage:` "
                          "form only (deploy/dagster.yaml). Back those databases up with their own tools.")
    storage = config.get("storage") or {}
    if "postgres" in storage:
        url = make_url(pg_url_from_config(storage["postgres"]))
        return PostgresTarget(host=url.host or "", port=url.port or 5432, user=url.username or "", database=url.database or "",
                              password=url.password or "", params=tuple(sorted((k, str(v)) for k, v in url.query.items())))
    if set(storage) - {"sqlite"}:
        raise BackupError(f"{dagster_home}/dagster.yaml uses storage {sorted(storage)}; only PostgreSQL and SQLite are backed up")
    base_dir = (storage.get("sqlite") or {}).get("base_dir")
    return SqliteTarget(Path(base_dir or dagster_home).resolve())


def _resolve_env(value):
    """The config with every `{env: NAME}` replaced by the variable's value, as Dagster resolves it when it loads."""
    if isinstance(value, dict):
        if set(value) == {"env"}:
            name = value["env"]
            if name not in os.environ:
                raise BackupError(f"the Dagster instance's config reads {name}, which is unset")
            return os.environ[name]
        return {key: _resolve_env(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolve_env(item) for item in value]
    return value


def backup(home: Path, target: Path, *, dagster_home: Path | None, previous: Path | None = None, log=print) -> dict:
    """Back up the home's warehouse and landing zone and the instance of `dagster_home` (skipped when None) into
    `target`, a new or empty folder; return what backup.json records."""
    if os.environ.get(WAREHOUSE_ENV):
        raise BackupError(f"{WAREHOUSE_ENV} is set: a DuckLake warehouse lives in its PostgreSQL catalog and its "
                          "data path; back up the catalog with pg_dump and the data files with their storage's tools")
    target = Path(target).resolve()
    if target.exists() and any(target.iterdir()):
        raise BackupError(f"{target} is not empty: back up into a new folder (name it by the date; --previous makes it "
                          "incremental)")
    prior = read_manifest(previous) if previous else None
    target.mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now(dt.timezone.utc)
    parts = {"instance": None, "warehouse": None}
    if dagster_home is not None:
        parts["instance"] = _backup_instance(instance_storage(dagster_home), target / INSTANCE_DIR, log)
    database = home / DATABASE
    provenance = None
    if database.exists():
        parts["warehouse"], provenance = _backup_warehouse(database, home, target / WAREHOUSE_DIR, log)
    else:
        log(f"warehouse: nothing landed yet (no {database})")
    landing, files = _backup_landing(home / LANDING_DIR, target, previous, prior, log)
    parts["landing"] = landing
    for path in sorted(p for p in target.rglob("*") if p.is_file() and not p.is_relative_to(target / LANDING_DIR)):
        files[path.relative_to(target).as_posix()] = _file_entry(path)
    manifest = {
        "format": FORMAT, "started_at": started.isoformat(), "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "source": {"home": str(home), "dagster_home": str(dagster_home) if dagster_home else None, "host": socket.gethostname()},
        "versions": {"scholar_pipeline": version("scholar-pipeline"), "schema_version": SCHEMA_VERSION,
                     "works_code_version": WORKS_CODE_VERSION, "duckdb": duckdb.__version__, "dagster": version("dagster")},
        "parts": parts, "provenance": provenance, "files": dict(sorted(files.items())),
    }
    _write_json(target / MANIFEST, manifest)
    total = sum(entry["bytes"] for entry in files.values())
    log(f"backup of {home} in {target}: {len(files)} files, {total / 1e6:.1f} MB")
    return manifest


def _backup_instance(storage: PostgresTarget | SqliteTarget, folder: Path, log) -> dict:
    folder.mkdir()
    started = time.monotonic()
    if isinstance(storage, PostgresTarget):
        dump = folder / PG_DUMP
        _run_pg(["pg_dump", "--format=custom", "--no-password", f"--file={dump}", f"--dbname={storage.conninfo()}"], storage)
        part = {"kind": "postgres", **storage.shown(), "server_version": _pg_server_version(storage),
                "pg_dump": _pg_tool_version("pg_dump"), "file": dump.relative_to(folder.parent).as_posix()}
    else:
        databases = storage.databases()
        if not databases:
            raise BackupError(f"no Dagster storage in {storage.root}: is DAGSTER_HOME the instance's home?")
        for source in databases:
            copy = folder / source.relative_to(storage.root)
            copy.parent.mkdir(parents=True, exist_ok=True)
            _sqlite_copy(source, copy)
        part = {"kind": "sqlite", "root": str(storage.root),
                "files": [(folder / p.relative_to(storage.root)).relative_to(folder.parent).as_posix() for p in databases]}
    part["seconds"] = round(time.monotonic() - started, 3)
    log(f"instance: {part['kind']} backed up in {part['seconds']} s")
    return part


def _backup_warehouse(database: Path, home: Path, folder: Path, log) -> tuple[dict, dict | None]:
    """EXPORT DATABASE in the writers' queue; what provenance holds is read in the same connection, so it describes
    exactly the exported tables."""
    started = time.monotonic()
    with DuckDBFile(database, home).read_connection(log=SimpleNamespace(warning=log)) as con:
        con.execute(f"EXPORT DATABASE {sql_string(folder)} ({EXPORT_OPTIONS})")
        tables = {name: con.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]
                  for (name,) in con.execute("SELECT table_name FROM duckdb_tables() ORDER BY ALL").fetchall()}
        provenance = _provenance_summary(con) if "provenance" in tables else None
    seconds = round(time.monotonic() - started, 3)
    log(f"warehouse: {', '.join(f'{n} {c} rows' for n, c in tables.items())} exported in {seconds} s")
    return {"method": f"EXPORT DATABASE ({EXPORT_OPTIONS})", "folder": WAREHOUSE_DIR, "tables": tables, "seconds": seconds}, provenance


def _provenance_summary(con: duckdb.DuckDBPyConnection) -> dict:
    rows, = con.execute("SELECT count(*) FROM provenance").fetchone()
    versions = con.execute("SELECT list(DISTINCT schema_version ORDER BY schema_version), "
                           "list(DISTINCT code_version ORDER BY code_version) FROM provenance").fetchone()
    latest = {" / ".join(map(str, key)): row["output_hash"] for key, row in sorted(latest_provenance(con).items())}
    return {"rows": rows, "schema_versions": versions[0], "code_versions": versions[1], "latest_output_hashes": latest}


def _backup_landing(landing: Path, target: Path, previous: Path | None, prior: dict | None, log) -> tuple[dict, dict]:
    """Copy every landed file; with a previous backup, link each one it holds unchanged (same size and mtime: a damaged
    page that a later fetch healed was rewritten, so it is copied again)."""
    started = time.monotonic()
    files, linked = {}, 0
    recorded = (prior or {}).get("files", {})
    sources = sorted(p for p in landing.rglob("*") if p.is_file() and not p.name.startswith(".tmp-")) if landing.exists() else []
    for source in sources:
        relative = (Path(LANDING_DIR) / source.relative_to(landing)).as_posix()
        copy = target / relative
        copy.parent.mkdir(parents=True, exist_ok=True)
        stat = source.stat()
        earlier = previous / relative if previous else None
        if earlier is not None and relative in recorded and earlier.exists() and _same_file(earlier.stat(), stat):
            try:
                os.link(earlier, copy)
                files[relative] = recorded[relative]
                linked += 1
                continue
            except OSError:  # another file system: copy instead
                pass
        shutil.copy2(source, copy)
        files[relative] = _file_entry(copy)
    part = {"folder": LANDING_DIR, "files": len(files), "bytes": sum(e["bytes"] for e in files.values()),
            "linked_from_previous": linked, "previous": str(previous) if previous else None,
            "seconds": round(time.monotonic() - started, 3)}
    log(f"landing: {part['files']} files ({linked} linked from the previous backup) in {part['seconds']} s")
    return part, files


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return a.st_size == b.st_size and a.st_mtime_ns == b.st_mtime_ns


def read_manifest(folder: Path) -> dict:
    path = Path(folder) / MANIFEST
    if not path.exists():
        raise DamagedBackup(f"{path} is missing: {folder} is no backup, or one that did not finish")
    try:
        manifest = json.loads(path.read_text())
    except ValueError as error:
        raise DamagedBackup(f"{path} is damaged ({error})") from None
    if manifest.get("format") != FORMAT:
        raise DamagedBackup(f"{path} is not a {FORMAT} manifest")
    return manifest


def verify(folder: Path) -> dict:
    """backup.json, once every file it lists is present and hashes to what it recorded; else DamagedBackup naming
    every file that does not."""
    folder = Path(folder).resolve()
    manifest = read_manifest(folder)
    damaged = []
    for relative, entry in manifest["files"].items():
        path = folder / relative
        if not path.is_file():
            damaged.append(f"{relative} (missing)")
        elif path.stat().st_size != entry["bytes"] or _sha256(path) != entry["sha256"]:
            damaged.append(f"{relative} (sha256 differs from backup.json)")
    if damaged:
        shown = "; ".join(damaged[:20]) + (f"; and {len(damaged) - 20} more" if len(damaged) > 20 else "")
        raise DamagedBackup(f"backup {folder} is damaged, nothing was restored: {shown}")
    return manifest


def restore(folder: Path, home: Path, *, dagster_home: Path | None, force: bool = False, log=print) -> dict:
    """Restore a verified backup into `home` and, unless `dagster_home` is None, into the instance it configures (a
    fresh database). Refuses a non-empty home or instance unless `force`, before anything is written."""
    folder, home = Path(folder).resolve(), Path(home).resolve()
    manifest = verify(folder)
    log(f"verified {len(manifest['files'])} files of {folder}")
    instance_part = manifest["parts"]["instance"]
    storage = None
    if dagster_home is not None and instance_part is not None:
        storage = instance_storage(dagster_home)
        _refuse_instance_in_use(storage, instance_part, force)
    if home.exists() and any(home.iterdir()) and not force:
        raise RestoreRefused(f"{home} is not empty: restore into a new home (--home), or pass --force to replace its "
                             f"warehouse and landing zone")
    home.mkdir(parents=True, exist_ok=True)
    if manifest["parts"]["warehouse"] is not None:
        _restore_warehouse(folder / WAREHOUSE_DIR, home, manifest, log)
    _restore_landing(folder, home, manifest, log)
    if storage is not None:
        _restore_instance(folder, storage, instance_part, force, log)
    elif instance_part is not None:
        log("instance: not restored (no DAGSTER_HOME given)")
    return manifest


def _refuse_instance_in_use(storage: PostgresTarget | SqliteTarget, part: dict, force: bool) -> None:
    if isinstance(storage, PostgresTarget) != (part["kind"] == "postgres"):
        raise BackupError(f"the backup holds a {part['kind']} instance; DAGSTER_HOME's dagster.yaml configures another "
                          "storage: restore into the same kind")
    if force:
        return
    if isinstance(storage, PostgresTarget):
        tables = _pg_query(storage, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
        if tables:
            raise RestoreRefused(f"database {storage.database} on {storage.host}:{storage.port} already holds {tables} "
                                 "tables: restore into a fresh database, or pass --force to replace them")
    elif (storage.root / "history" / "runs.db").exists():
        with closing(sqlite3.connect(f"file:{storage.root / 'history' / 'runs.db'}?mode=ro", uri=True)) as con:
            runs, = con.execute("SELECT count(*) FROM runs").fetchone()
        if runs:
            raise RestoreRefused(f"the Dagster instance in {storage.root} already holds {runs} runs: restore into a fresh "
                                 "DAGSTER_HOME, or pass --force to replace its history")


def _restore_warehouse(folder: Path, home: Path, manifest: dict, log) -> None:
    """IMPORT into a file aside, check it holds what was backed up, then swap it in under the writers' lock."""
    started = time.monotonic()
    handle, aside = tempfile.mkstemp(dir=home, prefix=".restoring-", suffix=".duckdb")
    os.close(handle)
    os.unlink(aside)  # DuckDB creates the file itself
    aside = Path(aside)
    try:
        with duckdb.connect(str(aside)) as con:
            con.execute(f"IMPORT DATABASE {sql_string(folder)}")
            if manifest["provenance"] is not None and _provenance_summary(con) != manifest["provenance"]:
                raise DamagedBackup(f"the warehouse imported from {folder} does not hold the provenance that backup.json "
                                    "recorded")
        lock = home / "locks" / "duckdb_writer.lock"
        lock.parent.mkdir(exist_ok=True)
        with filelock.FileLock(str(lock)):
            Path(f"{home / DATABASE}.wal").unlink(missing_ok=True)
            os.replace(aside, home / DATABASE)
    finally:
        aside.unlink(missing_ok=True)
        Path(f"{aside}.wal").unlink(missing_ok=True)
    log(f"warehouse: {home / DATABASE} restored in {time.monotonic() - started:.2f} s")


def _restore_landing(folder: Path, home: Path, manifest: dict, log) -> None:
    started = time.monotonic()
    shutil.rmtree(home / LANDING_DIR, ignore_errors=True)
    landed = [relative for relative in manifest["files"] if relative.startswith(f"{LANDING_DIR}/")]
    for relative in landed:
        (home / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(folder / relative, home / relative)
    log(f"landing: {len(landed)} files restored in {time.monotonic() - started:.2f} s")


def _restore_instance(folder: Path, storage: PostgresTarget | SqliteTarget, part: dict, force: bool, log) -> None:
    started = time.monotonic()
    if isinstance(storage, PostgresTarget):
        clean = ["--clean", "--if-exists"] if force else []
        _run_pg(["pg_restore", "--no-password", "--no-owner", "--no-privileges", "--single-transaction", "--exit-on-error",
                 *clean, f"--dbname={storage.conninfo()}", str(folder / part["file"])], storage)
        where = f"database {storage.database} on {storage.host}:{storage.port}"
    else:
        if force:
            for stale in ("history", "schedules"):
                shutil.rmtree(storage.root / stale, ignore_errors=True)
        for relative in part["files"]:
            restored = storage.root / Path(relative).relative_to(INSTANCE_DIR)
            restored.parent.mkdir(parents=True, exist_ok=True)
            _sqlite_copy(folder / relative, restored)
        where = str(storage.root)
    log(f"instance: {part['kind']} restored into {where} in {time.monotonic() - started:.2f} s")


def _sqlite_copy(source: Path, copy: Path) -> None:
    """SQLite's online backup: a consistent copy of a database that runs may be writing (it replaces `copy`'s content)."""
    with closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True)) as src, closing(sqlite3.connect(str(copy))) as dst:
        src.backup(dst)


def _run_pg(command: list[str], storage: PostgresTarget) -> None:
    """Run a PostgreSQL client tool with the password in its environment; its errors with the password masked."""
    if shutil.which(command[0]) is None:
        raise BackupError(f"{command[0]} is not on PATH: install the PostgreSQL client (apt install postgresql-client) "
                          "of the server's major version or later")
    done = subprocess.run(command, env=storage.environ(), capture_output=True, text=True)
    if done.returncode != 0:
        message = done.stderr.strip()
        if storage.password:
            message = message.replace(storage.password, "***")
        raise BackupError(f"{command[0]} failed for database {storage.database} on {storage.host}:{storage.port} "
                          f"(exit {done.returncode}): {message}")


def _pg_query(storage: PostgresTarget, sql: str):
    import psycopg2

    try:
        connection = psycopg2.connect(host=storage.host, port=storage.port, user=storage.user, dbname=storage.database,
                                      password=storage.password or None, **dict(storage.params))
    except psycopg2.OperationalError as error:
        message = str(error).strip().replace(storage.password, "***") if storage.password else str(error).strip()
        raise BackupError(f"cannot connect to database {storage.database} on {storage.host}:{storage.port}: {message} "
                          "(create the database first: createdb)") from None
    with closing(connection), connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()[0]


def _pg_server_version(storage: PostgresTarget) -> str:
    return _pg_query(storage, "SHOW server_version")


def _pg_tool_version(tool: str) -> str:
    return subprocess.run([tool, "--version"], capture_output=True, text=True, check=True).stdout.strip()


def _file_entry(path: Path) -> dict:
    return {"sha256": _sha256(path), "bytes": path.stat().st_size}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _write_json(path: Path, data: dict) -> None:
    """Write aside, then move into place: backup.json exists only once the whole backup does."""
    aside = path.with_name(f".{path.name}.tmp")
    aside.write_text(json.dumps(data, indent=1, default=str) + "\n")
    os.replace(aside, path)
