"""`scholar-pipeline usage`: what the fetches spent at each provider, per day (UTC, the day of the fetch).

Read from the warehouse's `provider_usage` (one row per fetched partition, landed or
failed): requests sent, cache hits, retries, errors, throttled (429s, and OpenAlex's 403 "Rate limit exceeded"),
the USD cost the provider
stated, and the quota it last reported that day (OpenAlex's calls and USD budget left,
CORE's remaining tokens).
"""

from __future__ import annotations

import duckdb

from scholar_pipeline.warehouse import has_table

COLUMNS = ("day", "provider", "fetches", "failed", "requests", "cache_hits", "retries", "errors", "throttled",
           "cost_usd", "quota_remaining", "quota_limit", "remaining_usd")
USAGE_SQL = """
SELECT CAST(timezone('UTC', recorded_at) AS DATE) AS day, provider, count(*) AS fetches,
       count(*) FILTER (WHERE outcome = 'failed') AS failed,
       sum(requests) AS requests, sum(cache_hits) AS cache_hits, sum(retries) AS retries, sum(errors) AS errors,
       sum(throttled) AS throttled, round(sum(cost_usd), 6) AS cost_usd,
       arg_max(quota_remaining, recorded_at) FILTER (WHERE quota_remaining IS NOT NULL) AS quota_remaining,
       arg_max(quota_limit, recorded_at) FILTER (WHERE quota_limit IS NOT NULL) AS quota_limit,
       arg_max(remaining_usd, recorded_at) FILTER (WHERE remaining_usd IS NOT NULL) AS remaining_usd
FROM provider_usage
WHERE CAST(timezone('UTC', recorded_at) AS DATE) > CAST(timezone('UTC', now()) AS DATE) - CAST(? AS INTEGER)
GROUP BY ALL
ORDER BY day DESC, provider
"""


def usage_by_day(con: duckdb.DuckDBPyConnection, days: int) -> list[dict]:
    """One row per (day, provider) of the last `days` UTC calendar days (today is one), newest first; none if nothing
    was ever fetched."""
    if not has_table(con, "provider_usage"):
        return []
    return [dict(zip(COLUMNS, row)) for row in con.execute(USAGE_SQL, [days]).fetchall()]


def usage_table(rows: list[dict]) -> list[str]:
    """The rows as aligned text lines, a header first; an empty quota shows as `-`."""
    header = ["day", "provider", "fetches", "failed", "requests", "cache hits", "retries", "errors", "throttled", "cost USD",
              "quota left", "USD left"]
    lines = [[str(row["day"]), row["provider"], *(str(row[n]) for n in ("fetches", "failed", "requests", "cache_hits",
              "retries", "errors", "throttled")), f"{row['cost_usd']:.4f}", _quota(row), _shown(row["remaining_usd"])]
             for row in rows]
    widths = [max(len(cells[i]) for cells in [header, *lines]) for i in range(len(header))]
    return ["  ".join(cell.ljust(width) if i < 2 else cell.rjust(width) for i, (cell, width) in enumerate(zip(cells, widths)))
            for cells in [header, *lines]]


def _quota(row: dict) -> str:
    if row["quota_remaining"] is None:
        return "-"
    return f"{row['quota_remaining']}/{row['quota_limit']}" if row["quota_limit"] is not None else str(row["quota_remaining"])


def _shown(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
