"""What every provider module implements: requests for one day, paging, page parsing.

A provider knows its wire format and nothing else: no HTTP, no storage, no clock. The
fetch loop asks it for the first request of a (search, day), hands it each response
body to learn how many records it holds and what to ask next, and normalization asks
it to turn one body into records of the `works` schema.
"""

from __future__ import annotations

import datetime as dt
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from scholar_pipeline.settings import ProviderSettings


@dataclass(frozen=True)
class PageRequest:
    """One GET: an endpoint path under the provider's base URL and its query parameters.

    Never holds credentials: those are added below the HTTP cache (see http/credentials.py).
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


@dataclass(frozen=True)
class Credential:
    """Where a provider expects its secret: a query parameter or a header."""

    env: str
    query_param: str | None = None
    header: str | None = None
    header_prefix: str = ""


class MalformedPage(ValueError):
    """A response body that is not the provider's wire format (an HTML error page, a truncated body...)."""


class Provider(ABC):
    name: ClassVar[str]
    defaults: ClassVar[ProviderSettings]
    credential: ClassVar[Credential | None] = None

    @abstractmethod
    def first_request(self, text: str, day: dt.date, page_size: int, mailto: str | None) -> PageRequest:
        """The request for the first page of works matching `text` published on `day`."""

    @abstractmethod
    def inspect(self, request: PageRequest, body: bytes) -> PageInfo:
        """Validate a response body and tell how many records it holds and what comes next."""

    @abstractmethod
    def parse_records(self, body: bytes) -> list[dict[str, Any]]:
        """One raw page to records with the fields of `schema.RECORD_FIELDS` (except the hash)."""


def load_json(provider: str, body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MalformedPage(f"{provider} answered with a body that is not JSON ({error}); starts with {body[:120]!r}") from None


def require(provider: str, condition: bool, what: str, body: bytes) -> None:
    if not condition:
        raise MalformedPage(f"{provider} page is not in the expected format: {what}; starts with {body[:120]!r}")
