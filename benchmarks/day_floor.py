"""Figure 2: one day of one saved search on every provider, at the providers' real default rate limits, as one run (the
daily schedule's kind): wall time against the floor that the limits set (target ≤ 1.1 × the floor).

The floor is the slowest provider's requests at its rate: a provider's first request is
sent at once, each later one a period after the one before, so n requests at r a second
take at least (n − 1) / r seconds. The simulator enforces the same limits (a request past
one would be answered 429). The run is the pipeline's own, in process, so the figure
holds what a run adds beyond the waits: the providers fetched in parallel, pages parsed,
the landing, the checks and the audit.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import time
from pathlib import Path
from unittest import mock

import dagster as dg
import duckdb

from scholar_pipeline.defs.resources import ScholarApiResource, WarehouseResource
from scholar_pipeline.defs.saved_searches import build_saved_search_assets, partition_range_tags
from scholar_pipeline.providers import PROVIDERS
from scholar_pipeline.queries import SavedSearch
from scholar_pipeline.simulator import Corpus, ProviderSimulator
from scholar_pipeline.simulator.server import PLACEHOLDER_KEYS

DAY = dt.date(2024, 3, 1)
# A busy day (about 900 of its works match the search): CORE's ten requests a minute make it the slowest provider,
# at about a minute, long enough that what a run adds beyond its waits shows as a share.
WORKS_THAT_DAY = 1500
SEARCH = SavedSearch(name="one_day", text="large language model evaluation", providers=list(PROVIDERS), start_date=DAY)


def run() -> list[dict]:
    with tempfile.TemporaryDirectory() as home, mock.patch.dict(os.environ, PLACEHOLDER_KEYS):
        api = ScholarApiResource(home=home, springer_nature_api_key=PLACEHOLDER_KEYS["SPRINGER_NATURE_API_KEY"],
                                 core_api_key=PLACEHOLDER_KEYS["CORE_API_KEY"])
        rates = {name: api.settings_for(provider).rate_limit for name, provider in PROVIDERS.items()}
        with ProviderSimulator(corpus=Corpus(seed=11, min_per_day=WORKS_THAT_DAY, max_per_day=WORKS_THAT_DAY), rate_limits=rates) as sim, \
                mock.patch.dict(os.environ, sim.environ()), dg.instance_for_test() as instance:
            started = time.perf_counter()
            result = dg.materialize(build_saved_search_assets(SEARCH), instance=instance, tags=partition_range_tags(SEARCH, DAY, DAY),
                                    resources={"scholar_api": api, "warehouse": WarehouseResource(home=home)})
            wall = time.perf_counter() - started
            requests = {name: sim.requests_for(name) for name in PROVIDERS}
            expected = {name: len(sim.apis[name].record_ids(DAY, DAY, SEARCH.text)) for name in PROVIDERS}
            failed_checks = sum(not e.passed for e in result.get_asset_check_evaluations())
        with duckdb.connect(str(Path(home) / "scholar.duckdb"), read_only=True) as con:
            rows = dict(con.execute("SELECT provider, count(*) FROM works GROUP BY ALL").fetchall())
    floors = {name: (len(log) - 1) / rates[name] for name, log in requests.items()}
    slowest = max(floors, key=floors.get)
    table = [{"provider": name, "rate_per_s": round(rates[name], 3), "requests": len(log), "answers_429": sum(r.status == 429 for r in log),
              "rows": rows.get(name, 0), "provider_records": expected[name], "floor_s": round(floors[name], 1), "wall_s": "",
              "wall_over_floor": ""} for name, log in requests.items()]
    table.append({"provider": f"one run ({failed_checks} checks failed)", "rate_per_s": "", "requests": sum(map(len, requests.values())),
                  "answers_429": sum(r["answers_429"] for r in table), "rows": sum(rows.values()),
                  "provider_records": sum(expected.values()), "floor_s": f"{floors[slowest]:.1f} ({slowest})",
                  "wall_s": round(wall, 1), "wall_over_floor": round(wall / floors[slowest], 2)})
    return table
