"""`scholar-pipeline health`: one line per check, exit codes for probes, never a hang, never a secret.

Run as probes run it, as a subprocess, against the real Redis and PostgreSQL on this machine.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import duckdb
import pytest

from scholar_pipeline.health import mask_secrets
from scholar_pipeline.instance import prepare_instance
from scholar_pipeline.queries import SavedSearchError, load_saved_searches
from scholar_pipeline.warehouse import ensure_tables
from scholar_pipeline.warehouse_backends import DuckDBFile
from scholar_pipeline_tests.conftest import SECRET_ENV
from scholar_pipeline_tests.helpers import materialize, query_db

BIN = Path(sys.executable).parent
REDIS_URL = "redis://127.0.0.1:6379/0"
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
CHECKS = ["code_location", "instance", "warehouse", "redis", "rate_limit", "home", "alerts"]
ALERTING_QUERIES = """queries:
  - name: watched
    text: soil microbiome
    providers: [openalex]
    start_date: 2024-01-01
    alerts:
      channels:
        - {type: webhook, url_env: ALERTS_WEBHOOK_URL}
        - {type: email, host: smtp.example.org, user: me, password_env: ALERTS_SMTP_PASSWORD, from: a@example.org, to: [b@example.org]}
"""


def _environment(home: Path, **extra: str) -> dict[str, str]:
    """This process's environment without any pipeline, Dagster or key setting, plus `extra`."""
    dropped = {"DAGSTER_HOME", "PGCONNECT_TIMEOUT", *SECRET_ENV}
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHOLAR_PIPELINE_") and not k.startswith("DAGSTER_PG_")
           and k not in dropped}
    return env | {"SCHOLAR_PIPELINE_HOME": str(home)} | extra


def _health(env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    """`scholar-pipeline health --json` as a probe runs it; its report, checked against its exit code. The subprocess
    timeout only stops a hang (the checks' own timeouts are seconds)."""
    result = subprocess.run([str(BIN / "scholar-pipeline"), "health", "--json", *args], env=env, capture_output=True,
                            text=True, timeout=120)
    report = json.loads(result.stdout)
    assert report["exit_code"] == result.returncode and report["ok"] == (result.returncode == 0), result.stdout
    assert [check["name"] for check in report["checks"]] == CHECKS
    assert report["failed"] == [check["name"] for check in report["checks"] if not check["ok"]]
    return result, report


def _checks(report: dict) -> dict[str, dict]:
    return {check["name"]: check for check in report["checks"]}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def fresh(tmp_path) -> dict[str, str]:
    """A fresh home whose Dagster instance is prepared (SQLite), and the real Redis as the shared cache."""
    home = tmp_path / "home"
    dagster_home = prepare_instance(home / "dagster_home")
    return _environment(home, DAGSTER_HOME=str(dagster_home), SCHOLAR_PIPELINE_CACHE_URL=REDIS_URL)


def test_everything_passes_on_a_fresh_home_with_a_prepared_instance_and_redis(fresh, tmp_path):
    (tmp_path / "queries.yaml").write_text(ALERTING_QUERIES)
    fresh |= {"SCHOLAR_PIPELINE_QUERIES": str(tmp_path / "queries.yaml"), "ALERTS_SMTP_PASSWORD": "smtp-password-for-health",
              "ALERTS_WEBHOOK_URL": "https://hooks.example.org/services/health-check-token"}
    result, report = _health(fresh)

    assert result.returncode == 0 and report["ok"], result.stdout
    checks = _checks(report)
    assert not any(check["skipped"] for check in checks.values())
    assert checks["instance"]["detail"] == f"SqliteRunStorage in {fresh['DAGSTER_HOME']}: no runs yet"
    home = Path(fresh["SCHOLAR_PIPELINE_HOME"])
    assert checks["warehouse"]["detail"] == f"nothing landed yet in {home / 'scholar.duckdb'}"
    assert checks["redis"]["detail"].startswith(f"{REDIS_URL}: PONG (Redis ")
    assert checks["rate_limit"]["detail"].startswith(f"shared across machines: {REDIS_URL}: PONG (Redis ")  # the cache's
    assert checks["home"]["detail"].startswith(f"{home}: writable, ")
    assert sorted(p.name for p in home.iterdir()) == ["dagster_home"]  # the write test left nothing behind
    assert checks["alerts"]["detail"] == "2 channels of 1 saved searches, each with its variables set"

    # The lines a person reads: one per check, then the verdict.
    text = subprocess.run([str(BIN / "scholar-pipeline"), "health"], env=fresh, capture_output=True, text=True, timeout=120)
    lines = text.stdout.splitlines()
    assert text.returncode == 0 and lines[-1] == "healthy: 7 checks ok"
    assert [line.split()[:2] for line in lines[:-1]] == [[name, "ok"] for name in CHECKS]


def test_an_alert_channel_without_its_variable_fails_naming_it(tmp_path):
    (tmp_path / "queries.yaml").write_text(ALERTING_QUERIES)
    env = _environment(tmp_path / "home", SCHOLAR_PIPELINE_QUERIES=str(tmp_path / "queries.yaml"),
                       ALERTS_WEBHOOK_URL="https://hooks.example.org/services/health-check-token")
    result, report = _health(env)
    assert result.returncode == 1 and report["failed"] == ["alerts"]
    assert _checks(report)["alerts"]["detail"] == (
        "watched → email: environment variable ALERTS_SMTP_PASSWORD is not set where alerts are sent (the Dagster "
        "daemon's code server, or the shell of `scholar-pipeline alerts test`); set it")


def test_unset_dagster_home_is_skipped_unless_required(tmp_path):
    env = _environment(tmp_path / "home")

    result, report = _health(env)
    assert result.returncode == 0 and _checks(report)["instance"] | {"seconds": 0} == {
        "name": "instance", "ok": True, "skipped": True, "detail": "skipped: DAGSTER_HOME unset", "seconds": 0}
    assert _checks(report)["redis"]["skipped"] and _checks(report)["home"]["detail"].endswith("(writable)")
    assert _checks(report)["rate_limit"]["detail"].startswith("skipped: per machine, in SQLite")

    required, report = _health(env, "--require-instance")
    assert required.returncode == 1 and report["failed"] == ["instance"]
    assert _checks(report)["instance"]["detail"] == "DAGSTER_HOME is unset (--require-instance)"


def test_an_unprepared_sqlite_instance_fails_without_being_created(tmp_path):
    """A probe must not be the concurrent first use that breaks a SQLite instance's storage."""
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()

    result, report = _health(_environment(tmp_path / "home", DAGSTER_HOME=str(dagster_home)))

    assert result.returncode == 1 and report["failed"] == ["instance"]
    assert "is not prepared" in _checks(report)["instance"]["detail"]
    assert f"python -m scholar_pipeline.instance {dagster_home}" in _checks(report)["instance"]["detail"]
    assert list(dagster_home.iterdir()) == []


def test_redis_on_a_closed_port_fails_fast(fresh):
    port = _free_port()
    env = fresh | {"SCHOLAR_PIPELINE_CACHE_URL": f"redis://127.0.0.1:{port}/0"}

    result, report = _health(env, "--timeout", "2")

    assert result.returncode == 1 and report["failed"] == ["redis", "rate_limit"]  # the limits follow the cache's Redis
    detail = _checks(report)["redis"]["detail"]
    assert detail.startswith(f"redis://127.0.0.1:{port}/0: ConnectionError: ") and "refused" in detail

    # A Redis of its own for the limits: only that check fails.
    result, report = _health(fresh | {"SCHOLAR_PIPELINE_RATE_LIMIT_URL": f"redis://127.0.0.1:{port}/3"}, "--timeout", "2")
    assert result.returncode == 1 and report["failed"] == ["rate_limit"]
    assert _checks(report)["rate_limit"]["detail"].startswith(f"redis://127.0.0.1:{port}/3: ConnectionError: ")


def test_redis_password_never_shows(fresh):
    """Neither in the URL shown nor in an error. The local Redis's default user takes any password (`nopass`), so the
    first URL answers; the second is refused on a closed port. Keys in the environment are masked in every detail too."""
    password, key, pg_password = "pa@ss-" + uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex
    quoted = password.replace("@", "%40")
    answering, closed = f"redis://:{quoted}@127.0.0.1:6379/0", f"redis://scholar:{quoted}@127.0.0.1:{_free_port()}/0"
    for url, exit_code in ((answering, 0), (closed, 1)):
        env = fresh | {"SCHOLAR_PIPELINE_CACHE_URL": url, "OPENALEX_API_KEY": key, "DAGSTER_PG_PASSWORD": pg_password}
        result, report = _health(env, "--timeout", "2")
        text = subprocess.run([str(BIN / "scholar-pipeline"), "health"], env=env, capture_output=True, text=True, timeout=120)

        assert result.returncode == text.returncode == exit_code, result.stdout
        shown = url.replace(quoted, "***")
        assert _checks(report)["redis"]["detail"].startswith(f"{shown}: ")
        line, = (line for line in text.stdout.splitlines() if line.startswith("redis "))
        assert line.split()[:3] == ["redis", "ok" if exit_code == 0 else "FAIL", f"{shown}:"]
        for output in (result.stdout, result.stderr, text.stdout, text.stderr):
            for secret in (password, quoted, "pa%40ss", key, pg_password):
                assert secret not in output


def _hold_warehouse(home: Path, queued: bool) -> subprocess.Popen:
    """Another process holding the DuckDB file for writing: a run landing data (in the writers' queue), or a foreign
    write connection (a notebook) that the queue does not know about."""
    code = ("import sys, time, duckdb; from pathlib import Path; from scholar_pipeline.warehouse_backends import DuckDBFile\n"
            "home = Path(sys.argv[1]); database = home / 'scholar.duckdb'\n"
            "held = DuckDBFile(database, home).write_connection() if sys.argv[2] == 'queued' else duckdb.connect(str(database))\n"
            "held.__enter__()\n"
            "print('holding', flush=True); time.sleep(600)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(home), "queued" if queued else "foreign"],
                              stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert holder.stdout.readline().strip() == "holding"
    return holder


@pytest.mark.parametrize("queued", [True, False], ids=["run_in_the_writers_queue", "foreign_writer"])
def test_a_warehouse_held_by_a_writer_reports_busy_instead_of_hanging(fresh, queued):
    home = Path(fresh["SCHOLAR_PIPELINE_HOME"])
    with DuckDBFile(home / "scholar.duckdb", home).write_connection() as con:
        ensure_tables(con)
    holder = _hold_warehouse(home, queued)
    try:
        result, report = _health(fresh, "--timeout", "2")
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)

    assert result.returncode == 1 and report["failed"] == ["warehouse"]
    detail = _checks(report)["warehouse"]["detail"]
    assert detail.startswith("busy: ")
    assert ("duckdb_writer.lock" in detail) if queued else ("stayed locked by another process" in detail)

    released, report = _health(fresh)  # the holder gone, the same file is healthy
    assert released.returncode == 0
    assert _checks(report)["warehouse"]["detail"] == f"{home / 'scholar.duckdb'}: 0 works rows, 0 landings"


def test_warehouse_counts_what_landed_and_fails_without_its_tables(pipeline_env, tmp_path):
    assert materialize("2024-03-01", "openalex").success
    home = Path(pipeline_env["SCHOLAR_PIPELINE_HOME"])
    env = _environment(home, SCHOLAR_PIPELINE_QUERIES=pipeline_env["SCHOLAR_PIPELINE_QUERIES"])
    (works,), = query_db("SELECT count(*) FROM works")

    result, report = _health(env)

    assert result.returncode == 0 and works > 0
    assert _checks(report)["warehouse"]["detail"] == f"{home / 'scholar.duckdb'}: {works} works rows, 1 landings"
    assert _checks(report)["code_location"]["detail"].startswith(f"1 saved searches from {pipeline_env['SCHOLAR_PIPELINE_QUERIES']}")

    with duckdb.connect(str(home / "scholar.duckdb")) as con:
        con.execute("DROP TABLE provenance")
    broken, report = _health(env)
    assert broken.returncode == 1 and report["failed"] == ["warehouse"]
    assert "lacks table(s) provenance" in _checks(report)["warehouse"]["detail"]


def test_a_bad_saved_search_file_fails_the_code_location_with_its_one_line_error(fresh, tmp_path):
    queries = tmp_path / "queries.yaml"
    queries.write_text("queries:\n  - name: Bad Name\n    text: graphene\n    providers: [openalex]\n    start_date: 2024-01-01\n")
    with pytest.raises(SavedSearchError) as expected:
        load_saved_searches(queries)

    result, report = _health(fresh | {"SCHOLAR_PIPELINE_QUERIES": str(queries)})

    assert result.returncode == 1 and report["failed"] == ["code_location"]
    assert _checks(report)["code_location"]["detail"] == str(expected.value)
    assert "\n" not in str(expected.value) and f"{queries}: line 2: saved search 'Bad Name' is invalid" in str(expected.value)


def test_bad_usage_exits_2(fresh):
    for args in (["--timeout", "0"], ["--timeout", "soon"], ["--no-such-option"]):
        result = subprocess.run([str(BIN / "scholar-pipeline"), "health", *args], env=fresh, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 2 and result.stdout == "" and "Usage: scholar-pipeline health" in result.stderr


@pytest.fixture
def postgres_database():
    """A fresh database on the local PostgreSQL, dropped afterwards."""
    psycopg2 = pytest.importorskip("psycopg2")
    try:
        admin = psycopg2.connect(dbname="postgres", connect_timeout=5, **PG)
    except psycopg2.OperationalError as error:
        pytest.skip(f"PostgreSQL is not reachable at {PG['host']}:{PG['port']}: {' '.join(str(error).split())}")
    admin.autocommit = True
    name = f"health_{uuid.uuid4().hex[:12]}"
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


POSTGRES_DAGSTER_YAML = """\
storage:
  postgres:
    postgres_db:
      scheme: postgresql+psycopg2
      hostname: {env: DAGSTER_PG_HOST}
      port: {env: DAGSTER_PG_PORT}
      username: {env: DAGSTER_PG_USERNAME}
      password: {env: DAGSTER_PG_PASSWORD}
      db_name: {env: DAGSTER_PG_DB}
telemetry:
  enabled: false
"""


def test_a_postgresql_instance_answers_with_its_last_run(fresh, tmp_path, postgres_database):
    import dagster as dg

    dagster_home = tmp_path / "pg_dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text(POSTGRES_DAGSTER_YAML)
    password = uuid.uuid4().hex  # trust authentication ignores it; it must not show all the same
    env = fresh | {"DAGSTER_HOME": str(dagster_home), "DAGSTER_PG_HOST": PG["host"], "DAGSTER_PG_PORT": str(PG["port"]),
                   "DAGSTER_PG_USERNAME": PG["user"], "DAGSTER_PG_PASSWORD": password, "DAGSTER_PG_DB": postgres_database}

    result, report = _health(env)
    assert result.returncode == 0, result.stdout
    assert _checks(report)["instance"]["detail"] == f"PostgresRunStorage in {dagster_home}: no runs yet"

    # A run recorded in the database is what the check reads back.
    with pytest.MonkeyPatch.context() as patch:
        for name in ("DAGSTER_HOME", "DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USERNAME", "DAGSTER_PG_PASSWORD",
                     "DAGSTER_PG_DB"):
            patch.setenv(name, env[name])
        with dg.DagsterInstance.get() as instance:
            run = instance.create_run_for_job(dg.GraphDefinition("health_probe").to_job())
            run_id = run.run_id

    result, report = _health(env)
    assert result.returncode == 0
    assert _checks(report)["instance"]["detail"] == f"PostgresRunStorage in {dagster_home}: last run {run_id[:8]} NOT_STARTED"
    assert password not in result.stdout + result.stderr

    # No server on the port: the check fails within its bound and says why (Dagster's own error: "too many retries").
    port = _free_port()
    result, report = _health(env | {"DAGSTER_PG_PORT": str(port)}, "--timeout", "2")
    assert result.returncode == 1 and report["failed"] == ["instance"]
    assert f'"127.0.0.1", port {port} failed: Connection refused' in _checks(report)["instance"]["detail"]
    assert password not in result.stdout + result.stderr


def test_masking_covers_url_passwords_libpq_strings_and_known_secrets():
    secret = uuid.uuid4().hex
    text = (f"postgresql+psycopg2://scholar:{secret}@db:5432/dagster, rediss://:{secret}@cache:6380/1, "
            f"ducklake:postgres:dbname=lake host=db user=scholar password={secret}, https://api.example/?api_key={secret}&q=x, "
            f"raw {secret}")

    assert mask_secrets(text, []) == (
        "postgresql+psycopg2://scholar:***@db:5432/dagster, rediss://:***@cache:6380/1, "
        f"ducklake:postgres:dbname=lake host=db user=scholar password=*** https://api.example/?api_key=***&q=x, raw {secret}")
    assert secret not in mask_secrets(text, [secret]) and mask_secrets(text, [secret]).endswith("raw ***")
