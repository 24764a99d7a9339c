"""Monitoring a field: the works each saved search finds new each day, per provider, and whether yesterday landed.

The `dataset/monitoring` asset shows the counts as a chart and a short table in its metadata;
its freshness check fails when a scheduled search's partitions of yesterday are missing.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg
import duckdb
import pyarrow as pa

from scholar_pipeline.metadata import markdown_cell
from scholar_pipeline.providers import PROVIDERS
from scholar_pipeline.queries import SavedSearch

ANY_PROVIDER = "(any)"  # the `provider` of the rows that count each new work once, whichever providers found it
DAILY_NEW_WORKS_SCHEMA = pa.schema(
    [("query", pa.string()), ("partition_date", pa.date32()), ("provider", pa.string()), ("new_works", pa.int64())]
)

# `found`: each day a search found a work, and through which provider; two records of one provider for the same work
# (a preprint and its version, a provider's own duplicate) are one finding. "New" is decided over the whole history
# before the window is applied, so a window never makes an old work look new.
_DAILY_NEW_WORKS_SQL = f"""
WITH found AS (
    SELECT DISTINCT work_id, source.query AS query, source.provider AS provider, source.partition_date AS partition_date
    FROM (SELECT work_id, unnest(sources) AS source FROM unique_works)
),
first_found AS (
    SELECT work_id, query, min(partition_date) AS partition_date FROM found GROUP BY work_id, query
),
new_works AS (
    SELECT query, partition_date, provider, count(*) AS new_works
    FROM found JOIN first_found USING (work_id, query, partition_date)
    GROUP BY query, partition_date, provider
    UNION ALL
    SELECT query, partition_date, '{ANY_PROVIDER}' AS provider, count(*) AS new_works
    FROM first_found GROUP BY query, partition_date
)
SELECT query, partition_date, provider, new_works FROM new_works
WHERE partition_date >= coalesce(?::DATE, partition_date) AND partition_date <= coalesce(?::DATE, partition_date)
ORDER BY query, partition_date, provider
"""


def daily_new_works(con: duckdb.DuckDBPyConnection, first: dt.date | None = None, last: dt.date | None = None) -> pa.Table:
    """New works per (saved search, partition date, provider), from `unique_works.sources`, days `first`..`last`.

    A work is new for a search on the first partition date any provider found it for that
    search; found again later (by any provider) it is not new again. On its first day it
    counts once for each provider that found it that day, so the provider rows of a day can
    add up to more than the day's new works: the `(any)` row (ANY_PROVIDER) of the day
    counts each new work once. A work found by two searches is new for each of them. Days
    without a new work have no rows (a search that found nothing has none at all). Ordered
    by query, day, provider (`(any)` first)."""
    table = con.execute(_DAILY_NEW_WORKS_SQL, [first, last]).fetch_arrow_table()
    return table.cast(DAILY_NEW_WORKS_SCHEMA)


# ---------------------------------------------------------------------------------------------------------------------
# The chart: a PNG in markdown metadata, which the Dagster UI renders inline (it has no Vega-Lite metadata type).

CHART_ALT = "new works per day, per saved search and provider"
BARS_UP_TO = 14  # days drawn as groups of bars; more would make each bar too thin to see
WEEKLY_AFTER_DAYS = 92  # beyond about a quarter, daily lines of seven providers are noise: the chart sums weeks
_FACET_INCHES = (9.0, 1.9)
_DPI = 80
_OTHER_PROVIDER_COLOUR = "#999999"
PALETTE_COLOURS = 64


def chart_markdown(table: pa.Table) -> str:
    """The counts of `daily_new_works` as a PNG embedded in markdown, for `dg.MetadataValue.md`."""
    if table.num_rows == 0:
        return "_no new works in this window_"
    return f"![{CHART_ALT}](data:image/png;base64,{base64.b64encode(chart_png(table)).decode('ascii')})"


def chart_png(table: pa.Table) -> bytes:
    """One panel per saved search, a colour per provider (the same in every panel and run), and the search's new works
    counted once in dashed black; days on x, days without a new work drawn as zero.

    Up to BARS_UP_TO days, each day is a group of bars, one per provider, under a dashed
    outline as high as the day's new works: lines would hide each other where providers
    found as many. Longer windows draw a line per provider, and beyond WEEKLY_AFTER_DAYS
    each point sums the seven days ending on it, counted back from the last day, so every
    point is a whole week (up to six of the oldest days are left out). Drawn on an Agg
    canvas without pyplot: no display, and no global figure state shared between threads."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, date2num
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedFormatter, FixedLocator

    series = _series(table)
    queries = sorted({query for query, _ in series})
    first, last = min(table["partition_date"].to_pylist()), max(table["partition_date"].to_pylist())
    days = (last - first).days + 1
    step = 7 if days > WEEKLY_AFTER_DAYS else 1
    # Points at the last day of each bin, counted back from `last`; a week that began before `first` is left out, as
    # its few days would draw a dip that is not one.
    ends = [last - dt.timedelta(days=k * step) for k in range(days // step)][::-1]
    x = date2num(ends)
    bars = len(ends) <= BARS_UP_TO

    width, height = _FACET_INCHES
    figure = Figure(figsize=(width, 0.6 + height * len(queries)), dpi=_DPI, layout="constrained")
    axes = figure.subplots(len(queries), 1, sharex=True, squeeze=False)[:, 0]
    drawn: dict[str, object] = {}
    for ax, query in zip(axes, queries):
        providers = [p for p in sorted((p for q, p in series if q == query), key=_provider_order) if p != ANY_PROVIDER]
        for index, provider in enumerate([ANY_PROVIDER, *providers]):
            counts = series[(query, provider)]
            values = [sum(counts.get(end - dt.timedelta(days=d), 0) for d in range(step)) for end in ends]
            if provider == ANY_PROVIDER and bars:
                drawn[provider] = ax.bar(x, values, width=0.9, fill=False, edgecolor="black", linestyle="--",
                                         linewidth=1.2, zorder=3)
            elif provider == ANY_PROVIDER:
                (drawn[provider],) = ax.plot(x, values, color="black", linestyle="--", linewidth=1.4, zorder=3)
            elif bars:
                bar_width = 0.8 / len(providers)
                drawn[provider] = ax.bar(x - 0.4 + (index - 0.5) * bar_width, values, width=bar_width,
                                         color=_colour(provider), zorder=2)
            else:
                (drawn[provider],) = ax.plot(x, values, color=_colour(provider), linewidth=1.1, zorder=2)
        ax.set_title(query, loc="left", fontsize=10)
        ax.set_ylabel("new works / week" if step == 7 else "new works / day", fontsize=8)
        ax.set_ylim(bottom=0)
        ax.yaxis.get_major_locator().set_params(integer=True)
        ax.grid(axis="y", linewidth=0.4, alpha=0.5)
        ax.tick_params(labelsize=8)
    if bars:  # each day named as its partitions are, or as `Mar 01` under the year when the ISO dates would overlap
        short = len(ends) > 7
        axes[-1].xaxis.set_major_locator(FixedLocator(x))
        axes[-1].xaxis.set_major_formatter(FixedFormatter([f"{end:%b %d}" if short else end.isoformat() for end in ends]))
        if short:
            axes[-1].set_xlabel("–".join(sorted({str(ends[0].year), str(ends[-1].year)})), fontsize=8)
        axes[-1].set_xlim(x[0] - 0.6, x[-1] + 0.6)
    else:
        locator = AutoDateLocator(minticks=2, maxticks=10)
        axes[-1].xaxis.set_major_locator(locator)
        axes[-1].xaxis.set_major_formatter(ConciseDateFormatter(locator))
    labels = sorted(drawn, key=_provider_order)
    figure.legend([drawn[p] for p in labels], [_legend_label(p) for p in labels], loc="outside upper center",
                  ncols=min(len(labels), 8), fontsize=8, frameon=False)
    return _png(figure)


def _png(figure) -> bytes:
    """The figure drawn on an Agg canvas and stored with a palette of PALETTE_COLOURS: lines and bars on white need
    few colours, and the palette makes a year of seven providers about a quarter of its size in full colour (50 KB, not 230 KB)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    image = Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba(), "raw", "RGBA", 0, 1).convert("RGB")
    buffer = io.BytesIO()
    image.quantize(colors=PALETTE_COLOURS, method=Image.Quantize.FASTOCTREE).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _series(table: pa.Table) -> dict[tuple[str, str], dict[dt.date, int]]:
    series: dict[tuple[str, str], dict[dt.date, int]] = {}
    for row in table.select(["query", "provider", "partition_date", "new_works"]).to_pylist():
        series.setdefault((row["query"], row["provider"]), {})[row["partition_date"]] = row["new_works"]
    return series


def _provider_order(provider: str) -> tuple[int, str]:
    """`(any)` first, then the registry's order (so colours and columns never move), then any other provider."""
    names = list(PROVIDERS)
    if provider == ANY_PROVIDER:
        return (-1, provider)
    return (names.index(provider), provider) if provider in names else (len(names), provider)


def _colour(provider: str) -> str | tuple[float, float, float, float]:
    from matplotlib import colormaps

    names = list(PROVIDERS)
    if provider not in names:  # a provider since removed from the registry, still in old rows
        return _OTHER_PROVIDER_COLOUR
    return colormaps["tab10"](names.index(provider))


def _legend_label(provider: str) -> str:
    return "any provider (each work once)" if provider == ANY_PROVIDER else provider


def summary_markdown(table: pa.Table, days: int = 7, last: dt.date | None = None) -> str:
    """A markdown table of the new works of the last `days` days up to `last` (default: the table's last day), one row
    per saved search and day, newest first: the day's new works counted once, then per provider (zero when none)."""
    if table.num_rows == 0:
        return "_no new works in this window_"
    last = last or max(table["partition_date"].to_pylist())
    shown = [last - dt.timedelta(days=d) for d in range(days)]
    series = _series(table)
    providers = sorted({p for _, p in series if p != ANY_PROVIDER}, key=_provider_order)
    lines = ["| search | day | new works | " + " | ".join(providers) + " |", "|---|---|---:|" + "---:|" * len(providers)]
    for query in sorted({q for q, _ in series}):
        for day in shown:
            counts = [series.get((query, p), {}).get(day, 0) for p in (ANY_PROVIDER, *providers)]
            lines.append(f"| {markdown_cell(query)} | {day.isoformat()} | " + " | ".join(map(str, counts)) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------------
# Freshness: yesterday's partitions of every scheduled search.


@dataclass(frozen=True)
class LatePartition:
    """A partition of yesterday that has not landed, and what a person does about it."""

    query: str
    provider: str
    day: dt.date
    action: str

    @property
    def partition_key(self) -> str:
        """As the Dagster UI and `--partition` write it (dimensions sort by name: date, then provider)."""
        return f"{self.day.isoformat()}|{self.provider}"


def late_partitions(con: duckdb.DuckDBPyConnection, searches: Sequence[SavedSearch], today: dt.date) -> list[LatePartition]:
    """Each (search, provider) whose partition of `today - 1` has no `provenance` row, for every search that starts
    on or before that day; ordered by search, then provider as the search lists them.

    Landed means a landing was recorded, whatever it held: a day on which a provider had no
    work for the search lands with zero rows and is on time. Every search has a daily
    schedule whose tick (04:00 UTC) fetches a window ending yesterday, so call this once
    that tick's run has had time to finish; before it, yesterday is missing by design."""
    yesterday = today - dt.timedelta(days=1)
    landed = _landed(con, yesterday)
    late = []
    for search in _scheduled(searches, yesterday):
        missing = [p for p in search.providers if (search.name, p) not in landed]
        whole_search = len(missing) == len(search.providers)
        late += [LatePartition(search.name, provider, yesterday, _what_to_do(search.name, provider, yesterday, today, whole_search))
                 for provider in missing]
    return late


def _scheduled(searches: Sequence[SavedSearch], day: dt.date) -> list[SavedSearch]:
    """The searches that have a partition of `day` (a search starting later has none yet)."""
    return [search for search in searches if search.start_date <= day]


def _landed(con: duckdb.DuckDBPyConnection, day: dt.date) -> set[tuple[str, str]]:
    try:
        rows = con.execute("SELECT DISTINCT query, provider FROM provenance WHERE partition_date = ?", [day]).fetchall()
    except duckdb.CatalogException:  # a warehouse where nothing ever landed has no provenance table yet
        return set()
    return set(rows)


def _what_to_do(query: str, provider: str, day: dt.date, today: dt.date, whole_search: bool) -> str:
    key = f"{day.isoformat()}|{provider}"
    materialize = (f"materialize partition {key} of group {query}: dagster asset materialize -m scholar_pipeline.definitions "
                   f"--select 'group:{query}' --partition '{key}'")
    if whole_search:
        return (f"no provider of {query} landed {day}: check that schedule {query}_daily_schedule is on and that its run "
                f"{query}@{today} succeeded, or {materialize}")
    return f"the other providers of {query} landed {day}, {provider} did not: read its failure in run {query}@{today}, then {materialize}"


def freshness_metadata(late: Sequence[LatePartition], searches: Sequence[SavedSearch], today: dt.date) -> dict:
    """What the freshness check shows in the UI: which day it looked at, how many partitions it expected, and a table of
    the late ones with what to do."""
    yesterday = today - dt.timedelta(days=1)
    expected = sum(len(search.providers) for search in _scheduled(searches, yesterday))
    return {
        "day_checked": dg.MetadataValue.text(yesterday.isoformat()),
        "partitions_expected": dg.MetadataValue.int(expected),
        "partitions_late": dg.MetadataValue.int(len(late)),
        **({"late_partitions": dg.MetadataValue.md(late_partitions_markdown(late))} if late else {}),
    }


def late_partitions_markdown(late: Sequence[LatePartition]) -> str:
    lines = ["| search | partition | what to do |", "|---|---|---|"]
    lines += [f"| {markdown_cell(p.query)} | `{markdown_cell(p.partition_key)}` | {markdown_cell(p.action)} |" for p in late]
    return "\n".join(lines)
