"""`saved_search_alerts`: the sensor that sends each saved search's digest of new works (scholar_pipeline/alerts).

A sensor rather than an asset: it runs on the daemon's clock, so a digest held back by the
quiet period or a channel that was down goes out on a later tick without anything else
having to run. Its tick history in the UI shows what each pass sent and what waits and why
(as a "skipped" tick: it starts no run), and fails naming every channel that could not be
reached.
"""

from __future__ import annotations

import dagster as dg
import filelock

from scholar_pipeline.alerts.dispatch import send_due_digests
from scholar_pipeline.defs.resources import WarehouseResource
from scholar_pipeline.defs.saved_searches import SAVED_SEARCHES
from scholar_pipeline.queries import SavedSearch
from scholar_pipeline.settings import alerts_interval_seconds
from scholar_pipeline.warehouse_backends import WarehouseBusy


class AlertsNotDelivered(Exception):
    """Some digests did not reach their channel; they are sent again on the next tick."""


def build_alerts_sensor(searches: list[SavedSearch]) -> dg.SensorDefinition:
    @dg.sensor(
        name="saved_search_alerts", minimum_interval_seconds=alerts_interval_seconds(),
        default_status=dg.DefaultSensorStatus.RUNNING if any(s.alerts for s in searches) else dg.DefaultSensorStatus.STOPPED,
        description="Sends each saved search's digest of new unique works to the channels under its `alerts:` in "
                    "queries.yaml, once per work and channel (recorded in table `alert_deliveries`), after the search's "
                    "quiet period. A failed send fails the tick and is retried on the next one.",
    )
    def saved_search_alerts(context: dg.SensorEvaluationContext, warehouse: WarehouseResource):
        try:
            outcome = send_due_digests(warehouse.backend, searches, log=context.log.info)
        except (filelock.Timeout, WarehouseBusy):
            return dg.SkipReason("the warehouse stayed busy (a landing, or another process holding the DuckDB file); "
                                 "trying again on the next tick")
        if outcome.failed:
            raise AlertsNotDelivered("\n".join(outcome.failed + outcome.sent))
        return dg.SkipReason(outcome.summary())

    return saved_search_alerts


saved_search_alerts = build_alerts_sensor(SAVED_SEARCHES)
