"""Saved searches: the YAML file users edit, validated when the definitions load."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from scholar_pipeline.providers import PROVIDER_NAMES


class SavedSearch(BaseModel):
    """One saved search: what to ask which providers, and from which date on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$")]
    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
    providers: Annotated[list[str], Field(min_length=1)]
    start_date: dt.date
    description: str | None = None

    @field_validator("providers")
    @classmethod
    def _known_providers(cls, providers: list[str]) -> list[str]:
        unknown = [p for p in providers if p not in PROVIDER_NAMES]
        if unknown:
            raise ValueError(f"unknown provider(s) {unknown}; available: {sorted(PROVIDER_NAMES)}")
        if len(set(providers)) != len(providers):
            raise ValueError("providers are listed more than once")
        return providers


class SavedSearchError(ValueError):
    """The saved-search file cannot be used; the message names the entry and field."""


def load_saved_searches(path: Path) -> list[SavedSearch]:
    try:
        document = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SavedSearchError(f"saved-search file {path} does not exist (set SCHOLAR_PIPELINE_QUERIES)") from None
    except yaml.YAMLError as error:
        raise SavedSearchError(f"{path} is not valid YAML: {error}") from None
    entries = (document or {}).get("queries") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise SavedSearchError(f"{path} must hold a top-level `queries:` list")
    searches = []
    for index, entry in enumerate(entries):
        label = entry.get("name") if isinstance(entry, dict) and entry.get("name") else f"#{index + 1}"
        try:
            searches.append(SavedSearch.model_validate(entry))
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'entry'}: {e['msg']}" for e in error.errors())
            raise SavedSearchError(f"{path}: saved search {label!r} is invalid: {problems}") from None
    names = [s.name for s in searches]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise SavedSearchError(f"{path}: saved search names must be unique; repeated: {duplicated}")
    return searches
