"""`scholar-pipeline maintain`: keep the warehouse quick to read and its storage bounded.

Every landing replaces a partition in its own transaction. In DuckLake that is a new
snapshot and a new small Parquet file, and the replaced file stays for time travel: a
year of daily partitions on seven providers is thousands of each, and reads slow down
with the file count. Maintenance merges the small files, expires the snapshots older than
`keep_days` and deletes the files no snapshot needs any more, using DuckLake's own calls.
A DuckDB file only needs a checkpoint (deleted rows' space is reused by later writes).
Both run beside landings: DuckLake's calls are transactions of their own, and a landing
whose commit meets a merge of its partition's files tries again (warehouse.replace_partition);
merging never mixes partitions (`works` is partitioned by them). The DuckDB file is
checkpointed in the writers' queue.
"""

from __future__ import annotations

from scholar_pipeline.warehouse_backends import LAKE, DuckDBFile, DuckLake, Warehouse

TABLES = ("works", "provenance", "provider_usage", "unique_works", "review_counts")


def maintain(warehouse: Warehouse, keep_days: int, log=print) -> None:
    if isinstance(warehouse, DuckLake):
        _maintain_lake(warehouse, keep_days, log)
    elif isinstance(warehouse, DuckDBFile):
        _maintain_file(warehouse, log)
    else:
        raise TypeError(f"no maintenance for {type(warehouse).__name__}")


def _maintain_lake(lake: DuckLake, keep_days: int, log) -> None:
    with lake.write_connection() as con:
        before = _live_files(con)
        con.execute(f"CALL ducklake_merge_adjacent_files('{LAKE}')")
        expired = con.execute(f"CALL ducklake_expire_snapshots('{LAKE}', older_than => now() - to_days(?))",
                              [keep_days]).fetchall()
        deleted = con.execute(f"CALL ducklake_cleanup_old_files('{LAKE}', older_than => now() - to_days(?))",
                              [keep_days]).fetchall()
        after = _live_files(con)
    log(f"{lake.name}: {before} data files merged into {after}; {len(expired)} snapshots older than {keep_days} days "
        f"expired; {len(deleted)} files no snapshot needs deleted")


def _live_files(con) -> int:
    present = {name for (name,) in con.execute(f"SELECT table_name FROM duckdb_tables() WHERE database_name = '{LAKE}'").fetchall()}
    return sum(con.execute(f"SELECT count(*) FROM ducklake_list_files('{LAKE}', ?)", [table]).fetchone()[0]
               for table in TABLES if table in present)


def _maintain_file(file: DuckDBFile, log) -> None:
    if not file.exists():
        log(f"nothing to maintain: {file.name} does not exist yet")
        return
    before = file.database.stat().st_size
    with file.write_connection() as con:
        con.execute("CHECKPOINT")
    log(f"{file.name}: checkpointed ({before / 1e6:.1f} MB before, {file.database.stat().st_size / 1e6:.1f} MB after)")
