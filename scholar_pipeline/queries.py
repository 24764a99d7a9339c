"""Saved searches: the YAML file users edit, validated when the definitions load.

Every mistake stops the load with one line naming the file, the line, the entry and the field.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError, ValidationInfo, field_validator

from scholar_pipeline.alerts.config import Alerts
from scholar_pipeline.providers import PROVIDER_NAMES, PROVIDERS
from scholar_pipeline.providers.base import SearchTextError

MAX_NAME_LENGTH = 64  # names become asset keys, job and schedule names
MAX_TEXT_LENGTH = 1000  # the text travels in every request URL, whose whole length is limited to a few KB
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_SAFE_NAME = re.compile(r"[a-z][a-z0-9_]*")
# Names whose asset group the code location already has: `dataset` holds the cross-search assets.
_RESERVED_NAMES = frozenset({"dataset"})
_FIELDS = "name, text, providers, start_date and optionally description and alerts"
_TEXT_LINE = re.compile(r"(?:^|[\s{,])text\s*:")  # a line giving a search text, block or flow style


class SavedSearch(BaseModel):
    """One saved search: what to ask which providers, and from which date on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, StringConstraints(max_length=MAX_NAME_LENGTH)]
    # Before `text`, whose check needs to know the providers.
    providers: list[str]
    text: Annotated[str, StringConstraints(strip_whitespace=True, max_length=MAX_TEXT_LENGTH)]
    start_date: dt.date
    description: str | None = None
    alerts: Alerts | None = None  # digests of new works to Slack, e-mail or a webhook (alerts/config.py)

    @field_validator("name", mode="before")
    @classmethod
    def _safe_name(cls, name: Any) -> str:
        """The name becomes an asset key, a landing-zone folder, schedule names and the `query` value in DuckDB,
        so it holds nothing that a path, a shell or SQL would read as syntax."""
        if name is None:
            name = ""
        if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a safe name: use lowercase letters a-z, digits and _, starting with a letter "
                             "(it names the assets, the landing-zone folder and the schedule)")
        if name in _RESERVED_NAMES:
            raise ValueError(f"{name!r} is the name of the code location's own `{name}` asset group; choose another")
        return name

    @field_validator("providers", mode="before")
    @classmethod
    def _provider_list(cls, providers: Any) -> Any:
        if isinstance(providers, str):
            raise ValueError(f"{providers!r} is not a list; write providers: [{providers}]")
        if not providers:
            raise ValueError(f"no provider named; list at least one of {', '.join(sorted(PROVIDER_NAMES))}, e.g. [openalex]")
        return providers

    @field_validator("providers")
    @classmethod
    def _known_providers(cls, providers: list[str]) -> list[str]:
        unknown = [p for p in providers if p not in PROVIDER_NAMES]
        if unknown:
            raise ValueError(f"unknown provider(s) {unknown}; available: {sorted(PROVIDER_NAMES)}")
        if len(set(providers)) != len(providers):
            raise ValueError("providers are listed more than once")
        return providers

    @field_validator("text", mode="before")
    @classmethod
    def _some_text(cls, text: Any) -> Any:
        """YAML reads `text: 1984` as a number and `text: yes` as true: said so, rather than pydantic's "not a string"."""
        if text is None or (isinstance(text, str) and not text.strip()):
            raise ValueError("empty; write the words to search for")
        if not isinstance(text, str):
            raise ValueError(f"YAML reads it as {type(text).__name__} {text!r}, not text; put the text in quotes")
        return text

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
        if value is None:
            raise ValueError("empty; write the first day to fetch as YYYY-MM-DD")
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
    """The saved searches in `path`; SavedSearchError with one line naming the file, line, entry and field.

    A file without a saved search (empty, only comments, `queries:` with nothing under it,
    `queries: []`) is refused rather than read as "nothing to fetch": every asset of the
    code location comes from a saved search, so such a file is a mistake, often an entry
    indented wrongly or the wrong file in SCHOLAR_PIPELINE_QUERIES.
    """
    try:
        source = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise SavedSearchError(f"saved-search file {path} does not exist (set SCHOLAR_PIPELINE_QUERIES)") from None
    except UnicodeDecodeError as error:
        line = error.object[: error.start].count(b"\n") + 1
        raise SavedSearchError(f"{path}: line {line}: byte {error.object[error.start]:#04x} is not UTF-8; save the file as UTF-8") from None
    root, document = _parse(path, source)
    entries, lines = _entries(path, root, document)
    searches = []
    for index, entry in enumerate(entries):
        where = f"{path}: line {lines[index]}" if lines[index] else str(path)
        if not isinstance(entry, dict):
            shown = "empty" if entry is None else f"{_short(repr(entry))}, not a mapping of fields"
            raise SavedSearchError(f"{where}: saved search #{index + 1} is {shown}; write its {_FIELDS} under the dash")
        label = entry.get("name") or f"#{index + 1}"
        try:
            searches.append(SavedSearch.model_validate(entry))
        except ValidationError as error:
            problems = "; ".join(map(_plain_problem, error.errors()))
            raise SavedSearchError(f"{where}: saved search {_short(label)!r} is invalid: {problems}") from None
    _refuse_repeated_names(path, searches, lines)
    return searches


def _parse(path: Path, source: str) -> tuple[yaml.Node | None, Any]:
    """The document and its node tree, whose marks give the line of each saved search."""
    loader = _SavedSearchLoader(source)
    try:
        root = loader.get_single_node()
        return root, None if root is None else loader.construct_document(root)
    except _RepeatedKey as error:
        raise SavedSearchError(f"{path}: line {error.problem_mark.line + 1}: {error.problem}") from None
    except yaml.MarkedYAMLError as error:
        raise SavedSearchError(f"{path}: {_yaml_problem(error, source)}") from None
    except yaml.YAMLError as error:
        raise SavedSearchError(f"{path} is not valid YAML: {' '.join(str(error).split())}") from None
    finally:
        loader.dispose()


def _yaml_problem(error: yaml.MarkedYAMLError, source: str) -> str:
    """Where and what, with where the construct began (an unclosed quote is only noticed at the end of the file)."""
    mark, context = error.problem_mark, error.context_mark
    message = f"line {mark.line + 1}, column {mark.column + 1}: not valid YAML: {error.problem}"
    if error.context and context is not None and context.line != mark.line:
        message += f" ({error.context} from line {context.line + 1}, column {context.column + 1})"
    lines = source.splitlines()
    if "'\\t'" in (error.problem or ""):
        message += "; indent with spaces: YAML does not allow tabs there"
    elif any(_TEXT_LINE.search(lines[m.line]) for m in (mark, context) if m is not None and m.line < len(lines)):
        message += ("; put a search text with quotes, `: ` or a leading * & ! % @ in single quotes, doubling each ' inside: "
                    "text: '\"deep learning\" Alzheimer''s'")
    return message


def _entries(path: Path, root: yaml.Node | None, document: Any) -> tuple[list[Any], list[int | None]]:
    """The `queries:` list and the line each of its entries starts on (none when the list comes from a merge key)."""
    what_to_write = f"write `queries:` and under it one `- name: ...` entry per saved search, with {_FIELDS}"
    if document is None:
        raise SavedSearchError(f"{path} holds no saved search (the file is empty or only comments); {what_to_write}")
    if isinstance(document, list):
        raise SavedSearchError(f"{path} is a list without the top-level `queries:` key; {what_to_write}")
    if not isinstance(document, dict) or "queries" not in document:
        found = f"keys {_short(', '.join(map(str, document)))}" if isinstance(document, dict) else repr(_short(str(document)))
        raise SavedSearchError(f"{path} has no top-level `queries:` (found {found}); {what_to_write}")
    entries = document["queries"]
    if entries is None or entries == []:
        raise SavedSearchError(f"{path}: `queries:` lists no saved search; {what_to_write}")
    if not isinstance(entries, list):
        raise SavedSearchError(f"{path}: `queries:` holds {type(entries).__name__} {_short(repr(entries))}, not a list; {what_to_write}")
    for key, value in root.value:
        if isinstance(key, yaml.ScalarNode) and key.value == "queries" and isinstance(value, yaml.SequenceNode):
            return entries, [item.start_mark.line + 1 for item in value.value]
    return entries, [None] * len(entries)


def _plain_problem(error: Any) -> str:
    """One pydantic error as `field: what is wrong`, in the words of the validators, not pydantic's."""
    field = ".".join(map(str, error["loc"]))
    if error["type"] == "value_error":
        return f"{field}: {error['ctx']['error']}"
    if error["loc"][0] == "alerts" and error["type"] in ("missing", "extra_forbidden"):
        return f"{field}: {'missing' if error['type'] == 'missing' else 'not a field here'} (the README's \"Alerts\" lists the fields)"
    if error["type"] == "missing":
        return f"{field}: missing (a saved search has {_FIELDS})"
    if error["type"] == "extra_forbidden":
        return f"{field}: not a field of a saved search (it has {_FIELDS})"
    return f"{field}: {error['msg']}"


def _refuse_repeated_names(path: Path, searches: list[SavedSearch], lines: list[int | None]) -> None:
    """Two entries of one name would define the same assets twice."""
    found_at: dict[str, list[str]] = {}
    for index, (search, line) in enumerate(zip(searches, lines)):
        found_at.setdefault(search.name, []).append(f"line {line}" if line else f"entry #{index + 1}")
    repeated = [f"{name!r} at {' and '.join(at)}" for name, at in found_at.items() if len(at) > 1]
    if repeated:
        raise SavedSearchError(f"{path}: saved search names must be unique (each names an asset group): {'; '.join(repeated)}")


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
