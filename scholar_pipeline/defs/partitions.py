"""Partitions of a saved search: one per day since its start date, per provider."""

import dagster as dg

from scholar_pipeline.queries import SavedSearch


def date_provider_partitions(search: SavedSearch) -> dg.MultiPartitionsDefinition:
    """Keys look like `2024-03-01|openalex` (dimensions sort by name: date, then provider)."""
    return dg.MultiPartitionsDefinition(
        {
            "date": dg.DailyPartitionsDefinition(start_date=search.start_date.isoformat()),
            "provider": dg.StaticPartitionsDefinition(list(search.providers)),
        }
    )
