"""What every provider module implements: requests for one day, paging, page parsing.

A provider knows its wire format and nothing else: no HTTP, no storage, no clock. The
fetch loop asks it for the first request of a (search, day), hands it each response
body to learn how many records it holds and what to ask next, and normalization asks
it to turn one body into records of the `works` schema.

JSON providers read their records through `RecordReader`, which applies the rule for bad
values that `scholar_pipeline.normalize` documents, so every provider treats them alike.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, replace
from itertools import repeat
from typing import Any, ClassVar, NamedTuple

import orjson

from scholar_pipeline.identifiers import BARE, arxiv_id_from_doi, is_arxiv_doi
from scholar_pipeline.settings import ProviderSettings
from scholar_pipeline.text import CONTROL_CHARACTERS, LONE_SURROGATES, PartialDate


@dataclass(frozen=True)
class PageRequest:
    """One GET: an endpoint path under the provider's base URL and its query parameters.

    Never holds credentials: those are added below the HTTP cache (see client/transports.py).
    """

    path: str
    params: tuple[tuple[str, str], ...]
    holds_records: bool = True  # False for helper calls such as PubMed's esearch

    def param(self, name: str) -> str | None:
        return next((v for k, v in self.params if k == name), None)

    def with_param(self, name: str, value: str) -> PageRequest:
        params = tuple((k, value if k == name else v) for k, v in self.params)
        if name not in dict(self.params):
            params += ((name, value),)
        return replace(self, params=params)


@dataclass(frozen=True)
class PageInfo:
    """What the fetch loop needs from a response: its size, the total, the next request."""

    records: int
    total: int | None
    next_request: PageRequest | None
    # The page's records come again in the pages that follow (CORE's first page of a day too large for
    # offset paging, which is fetched again by scrolling): landed for provenance, never counted or normalized.
    superseded: bool = False


@dataclass(frozen=True)
class Credential:
    """Where a provider expects its secret: a query parameter or a header."""

    env: str
    query_param: str | None = None
    header: str | None = None
    header_prefix: str = ""
    required: bool = False  # the provider answers nothing without it
    signup_url: str | None = None  # where a user gets one


class MalformedPage(ValueError):
    """A response body that is not the provider's wire format (an HTML error page, a truncated body...)."""


class RecordError(ValueError):
    """A record that cannot become a row (not an object, no usable provider id): its page fails."""


class PartitionTooLarge(ValueError):
    """A partition holding more records than the provider serves for one query: fetching part of it would truncate."""


class SearchTextError(ValueError):
    """A search text the provider would read as something other than what the user wrote."""


class MissingCredential(RuntimeError):
    """A provider that requires an API key, asked for without one: says which variable to set and where."""

    def __init__(self, provider: str, credential: Credential):
        where_to_get = f"Get one at {credential.signup_url}, then set" if credential.signup_url else "Set"
        super().__init__(
            f"{provider} answers only requests that carry an API key, and {credential.env} is not set. {where_to_get} it "
            f"where Dagster runs: `export {credential.env}=...` before starting it (`dg dev`, `make materialize`), or a line "
            f"`{credential.env}=...` in the project's .env file; or remove {provider} from the saved search's providers "
            "in queries.yaml."
        )


@dataclass(frozen=True)
class FieldProblem:
    """A value that did not fit its field, and what normalization did about it."""

    record_id: str  # the provider id if known, else "#<index in page>"
    field: str  # the provider's field path, e.g. "cited_by_count" or "authorships[2].author.orcid"
    value: str  # repr of the offending value, truncated to 80 characters
    action: str  # e.g. "set to NULL", "left out of the list", "replaced lone surrogate with U+FFFD", "impossible date kept as its year"


class ParsedRecords(NamedTuple):
    records: list[dict[str, Any]]  # fields of `schema.RECORD_FIELDS` except the hash
    problems: list[FieldProblem]


class Provider(ABC):
    name: ClassVar[str]
    defaults: ClassVar[ProviderSettings]
    credential: ClassVar[Credential | None] = None
    # The cursor is server-side state that each request moves on (Crossref): a request that failed after reaching the
    # server may have moved it, so the answer to its retry can be the page after the one asked for.
    cursor_moves_on_use: ClassVar[bool] = False
    # An empty first page (no record, a total of 0) is now and then the provider's mistake (arXiv): the fetch asks once
    # more, live, before it takes the day as empty, since nothing after that would tell the day was not.
    doubts_empty_first_page: ClassVar[bool] = False
    # Paths of raw-record fields whose keys are data, not schema (OpenAlex's `abstract_inverted_index` is keyed by the
    # abstract's words): schema drift (drift.py) records their type and never descends into them.
    drift_opaque_fields: ClassVar[frozenset[str]] = frozenset()
    # The top-level record fields the request asks for (PLOS's `fl`); None when the provider sends every field it has.
    requested_fields: ClassVar[frozenset[str] | None] = None

    def default_settings(self, mailto: str | None, keyed: bool) -> ProviderSettings:
        """The provider's defaults; a provider whose limits depend on the contact e-mail (a polite pool) or on an
        API key being set overrides it."""
        return self.defaults

    @abstractmethod
    def first_request(self, text: str, day: dt.date, page_size: int, mailto: str | None) -> PageRequest:
        """The request for the first page of works matching `text` published on `day`."""

    @abstractmethod
    def inspect(self, request: PageRequest, body: bytes) -> PageInfo:
        """Validate a response body and tell how many records it holds and what comes next."""

    @abstractmethod
    def raw_records(self, body: bytes) -> list[Any]:
        """One raw page's records as sent, before any field is read (XML elements as the provider reads them into
        dicts): what `parse_records` reads, and what schema drift (drift.py) describes."""

    def parse_records(self, body: bytes) -> ParsedRecords:
        """One raw page to records, with the values that did not fit (RecordError for a record that cannot be a row)."""
        return self.read_raw_records(self.raw_records(body))

    @abstractmethod
    def read_raw_records(self, raw_records: list[Any]) -> ParsedRecords:
        """The page's raw records (`raw_records`) to records: the page is parsed once for rows and for its shape."""

    def explain_refusal(self, request: PageRequest, status: int, body: bytes) -> str | None:
        """What a user should do about an error answer that means more at this provider than its status says
        (a refused key, Springer's 403 for a premium feature); None leaves the general advice for the status."""
        if status == 401 and self.credential is not None:
            where = f" ({self.credential.signup_url} shows your keys)" if self.credential.signup_url else ""
            return f"{self.name} refused the key: check {self.credential.env}{where}."
        return None

    def throttling(self, status: int, body: bytes) -> bool:
        """Whether an error answer other than 429 is the provider's rate limit: retried with backoff, and counted
        with the 429s, rather than failing the partition with advice about the request."""
        return False

    def cursor_expired(self, status: int, body: bytes) -> bool:
        """Whether an error answer to a page after the first says that the provider's server-side cursor expired
        (Crossref's scroll five minutes after its last use): the chain is then fetched again from its first page."""
        return False

    def search_terms(self, text: str) -> str:
        """The saved search's text as this provider's search value, meaning what the user wrote.

        Free text needs no encoding; a text without a single letter or digit is refused
        (SearchTextError), since the provider would match every work of the day or none.
        Providers whose search value has syntax of its own override this.
        """
        terms = " ".join(text.split())
        if not any(character.isalnum() for character in terms):
            raise SearchTextError(f"{text!r} holds no word to search for; {self.name} would match every work of the day (or none)")
        return terms


def load_json(provider: str, body: bytes) -> Any:
    """The page as Python values, as the standard `json` reads it, about three times faster.

    orjson parses the page; what it refuses goes to `json`: a lone surrogate escape
    (`\\ud800`, valid JSON that the readers repair and report), NaN or 1e400, a byte-order
    mark, another encoding. One difference is left, on purpose: an integer beyond 64 bits
    comes as a float (`json` keeps the integer), so a reader takes it for a value of the
    wrong type: NULL and reported (a count, which is past int64 either way), or a refused
    record (an id), never a misread value. No provider sends one, and looking for such
    numbers in the bytes first cost as much as the parse itself.
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MalformedPage(f"{provider} answered with a body that is not JSON ({error}); starts with {body[:120]!r}") from None


def add_child(value: dict[str, Any], key: str, child: Any, repeated: frozenset[str]) -> None:
    """Put the value of an XML element's child (a string or a dict, never a list) in the element's dict under `key`.

    An element that may repeat (`repeated`) is always a list; a single-valued element given
    twice becomes one too, which the reader reports as a value of the wrong type.
    """
    if key in repeated:
        value.setdefault(key, []).append(child)
    elif key not in value:
        value[key] = child
    else:
        earlier = value[key]
        value[key] = [*earlier, child] if isinstance(earlier, list) else [earlier, child]


def require(provider: str, condition: bool, what: str, body: bytes) -> None:
    if not condition:
        raise MalformedPage(f"{provider} page is not in the expected format: {what}; starts with {body[:120]!r}")


def read_records(provider: str, where: str, raw_records: list[Any], to_record: Callable[[RecordReader], dict[str, Any]]) -> ParsedRecords:
    """Each record of a JSON page (the list at `where`) through `to_record`, with what did not fit."""
    records, problems = [], []
    for index, raw in enumerate(raw_records):
        if not isinstance(raw, dict):
            raise _record_error(provider, where, index, f"is {_shown(raw)}, not an object")
        state = _RecordState(provider, where, index)
        records.append(to_record(RecordReader(state, raw)))
        if state.problems:
            problems += state.problems.values()
    return ParsedRecords(records, problems)


def _record_error(provider: str, where: str, index: int, problem: str) -> RecordError:
    return RecordError(f"{provider} record #{index} ({where}[{index}]) {problem}; the page cannot be normalized")


# What `clean` replaces. Searching every string costs about 0.3 ms per 200-record Crossref
# page, less than looking for JSON escapes in the raw body did.
_ODD_CHARACTER = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
_has_odd_character = _ODD_CHARACTER.search
_INT64 = range(-(2**63), 2**63)
SET_TO_NULL, LEFT_OUT = "set to NULL", "left out of the list"
SURROGATE_REPLACED, CONTROLS_REPLACED = "replaced lone surrogate with U+FFFD", "replaced control characters with spaces"
DATE_KEPT_AS = "impossible date kept as its {}"  # .format(precision): "impossible date kept as its year"
NO_VALID_ID = "no valid {0} in it: {0} set to NULL"  # .format(column): "no valid pmid in it: pmid set to NULL"


class _RecordState:
    """What the readers of one record share: where it is, its id once known, and its problems."""

    __slots__ = ("provider", "where", "index", "record_id", "problems")

    def __init__(self, provider: str, where: str, index: int):
        self.provider, self.where, self.index, self.record_id = provider, where, index, f"#{index}"
        self.problems: dict[tuple[str, str], FieldProblem] = {}  # one report per field and action


class RecordReader:
    """One raw JSON record read field by field, each value checked against the type its field needs.

    A value of the wrong type is read as null and reported (the rule is in normalize.py);
    a field is named by its path, e.g. `primary_location.source.display_name`. Every
    record field passes here, so the common case (a value of the right type, a string
    without odd characters) takes the fewest steps, and a path is spelled out only when
    a problem is reported.
    """

    __slots__ = ("_state", "_data", "_parent", "_keys", "_index")

    def __init__(self, state: _RecordState, data: dict[str, Any], parent: RecordReader | None = None, keys: tuple[str, ...] = (),
                 index: int = 0):
        # An element of a list of objects is element `index` of the list at `keys` of `parent`.
        self._state, self._data, self._parent, self._keys, self._index = state, data, parent, keys, index

    def identify(self, field: str, to_id: Callable[[str], str | None], numeric: bool = False) -> str:
        """The record's provider id from `field`, a string (or, with `numeric`, a whole number as CORE sends it);
        a record without a usable one cannot be a row (RecordError)."""
        value = self._data.get(field)
        if numeric and isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            value = str(value)
        record_id = to_id(self.clean((field,), value)) if isinstance(value, str) else None
        if not record_id:
            state = self._state
            raise _record_error(state.provider, state.where, state.index, f"has `{field}` {_shown(value)}, not a usable {state.provider} id")
        self._state.record_id = record_id
        return record_id

    def value(self, *keys: str) -> Any:
        """The raw value at a path of object keys; None when absent or when an object on the way is not one."""
        return self._at(keys)

    def text(self, *keys: str) -> str | None:
        value = self._at(keys)
        if isinstance(value, str):
            return self.clean(keys, value) if _has_odd_character(value) else value
        return self._wrong_type(keys, value)

    def integer(self, *keys: str) -> int | None:
        value = self._at(keys)
        if isinstance(value, int) and not isinstance(value, bool) and value in _INT64:
            return value
        return self._wrong_type(keys, value)

    def boolean(self, *keys: str) -> bool | None:
        value = self._at(keys)
        return value if isinstance(value, bool) else self._wrong_type(keys, value)

    def texts(self, *keys: str) -> list[str]:
        """A list of strings; a lone string counts as a one-element list (Crossref's `title` is one)."""
        value = self._at(keys)
        if isinstance(value, str):
            self.report(keys, value, "read as a one-element list")
            return [self.clean(keys, value)]
        if isinstance(value, list) and _all_of(str, value) and not _has_odd_character("".join(value)):
            return list(value)  # the common case: nothing to leave out or repair
        return [self.clean((*keys[:-1], f"{keys[-1]}[{i}]"), v) for i, v in self._elements(keys, value, str)]

    def objects(self, *keys: str) -> list[RecordReader] | None:
        """A list of objects, each as a reader; [] when absent, None when the value is not a list."""
        value = self._at(keys)
        if value is None:
            return []
        if not isinstance(value, list):
            self.report(keys, value, SET_TO_NULL)
            return None
        state = self._state
        if _all_of(dict, value):  # the common case: nothing to leave out
            return [RecordReader(state, v, self, keys, i) for i, v in enumerate(value)]
        return [RecordReader(state, v, self, keys, i) for i, v in self._elements(keys, value, dict)]

    def clean(self, keys: tuple[str, ...], text: str) -> str:
        """`text` as every string of a record passes: with what no UTF-8 or XML writer accepts replaced and reported.

        A lone surrogate (half of a lost character) becomes U+FFFD. A control character
        (below U+0020 except tab, line feed and carriage return) or U+FFFE/U+FFFF carries no
        text and becomes a space, which the tidying of text and markup fields merges with the
        whitespace around it; left in, lxml would refuse the whole page's markup ("All strings
        must be XML compatible").
        """
        if not _has_odd_character(text):
            return text
        cleaned = text
        if LONE_SURROGATES.search(cleaned):
            self.report(keys, text, SURROGATE_REPLACED)
            cleaned = LONE_SURROGATES.sub("\ufffd", cleaned)
        if CONTROL_CHARACTERS.search(cleaned):
            self.report(keys, text, CONTROLS_REPLACED)
            cleaned = CONTROL_CHARACTERS.sub(" ", cleaned)
        return cleaned

    def identifier(self, column: str, *keys: str) -> str | None:
        """The string at `keys` as the bare id of the identifier column `column` (`pmid`, `pmcid`, `arxiv_id`)."""
        return self.bare_identifier(column, keys, self.text(*keys))

    def bare_identifier(self, column: str, keys: tuple[str, ...], value: str | None,
                        to_id: Callable[[str], str | None] | None = None) -> str | None:
        """`value`, read at `keys`, as the bare id of `column` by `to_id` (by default `identifiers.BARE[column]`).

        A value that is no such id is read as NULL and reported (see identifiers.py for why
        nothing close is kept); an empty one is no value, as an absent one."""
        if value is None or not value.strip():
            return None
        identifier = (to_id or BARE[column])(value)
        if identifier is None:
            self.report(keys, value, NO_VALID_ID.format(column))
        return identifier

    def arxiv_id_of_doi(self, keys: tuple[str, ...], doi: str | None) -> str | None:
        """The arXiv id an arXiv DOI (`10.48550/arXiv.2401.01234`) read at `keys` names; None for any other DOI."""
        return self.bare_identifier("arxiv_id", keys, doi, arxiv_id_from_doi) if is_arxiv_doi(doi) else None

    def date(self, keys: tuple[str, ...], value: Any, read: PartialDate) -> tuple[dt.date | None, str | None]:
        """A date as read from `value`, reporting a part it could not keep: kept as its year (or month), or set to NULL."""
        if read.lost:
            self.report(keys, value, SET_TO_NULL if read.date is None else DATE_KEPT_AS.format(read.precision))
        return read.date, read.precision

    def report(self, keys: tuple[str, ...], value: Any, action: str) -> None:
        field = self._field(keys)
        self._state.problems.setdefault((field, action), FieldProblem(self._state.record_id, field, _shown(value), action))

    def _at(self, keys: tuple[str, ...]) -> Any:
        value: Any = self._data
        if len(keys) == 1:  # most fields: no walk
            return value.get(keys[0])
        for depth, key in enumerate(keys):
            if not isinstance(value, dict):
                return self._wrong_type(keys[:depth], value)
            value = value.get(key)
        return value

    def _wrong_type(self, keys: tuple[str, ...], value: Any) -> None:
        if value is not None:
            self.report(keys, value, SET_TO_NULL)
        return None

    def _elements(self, keys: tuple[str, ...], value: Any, kind: type) -> list[tuple[int, Any]]:
        """The (index, element) pairs of a list whose elements are of `kind`; the others are left out and reported."""
        if value is None:
            return []
        if not isinstance(value, list):
            self.report(keys, value, SET_TO_NULL)
            return []
        elements = [(i, v) for i, v in enumerate(value) if isinstance(v, kind)]
        if len(elements) < len(value):
            for i, v in enumerate(value):
                if not isinstance(v, kind):
                    self.report((*keys[:-1], f"{keys[-1]}[{i}]"), v, LEFT_OUT)
        return elements

    def _field(self, keys: tuple[str, ...]) -> str:
        parent = self._parent
        path = f"{parent._field(self._keys)}[{self._index}]" if parent is not None else ""
        return ".".join((path, *keys) if path else keys)


def _all_of(kind: type, values: list[Any]) -> bool:
    """Whether every element is of `kind`, checked at C speed (no Python frame per element)."""
    return all(map(isinstance, values, repeat(kind)))


def _shown(value: Any) -> str:
    """repr of a value, at most 80 characters."""
    shown = repr(value)
    return shown if len(shown) <= 80 else shown[:79] + "…"
