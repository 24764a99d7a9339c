"""The warehouse on DuckLake with its catalog in the real PostgreSQL here: run processes land partitions at once, with
no writer queue (a lock per partition only), exactly the simulator's records; the dataset and the `scholar-pipeline` commands read it; the
catalog is created once however many processes start on a fresh one; its password shows nowhere."""

import datetime as dt
import json
import multiprocessing
import os
import subprocess
import threading
import time
import traceback
from contextlib import closing
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scholar_pipeline.defs.dataset import build_dataset_assets
from scholar_pipeline.defs.resources import scholar_api_from_env, warehouse_from_env
from scholar_pipeline.defs.saved_searches import build_saved_search_assets
from scholar_pipeline.schema import WORKS_SCHEMA
from scholar_pipeline.warehouse import ProvenanceRow, ensure_tables, replace_partition, transaction
from scholar_pipeline.warehouse_backends import (
    DATA_PATH_ENV, WAREHOUSE_ENV, DuckDBFile, DuckLake, WarehouseUnreachable, warehouse_at,
)
from scholar_pipeline_tests.conftest import REPO_ROOT
from scholar_pipeline_tests.helpers import SEARCH, home, materialize, query_db
from scholar_pipeline_tests.postgres import pg_connect, pg_select
from scholar_pipeline_tests.test_scenarios import BIN, _run_in_parallel

# Trust auth here ignores it; set in PGPASSWORD too, which conftest's secret scan looks for in every stored file.
LAKE_PASSWORD = "lake-catalog-password-3f9c2a71e0"
DAYS = ["2024-03-01", "2024-03-02", "2024-03-03", "2024-03-04"]
PROVIDERS = ["openalex", "crossref"]


def _catalog(database: str) -> str:
    return f"dbname={database} host=127.0.0.1 user=postgres password={LAKE_PASSWORD}"


def _use_lake(database: str, data_path: str, monkeypatch) -> DuckLake:
    """The warehouse in DuckLake for this test and the processes it starts; the catalog's password in PGPASSWORD too,
    where the secret scan looks for it."""
    monkeypatch.setenv("PGPASSWORD", LAKE_PASSWORD)
    monkeypatch.setenv(WAREHOUSE_ENV, f"ducklake:postgres:{_catalog(database)}")
    monkeypatch.setenv(DATA_PATH_ENV, data_path)
    return DuckLake(_catalog(database), data_path)


@pytest.fixture
def ducklake_env(production_env, lake_database, tmp_path, monkeypatch):
    """The production instance (runs in parallel need PostgreSQL's run storage) with the warehouse in DuckLake."""
    return _use_lake(lake_database, str(tmp_path / "lake_files"), monkeypatch), lake_database


def _landed(lake: DuckLake, day: str, provider: str) -> list[str]:
    with lake.read_connection() as con:
        return sorted(r[0] for r in con.execute("SELECT provider_id FROM works WHERE partition_date = ? AND provider = ?",
                                                [day, provider]).fetchall())


def _expected(simulator, day: str, provider: str) -> list[str]:
    date = dt.date.fromisoformat(day)
    return sorted(simulator.apis[provider].record_ids(date, date, SEARCH.text))


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "scholar-pipeline"), *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_eight_parallel_partition_runs_land_the_simulators_records_and_everything_reads_the_lake(ducklake_env, simulator):
    lake, database = ducklake_env
    runs = _run_in_parallel([f"{day}|{provider}" for day in DAYS for provider in PROVIDERS])
    for run in runs:
        assert run.returncode == 0, run.stdout[-3000:]
        assert LAKE_PASSWORD not in run.stdout
    for day in DAYS:
        for provider in PROVIDERS:
            assert _landed(lake, day, provider) == _expected(simulator, day, provider), (day, provider)
    with lake.read_connection() as con:
        landings = con.execute("SELECT count(*), count(DISTINCT (provider, partition_date)), sum(rows_landed) "
                               "FROM provenance").fetchone()
        works = con.execute("SELECT count(*) FROM works").fetchone()[0]
    assert landings == (8, 8, works)
    # Nothing went to the DuckDB file or its writer lock: the runs wrote to the lake, each on its own.
    assert not (home() / "scholar.duckdb").exists() and not (home() / "locks" / "duckdb_writer.lock").exists()
    data_files = list(Path(lake.data_path).rglob("*.parquet"))
    live_files = pg_select(database, "SELECT path FROM ducklake_data_file WHERE end_snapshot IS NULL")
    assert data_files and live_files and {Path(path).name for (path,) in live_files} <= {p.name for p in data_files}

    # A partition run again replaces its rows in the lake: one copy, two landings on record.
    again = _run_in_parallel([f"{DAYS[0]}|openalex"])[0]
    assert again.returncode == 0, again.stdout[-3000:]
    assert _landed(lake, DAYS[0], "openalex") == _expected(simulator, DAYS[0], "openalex")

    # The commands read the lake.
    audit = _cli("audit")
    assert audit.returncode == 0 and "everything matches what was recorded" in audit.stdout, audit.stdout + audit.stderr
    rebuild = _cli("rebuild")
    assert rebuild.returncode == 0 and "8 partitions rebuilt, 0 written, 0 different" in rebuild.stdout, rebuild.stdout
    health = _cli("health", "--json")
    warehouse = {c["name"]: c for c in json.loads(health.stdout)["checks"]}["warehouse"]
    assert warehouse["ok"] and f"{works} works rows, 9 landings" in warehouse["detail"], warehouse
    assert "password=***" in warehouse["detail"]
    for result in (audit, rebuild, health):
        assert LAKE_PASSWORD not in result.stdout + result.stderr

    # The dataset is built from the lake, into the lake.
    with dg.instance_for_test() as instance:
        result = dg.materialize([*build_saved_search_assets(SEARCH), *build_dataset_assets([SEARCH])], instance=instance,
                                selection=dg.AssetSelection.groups("dataset"),
                                resources={"scholar_api": scholar_api_from_env(), "warehouse": warehouse_from_env()})
    assert result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["every_works_row_once"] and checks["manifest_verifies"]
    with lake.read_connection() as con:
        sources = con.execute("SELECT sum(len(sources)) FROM unique_works").fetchone()[0]
        counted = con.execute("SELECT records_identified FROM review_counts WHERE query = ? AND period = 'all' "
                              "AND provider = '(all)'", [SEARCH.name]).fetchone()[0]
    assert sources == works == counted
    manifest = json.loads((home() / "exports" / "manifest.json").read_text())
    assert manifest["tables"]["works"] == works

    # Merged files, then runs that re-land the same partitions at the same moment: each lands, on a second try if
    # its commit met another's, and each partition holds its records once.
    assert _cli("maintain", "--keep-days", "0").returncode == 0
    again = [f"{day}|openalex" for day in DAYS[:2]] * 2
    for run in _run_in_parallel(again):
        assert run.returncode == 0, run.stdout[-3000:]
    for day in DAYS:
        for provider in PROVIDERS:
            assert _landed(lake, day, provider) == _expected(simulator, day, provider), (day, provider)
    assert pg_select(database, "SELECT count(*) FROM ducklake_data_file f JOIN ducklake_table t USING (table_id) "
                               "WHERE t.table_name = 'works' AND f.end_snapshot IS NULL AND t.end_snapshot IS NULL")[0][0] == 8


def _first_writer(catalog: str, data_path: str, start, results) -> None:
    results.put("ready")
    start.wait()
    try:
        with DuckLake(catalog, data_path).write_connection() as con:
            results.put(con.execute("SELECT count(*) FROM provenance").fetchone()[0])
    except Exception as error:
        results.put(f"{type(error).__name__}: {error}")


def test_processes_opening_a_fresh_catalog_at_once_create_it_once(lake_database, tmp_path):
    """Without the advisory lock, DuckLake's first ATTACH from several processes at once fails in all but one of them
    on PostgreSQL's unique index of type names."""
    context = multiprocessing.get_context("spawn")
    start, results = context.Event(), context.Queue()
    processes = [context.Process(target=_first_writer, args=(_catalog(lake_database), str(tmp_path / "files"), start, results))
                 for _ in range(4)]
    for process in processes:
        process.start()
    assert [results.get(timeout=120) for _ in processes] == ["ready"] * len(processes)  # all imported, all waiting
    start.set()
    assert [results.get(timeout=120) for _ in processes] == [0, 0, 0, 0]
    for process in processes:
        process.join(timeout=30)
    tables = pg_select(lake_database, "SELECT table_name FROM ducklake_table WHERE end_snapshot IS NULL ORDER BY 1")
    assert tables == [("provenance",), ("provider_usage",), ("works",)]


@pytest.fixture
def s3_store(monkeypatch):
    """moto's S3 server on loopback, with a bucket, reached as any S3-compatible store is: AWS_ENDPOINT_URL."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    store = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "scholar-test-key-id",
             "AWS_SECRET_ACCESS_KEY": "s3-secret-access-key-9b1d47c2e8", "AWS_REGION": "eu-west-1"}
    for name, value in store.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("s3", endpoint_url=store["AWS_ENDPOINT_URL"], region_name="eu-west-1",
                          aws_access_key_id=store["AWS_ACCESS_KEY_ID"], aws_secret_access_key=store["AWS_SECRET_ACCESS_KEY"])
    client.create_bucket(Bucket="scholar-lake", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    try:
        yield client
    finally:
        server.stop()


@pytest.mark.slow
@pytest.mark.writes_secret_on_purpose("aws_credentials")  # the profile the AWS credential chain is to find
def test_a_partition_lands_with_its_data_files_in_an_s3_compatible_store(pipeline_env, simulator, lake_database, s3_store,
                                                                        tmp_path, monkeypatch):
    lake = _use_lake(lake_database, "s3://scholar-lake/warehouse/", monkeypatch)
    materialize(DAYS[0], "openalex")
    materialize(DAYS[0], "openalex")  # again: the rows are replaced, not added
    assert _landed(lake, DAYS[0], "openalex") == _expected(simulator, DAYS[0], "openalex")
    stored = [item["Key"] for item in s3_store.list_objects_v2(Bucket="scholar-lake")["Contents"]]
    assert any(key.startswith("warehouse/main/works/") and key.endswith(".parquet") for key in stored)
    live = pg_select(lake_database, "SELECT path FROM ducklake_data_file WHERE end_snapshot IS NULL")
    assert live and {Path(path).name for (path,) in live} <= {Path(key).name for key in stored}
    assert not (home() / "scholar.duckdb").exists()

    # No key in the environment: the AWS credential chain finds the profile in AWS_SHARED_CREDENTIALS_FILE.
    profile = tmp_path / "aws_credentials"
    profile.write_text(f"[default]\naws_access_key_id = {os.environ['AWS_ACCESS_KEY_ID']}\n"
                       f"aws_secret_access_key = {os.environ['AWS_SECRET_ACCESS_KEY']}\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(profile))
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    assert _landed(lake, DAYS[0], "openalex") == _expected(simulator, DAYS[0], "openalex")
    with lake.read_connection() as con:
        (secret,) = con.execute("SELECT secret_string FROM duckdb_secrets() WHERE name = 'scholar_pipeline_s3'").fetchone()
    assert "provider=credential_chain" in secret and "key_id=scholar-test-key-id" in secret
    assert os.environ["AWS_SECRET_ACCESS_KEY"] not in secret  # DuckDB redacts it


def test_the_location_chooses_the_backend_and_a_password_is_never_shown(tmp_path):
    assert warehouse_at(None, None, tmp_path) == DuckDBFile(tmp_path / "scholar.duckdb", tmp_path)
    lake = warehouse_at(f"ducklake:postgres:{_catalog('x')}", "s3://bucket/lake/", tmp_path)
    assert lake == DuckLake(_catalog("x"), "s3://bucket/lake/")
    assert lake.name == "ducklake:postgres:dbname=x host=127.0.0.1 user=postgres password=*** (data files in s3://bucket/lake/)"
    assert LAKE_PASSWORD not in repr(lake) + str(lake)
    uri = warehouse_at(f"ducklake:postgres:postgresql://scholar:{LAKE_PASSWORD}@db:5432/lake", None, tmp_path)
    assert uri.name == "ducklake:postgres:postgresql://scholar:***@db:5432/lake"
    for wrong in (f"postgres:{_catalog('x')}", "ducklake:postgres:  ", "ducklake:sqlite:lake.db"):
        with pytest.raises(ValueError, match=WAREHOUSE_ENV) as error:
            warehouse_at(wrong, None, tmp_path)
        assert LAKE_PASSWORD not in str(error.value)


def test_an_unreachable_catalog_says_where_without_the_password(tmp_path):
    lake = DuckLake(f"dbname=nowhere host=127.0.0.1 port=1 user=postgres password={LAKE_PASSWORD}", str(tmp_path))
    for attempt in (lake.exists, lambda: lake.write_connection().__enter__(), lambda: lake.read_connection().__enter__()):
        with pytest.raises(WarehouseUnreachable) as error:
            attempt()
        assert "port=1" in str(error.value) and LAKE_PASSWORD not in str(error.value)
        assert "password=***" in str(error.value)


def test_a_catalog_lost_while_connected_is_reported_without_the_password(lake_database, tmp_path):
    """DuckDB quotes the whole connection string when it cannot reconnect to the catalog; run logs show that error."""
    lake = DuckLake(_catalog(lake_database), str(tmp_path / "lake_files"))
    with closing(pg_connect()) as admin:
        with pytest.raises(duckdb.Error) as raised, lake.write_connection() as con:
            ensure_tables(con)
            admin.cursor().execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (lake_database,))
            admin.cursor().execute(f'ALTER DATABASE "{lake_database}" RENAME TO "{lake_database}_lost"')
            try:
                with pytest.raises(duckdb.Error, match="server closed the connection"):
                    con.execute("SELECT count(*) FROM works")
                con.execute("SELECT count(*) FROM works")  # connects again: fails, quoting the connection string
            finally:
                admin.cursor().execute(f'ALTER DATABASE "{lake_database}_lost" RENAME TO "{lake_database}"')
    shown = "".join(traceback.format_exception(raised.value))
    assert "Unable to connect to Postgres" in shown and "password=***" in shown and LAKE_PASSWORD not in shown


def test_a_new_catalog_without_a_data_path_is_refused_with_what_to_set(lake_database):
    with pytest.raises(WarehouseUnreachable, match=DATA_PATH_ENV):
        DuckLake(_catalog(lake_database)).write_connection().__enter__()


@pytest.mark.slow
def test_maintenance_merges_the_small_files_and_deletes_the_unneeded_keeping_every_row(pipeline_env, simulator, lake_database,
                                                                                     tmp_path, monkeypatch):
    lake = _use_lake(lake_database, str(tmp_path / "lake_files"), monkeypatch)
    for day in DAYS[:3]:
        materialize(day, "openalex")
    materialize(DAYS[0], "openalex")  # replaced: its first file is needed only by older snapshots
    with lake.read_connection() as con:
        rows = con.execute("SELECT * EXCLUDE (retrieved_at) FROM works ORDER BY ALL").fetchall()
    files = {p.name for p in Path(lake.data_path).rglob("*.parquet")}
    live = {Path(path).name for (path,) in pg_select(lake_database, "SELECT path FROM ducklake_data_file WHERE end_snapshot IS NULL")}
    assert len(live) > 3 and files > live

    result = _cli("maintain", "--keep-days", "0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("ducklake:postgres:dbname=") and LAKE_PASSWORD not in result.stdout
    after = {Path(path).name for (path,) in pg_select(lake_database, "SELECT path FROM ducklake_data_file WHERE end_snapshot IS NULL")}
    assert len(after) < len(live)
    assert {p.name for p in Path(lake.data_path).rglob("*.parquet")} == after  # nothing else left on disk
    with lake.read_connection() as con:
        assert con.execute("SELECT * EXCLUDE (retrieved_at) FROM works ORDER BY ALL").fetchall() == rows
    audit = _cli("audit")
    assert audit.returncode == 0, audit.stdout


def test_maintenance_of_the_duckdb_file_checkpoints_it(pipeline_env, simulator):
    result = _cli("maintain")
    assert result.returncode == 0 and result.stdout.startswith("nothing to maintain: ")
    materialize(DAYS[0], "openalex")
    rows = query_db("SELECT * FROM works ORDER BY ALL")
    result = _cli("maintain")
    assert result.returncode == 0 and f"{home() / 'scholar.duckdb'}: checkpointed (" in result.stdout, result.stdout
    assert query_db("SELECT * FROM works ORDER BY ALL") == rows


class _CommitsAnotherLandingFirst:
    """Staged rows whose file name, asked for between the swap's DELETE and its COMMIT, first lets another transaction
    commit a DELETE of the same partition: the swap's COMMIT then meets DuckLake's conflict, once."""

    def __init__(self, path: Path, lake: DuckLake, key: list):
        self._path, self.lake, self.key, self.asked = path, lake, key, 0

    @property
    def path(self) -> Path:
        self.asked += 1
        if self.asked == 1:
            with self.lake.write_connection() as other, transaction(other):
                other.execute("DELETE FROM works WHERE query = ? AND provider = ? AND partition_date = ?", self.key)
        return self._path


class _SlowRows:
    """Staged rows whose file name, asked for between the swap's DELETE and its INSERT, takes a while to come."""

    def __init__(self, path: Path, row_count: int, started: threading.Event):
        self._path, self.row_count, self.started = path, row_count, started
        self.duplicates_dropped, self.output_hash = 0, f"rows-{row_count}"

    @property
    def path(self) -> Path:
        self.started.set()
        time.sleep(1.5)
        return self._path


def _staged(path: Path, day: dt.date, ids: list[str]) -> Path:
    pq.write_table(pa.Table.from_pylist([{"query": "q", "provider": "openalex", "partition_date": day, "provider_id": i,
                                          "record_hash": f"h-{i}"} for i in ids], schema=WORKS_SCHEMA), path)
    return path


def test_two_first_landings_of_a_partition_at_once_leave_the_rows_of_the_newest(lake_database, tmp_path):
    """Neither deletes what the other inserts, so DuckLake alone would commit both: the second waits for the first."""
    lake = DuckLake(_catalog(lake_database), str(tmp_path / "files"))
    day, key = dt.date(2024, 3, 1), ("q", "openalex", dt.date(2024, 3, 1))
    with lake.write_connection() as con:
        ensure_tables(con)
    first_in, landed = threading.Event(), {}

    def land(name: str, rows) -> None:
        provenance = ProvenanceRow(query="q", provider="openalex", partition_date=day, run_id=name, manifest_path=name,
                                   request_urls=[], page_sha256=[], pages=0, bytes=0, cache_hits=0, total_reported=None,
                                   records_fetched=rows.row_count, rows_landed=rows.row_count, duplicates_dropped=0,
                                   input_hash=name, content_hash="c", output_hash=rows.output_hash, schema_version="s",
                                   code_version="c", raw_run_id=None, retrieved_at=dt.datetime.now(dt.timezone.utc),
                                   landed_at=dt.datetime.now(dt.timezone.utc))
        with lake.landing_connection(key) as con:
            landed[name] = replace_partition(con, rows, provenance)

    first = threading.Thread(target=land, args=("first", _SlowRows(_staged(tmp_path / "a.parquet", day, ["W1", "W2", "W3"]), 3,
                                                                    first_in)))
    first.start()
    assert first_in.wait(30)  # the first landing is inside its transaction
    second = SimpleNamespace(path=_staged(tmp_path / "b.parquet", day, ["W4", "W5"]), row_count=2, duplicates_dropped=0,
                             output_hash="rows-2")
    land("second", second)
    first.join(30)
    assert landed == {"first": 3, "second": 2}
    with lake.read_connection() as con:
        assert con.execute("SELECT provider_id FROM works ORDER BY 1").fetchall() == [("W4",), ("W5",)]
        newest = con.execute("SELECT run_id, output_hash FROM provenance ORDER BY landed_at DESC LIMIT 1").fetchone()
    assert newest == ("second", "rows-2")


def test_a_landing_that_meets_another_on_the_same_partition_commits_on_a_second_try(lake_database, tmp_path):
    lake = DuckLake(_catalog(lake_database), str(tmp_path / "files"))
    day, key = dt.date(2024, 3, 1), ["q", "openalex", dt.date(2024, 3, 1)]
    staged = tmp_path / "staged.parquet"
    pq.write_table(pa.Table.from_pylist([{"query": "q", "provider": "openalex", "partition_date": day,
                                          "provider_id": f"W{i}", "record_hash": f"h{i}"} for i in range(3)],
                                        schema=WORKS_SCHEMA), staged)
    plain = SimpleNamespace(path=staged, row_count=3, duplicates_dropped=0, output_hash="o")
    provenance = ProvenanceRow(query="q", provider="openalex", partition_date=day, run_id=None, manifest_path="m",
                               request_urls=[], page_sha256=[], pages=0, bytes=0, cache_hits=0, total_reported=None,
                               records_fetched=3, rows_landed=3, duplicates_dropped=0, input_hash="i", content_hash="c",
                               output_hash="o", schema_version="s", code_version="c", raw_run_id=None,
                               retrieved_at=dt.datetime.now(dt.timezone.utc), landed_at=dt.datetime.now(dt.timezone.utc))
    with lake.write_connection() as con:
        assert replace_partition(con, plain, provenance) == 3  # the partition's first file
    said: list[str] = []
    contested = _CommitsAnotherLandingFirst(staged, lake, key)
    with lake.write_connection() as con:
        assert replace_partition(con, contested, provenance, log=said.append) == 3
    assert contested.asked == 2 and len(said) == 1 and "met another transaction" in said[0] and "1 of 5" in said[0]
    with lake.read_connection() as con:
        assert con.execute("SELECT provider_id FROM works ORDER BY 1").fetchall() == [("W0",), ("W1",), ("W2",)]
        assert con.execute("SELECT count(*) FROM provenance").fetchone()[0] == 2
