"""Saved searches: the YAML file users edit, validated when the definitions load.

Every mistake stops the load with one line naming the file, the entry and the field.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, ValidationInfo, field_validator

from scholar_pipeline.providers import PROVIDER_NAMES, PROVIDERS
from scholar_pipeline.providers.base import SearchTextError

MAX_NAME_LENGTH = 64  # names become asset keys, job and schedule names
MAX_TEXT_LENGTH = 1000  # the text travels in every request URL, whose whole length is limited to a few KB
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class SavedSearch(BaseModel):
    """One saved search: what to ask which providers, and from which date on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=MAX_NAME_LENGTH)]
    # Before `text`, whose check needs to know the providers.
    providers: Annotated[list[str], Field(min_length=1)]
    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TEXT_LENGTH)]
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

    @field_validator("text")
    @classmethod
    def _means_what_it_says(cls, text: str, info: ValidationInfo) -> str:
        """Each provider must be able to search for the text as written (see Provider.search_terms)."""
        objections = []
        for provider in info.data.get("providers", ()):
            try:
                PROVIDERS[provider].search_terms(text)
            except SearchTextError as error:
                objections.append(f"for {provider}: {error}")
        if objections:
            raise ValueError("; ".join(objections))
        return text

    @field_validator("start_date", mode="before")
    @classmethod
    def _iso_date(cls, value: Any) -> dt.date:
        """Only YYYY-MM-DD: pydantic alone would read 0 or 20240101 as seconds since 1970."""
        if isinstance(value, dt.datetime) or not isinstance(value, (dt.date, str)):
            raise ValueError(f"{value!r} is not a date; write YYYY-MM-DD")
        if isinstance(value, str):
            if not _ISO_DATE.match(value):
                raise ValueError(f"{value!r} is not a date; write YYYY-MM-DD")
            try:
                value = dt.date.fromisoformat(value)
            except ValueError as error:
                raise ValueError(f"{value!r} is not a date ({error}); write YYYY-MM-DD") from None
        today = dt.datetime.now(dt.timezone.utc).date()
        if value > today:
            raise ValueError(f"{value} is in the future (today is {today} UTC); daily partitions start from a day that has begun")
        return value


class SavedSearchError(ValueError):
    """The saved-search file cannot be used; the message names the entry and field."""


class _RepeatedKey(yaml.constructor.ConstructorError):
    """A key given twice in one mapping; the message names the entry (when it has a name) and the key."""


class _SavedSearchLoader(yaml.SafeLoader):
    """SafeLoader that leaves dates to the model and refuses a key given twice in one mapping.

    PyYAML would turn `2024-13-01` into an error deep inside its date constructor, and keep
    only the last of two equal keys without a word.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                continue  # merges may override keys; a non-scalar key fails in SafeLoader anyway
            key = self.construct_object(key_node)
            if key in seen:
                name = next((v.value for k, v in node.value if k.value == "name" and isinstance(v, yaml.ScalarNode)), None)
                entry = f"saved search {name!r} is invalid: " if name else ""
                raise _RepeatedKey(
                    None, None, f"{entry}{key}: given twice (first on line {seen[key] + 1}); YAML would keep only the last",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


_SavedSearchLoader.add_constructor("tag:yaml.org,2002:timestamp", yaml.SafeLoader.construct_yaml_str)


def load_saved_searches(path: Path) -> list[SavedSearch]:
    try:
        source = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise SavedSearchError(f"saved-search file {path} does not exist (set SCHOLAR_PIPELINE_QUERIES)") from None
    except UnicodeDecodeError as error:
        line = error.object[: error.start].count(b"\n") + 1
        raise SavedSearchError(f"{path}: line {line}: byte {error.object[error.start]:#04x} is not UTF-8; save the file as UTF-8") from None
    try:
        document = yaml.load(source, Loader=_SavedSearchLoader)
    except _RepeatedKey as error:
        raise SavedSearchError(f"{path}: line {error.problem_mark.line + 1}: {error.problem}") from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        raise SavedSearchError(f"{path}: line {mark.line + 1}, column {mark.column + 1}: not valid YAML: {error.problem}") from None
    except yaml.YAMLError as error:
        raise SavedSearchError(f"{path} is not valid YAML: {' '.join(str(error).split())}") from None
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
            raise SavedSearchError(f"{path}: saved search {_short(label)!r} is invalid: {problems}") from None
    names = [s.name for s in searches]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise SavedSearchError(f"{path}: saved search names must be unique; repeated: {duplicated}")
    return searches


def _short(label: Any) -> Any:
    """A label fit for one line: a 300-character name is shown by its start."""
    return label[: MAX_NAME_LENGTH + 1] + "…" if isinstance(label, str) and len(label) > MAX_NAME_LENGTH + 1 else label


def main() -> None:
    """`python -m scholar_pipeline.queries`: check the saved-search file, in one line either way (Dagster would print
    the same error under a long traceback when the code location fails to load)."""
    from scholar_pipeline.settings import queries_file

    path = queries_file()
    try:
        searches = load_saved_searches(path)
    except SavedSearchError as error:
        raise SystemExit(f"error: {error}") from None
    print(f"{path}: {len(searches)} saved searches: {', '.join(s.name for s in searches)}")


if __name__ == "__main__":
    main()
