"""This machine's PostgreSQL (127.0.0.1:5432, trust auth; .ci/run starts it) for the production-instance, backup,
DuckLake and Celery tests: connections and fresh databases that are dropped afterwards."""

import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import psycopg2
import pytest

DEPLOY_DAGSTER_YAML = Path(__file__).resolve().parent.parent / "deploy" / "dagster.yaml"
PG = {"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": "5432", "DAGSTER_PG_USERNAME": "postgres", "DAGSTER_PG_PASSWORD": ""}


def pg_connect(dbname: str = "postgres"):
    connection = psycopg2.connect(host=PG["DAGSTER_PG_HOST"], port=int(PG["DAGSTER_PG_PORT"]), user=PG["DAGSTER_PG_USERNAME"],
                                  dbname=dbname)
    connection.autocommit = True  # CREATE/DROP DATABASE refuse to run in a transaction
    return connection


def pg_select(dbname: str, sql: str, params=None) -> list[tuple]:
    with closing(pg_connect(dbname)) as connection, connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


@contextmanager
def fresh_database(prefix: str) -> Iterator[str]:
    """A fresh PostgreSQL database, dropped afterwards (with any connection a killed service left)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        connection = pg_connect()
    except psycopg2.OperationalError as error:
        pytest.fail(f"PostgreSQL is not running on 127.0.0.1:5432 (.ci/run starts it): {error}")
    with closing(connection), connection.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with closing(pg_connect()) as connection, connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
