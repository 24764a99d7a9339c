"""The simulator's deterministic corpus: the same works for the same day, every run.

Works are provider-neutral; each simulated API renders them in its own wire format.
Most works carry a DOI, so the same work appears in several providers, as it does in
the real world (Crossref only holds works with a DOI).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import random
from dataclasses import dataclass

TOPICS = ["language model", "soil microbiome", "graph neural network", "climate adaptation", "protein folding",
          "systematic review", "federated learning", "coral reef", "gene expression", "urban heat island"]
WORDS = ["robust", "scalable", "evaluation", "benchmark", "dynamics", "inference", "causal", "longitudinal",
         "multi-site", "efficient", "uncertainty", "ensemble", "bayesian", "transfer", "sparse", "adaptive"]
GIVEN = ["Ana", "Bjørn", "Chen", "Dario", "Émilie", "Farah", "Gustavo", "Hiroshi", "Ingrid", "José", "Kwame", "Léa", "Michael"]
FAMILY = ["Álvarez", "Berg", "Chen", "Dubois", "Eze", "Färber", "García", "Hoffmann", "Ito", "Jensen", "Kowalski", "O'Neil"]
INSTITUTIONS = ["Kyoto University", "Karlsruhe Institute of Technology", "University of Cape Town", "ETH Zürich",
                "Universidade de São Paulo", "University of Toronto", "CNRS"]
VENUES = [("Nature Communications", "Springer Science and Business Media LLC"), ("PLOS ONE", "Public Library of Science"),
          ("Scientific Reports", "Springer Science and Business Media LLC"), ("Ecology", "Wiley"),
          ("Journal of Machine Learning Research", "Microtome Publishing"), ("Proceedings of the ACM Web Conference", "ACM")]
LICENSES = ["cc-by", "cc-by-nc", None, None]


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


class Corpus:
    def __init__(self, seed: int = 7, max_per_day: int = 240, min_per_day: int = 0):
        self.seed, self.min_per_day, self.max_per_day = seed, min_per_day, max_per_day

    @functools.lru_cache(maxsize=4096)
    def works_on(self, day: dt.date) -> tuple[SimWork, ...]:
        rng = random.Random(f"{self.seed}:{day.isoformat()}")
        count = rng.randint(self.min_per_day, self.max_per_day)
        return tuple(self._work(rng, day, n) for n in range(count))

    def works_between(self, first: dt.date, last: dt.date) -> list[SimWork]:
        days = (last - first).days + 1
        return [w for offset in range(max(days, 0)) for w in self.works_on(first + dt.timedelta(days=offset))]

    def _work(self, rng: random.Random, day: dt.date, n: int) -> SimWork:
        serial = int(hashlib.sha256(f"{self.seed}:{day}:{n}".encode()).hexdigest()[:9], 16) + 10**10
        topic = rng.choice(TOPICS)
        title = f"{rng.choice(WORDS).capitalize()} {rng.choice(WORDS)} methods for {topic}: a {rng.choice(WORDS)} study"
        authors = tuple(
            SimAuthor(
                given=rng.choice(GIVEN), family=rng.choice(FAMILY),
                orcid=f"0000-000{rng.randint(1, 9)}-{rng.randint(1000, 9999)}-{rng.randint(100, 999)}{rng.choice('0123456789X')}" if rng.random() < 0.6 else None,
                affiliation=rng.choice(INSTITUTIONS) if rng.random() < 0.8 else None,
            )
            for _ in range(rng.randint(0, 6))
        )
        abstract = None
        if rng.random() < 0.75:
            abstract = " ".join(
                f"We study {topic} with {rng.choice(WORDS)} {rng.choice(WORDS)} methods and report {rng.choice(WORDS)} results."
                for _ in range(rng.randint(1, 4))
            )
        venue, publisher = rng.choice(VENUES)
        return SimWork(
            serial=serial,
            doi=f"10.{rng.randint(1000, 9999)}/sim.{serial}" if rng.random() < 0.9 else None,
            title=title,
            abstract=abstract,
            authors=authors,
            published=day,
            venue=venue,
            publisher=publisher,
            work_type=rng.choice(["article", "article", "article", "preprint", "book-chapter"]),
            language=rng.choice(["en", "en", "en", "de", "es"]),
            license=rng.choice(LICENSES),
            cited_by=rng.randint(0, 400),
        )
