"""SQL text that DuckDB cannot take as a parameter (paths in COPY, ATTACH, EXPORT; secrets' options)."""

from __future__ import annotations

from pathlib import Path


def sql_string(value: str | Path) -> str:
    """`value` as a quoted SQL string literal: `it's` -> `'it''s'`."""
    return "'" + str(value).replace("'", "''") + "'"
