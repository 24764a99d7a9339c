"""DuckDB extensions loaded from their PyPI packages (`duckdb-ext-<name>`), never downloaded at run time.

DuckDB's `INSTALL` fetches from extensions.duckdb.org, which a run worker behind a firewall
(and this project's CI) cannot reach; the `duckdb-ext-*` wheels carry the same files for
the pinned DuckDB under `duckdb_ext/extensions/v<version>/<platform>/`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import duckdb


class ExtensionMissing(RuntimeError):
    """The extension's wheel is not installed for this DuckDB and platform."""


def load_extension(con: duckdb.DuckDBPyConnection, name: str, package: str) -> None:
    """LOAD `name` (as DuckDB names it: `postgres_scanner`, `ducklake`) from the wheel `package`."""
    platform, = con.execute("PRAGMA platform").fetchone()
    folder = f"v{duckdb.__version__}/{platform}"
    spec = importlib.util.find_spec("duckdb_ext")
    roots = list(spec.submodule_search_locations) if spec and spec.submodule_search_locations else []
    for root in roots:
        path = Path(root) / "extensions" / folder / f"{name}.duckdb_extension"
        if path.is_file():
            con.execute(f"LOAD '{path}'")
            return
    raise ExtensionMissing(f"the DuckDB extension {name} for {folder} is not installed: pip install '{package}' "
                           f"(the version built for duckdb {duckdb.__version__})")
