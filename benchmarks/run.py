"""`make benchmark`: every figure against the simulator on loopback and the recorded pages; a table, and results.json.

    .venv/bin/python -m benchmarks.run [FIGURE ...]     (figures: rate_limits, day_floor, normalization, peer,
                                                         warehouse_landing, backfill, warm_rerun, memory,
                                                         dataset_build, search_latency)

No test asserts on these numbers: they move with the machine. The README's performance
section quotes them with the machine they were measured on.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import logging
import os
import platform
import sys
from pathlib import Path

# Each figure is the module `benchmarks.<name>`, imported when it runs: `peer` needs the `bench` extra (scholar-flux),
# which `make benchmark` installs and `make setup` does not, and the other figures must run without it.
FIGURES = ("rate_limits", "day_floor", "normalization", "peer", "warehouse_landing", "backfill", "warm_rerun", "memory",
           "dataset_build", "search_latency")
RESULTS = Path(__file__).resolve().parent / "results.json"


def _table(name: str, rows: list[dict]) -> str:
    columns = list(rows[0]) if rows else []
    cells = [columns, *([row[c] for c in columns] for row in rows)]
    widths = [max(len(str(line[i])) for line in cells) for i in range(len(columns))]
    return "\n".join([f"== {name}", *("  ".join(str(v).rjust(w) for v, w in zip(line, widths)) for line in cells)])


def main(argv: list[str]) -> int:
    for chatty in ("httpx", "alembic"):  # a line per request or migration would bury the tables
        logging.getLogger(chatty).setLevel(logging.WARNING)
    chosen = argv or list(FIGURES)
    unknown = sorted(set(chosen) - set(FIGURES))
    if unknown:
        print(f"unknown figure(s) {unknown}; choose from {sorted(FIGURES)}", file=sys.stderr)
        return 2
    results = {"measured_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
               "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
               "figures": {}}
    figures = {}
    for name in chosen:  # all before the first runs: a missing library fails the command before minutes of measuring
        try:
            figures[name] = importlib.import_module(f"benchmarks.{name}")
        except ModuleNotFoundError as error:
            extra = (", from the project's `bench` extra: `make benchmark` installs it, or `.venv/bin/pip install -e "
                     "'.[dev,bench]'`") if (error.name or "").startswith("scholar_flux") else ""
            print(f"figure {name} needs the module {error.name}{extra}", file=sys.stderr)
            return 2
    for name, figure in figures.items():
        rows = figure.run()
        results["figures"][name] = rows
        print(_table(name, rows), flush=True)
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    print(f"written to {RESULTS.relative_to(Path.cwd()) if RESULTS.is_relative_to(Path.cwd()) else RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
