"""A simulated work, provider-neutral: what every simulated API renders in its own wire format."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True)
class SimAuthor:
    given: str
    family: str
    orcid: str | None
    affiliation: str | None

    @property
    def name(self) -> str:
        return f"{self.given} {self.family}"


@dataclass(frozen=True)
class SimWork:
    serial: int  # stable across providers: W<serial> in OpenAlex
    doi: str | None
    title: str
    abstract: str | None
    authors: tuple[SimAuthor, ...]
    published: dt.date
    venue: str
    publisher: str
    work_type: str
    language: str
    license: str | None
    cited_by: int
    # The ids other databases give the work, bare (identifiers.py). A provider renders those it really carries.
    pmid: str | None = None
    pmcid: str | None = None
    arxiv_id: str | None = None  # its own as an e-print, or, for a journal version, its preprint's
    arxiv_versions: tuple[int, ...] = ()  # the versions arXiv's feed lists as entries; () = the latest only, as arXiv does
    # Where it can be found: None = at every provider whose rules admit it (Crossref: a DOI, PLOS: its publisher...);
    # a set = at those of them only, so that one real-world work can be two SimWorks (a preprint and its journal version).
    providers: frozenset[str] | None = None
    planted: bool = False  # hand-written (planted.py): every search text finds it

    def held_by(self, provider: str) -> bool:
        return self.providers is None or provider in self.providers
