"""The simulator's deterministic corpus: the same works for the same day, every run.

Works are provider-neutral; each simulated API renders them in its own wire format.
Most works carry a DOI, so the same work appears in several providers, as it does in
the real world (Crossref only holds works with a DOI).

A search sees part of a day: `works_matching` keeps the works its words select, a
deterministic choice of about `MATCH_SHARE` of the day per set of words, so the same text
finds the same works at every provider and two different texts find different but
overlapping sets (about MATCH_SHARE² of the day in common), as at the real APIs. Each
simulated API reads the words out of its own query syntax with `search_words`.

Every generated work has a PMID (the simulated PubMed indexes them all), an open one with a
DOI a PMC id too, and a preprint the arXiv id of its e-print (identifiers.py). The
hand-written works of planted.py join their day's generated ones, after them, with the
providers they are planted at; every search finds them.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import random
import re
from collections.abc import Iterable

from scholar_pipeline.simulator.identifiers import arxiv_id_for, pmcid_for, pmid_for
from scholar_pipeline.simulator.planted import PLANTED_WORKS
from scholar_pipeline.simulator.work import SimAuthor, SimWork

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
MATCH_SHARE = 0.6  # of a day's works, what one search text finds
# Boolean operators (upper case, as every provider writes them) are not words of the search.
_OPERATOR = re.compile(r"(?<![\w\\])(?:AND|OR|NOT|ANDNOT)(?![\w\\])")
_WORD = re.compile(r"[^\W_]+")


def search_words(query: str | None) -> frozenset[str]:
    """The words of a search as the simulated indexes match them: letters and digits, in lower case, without operators.

    `soil microbiome` and `soil AND microbiome` are the same search; so are `COVID-19`,
    `"COVID 19"` and `COVID\\-19`. A simulated API removes its own syntax first (date
    windows, arXiv's `all:` prefixes); a colon in a user's text (`review: methods`) is text.
    No words (None, or only syntax) means no text to match: the whole day.
    """
    if not query:
        return frozenset()
    return frozenset(word.lower() for word in _WORD.findall(_OPERATOR.sub(" ", query)))


class Corpus:
    def __init__(self, seed: int = 7, max_per_day: int = 240, min_per_day: int = 0, planted: Iterable[SimWork] = PLANTED_WORKS):
        self.seed, self.min_per_day, self.max_per_day = seed, min_per_day, max_per_day
        self.planted: dict[dt.date, tuple[SimWork, ...]] = {}
        for work in planted:
            self.planted[work.published] = (*self.planted.get(work.published, ()), work)

    @functools.lru_cache(maxsize=4096)
    def works_on(self, day: dt.date) -> tuple[SimWork, ...]:
        """The day's generated works, then the works planted on it (the generated ones keep their places either way)."""
        rng = random.Random(f"{self.seed}:{day.isoformat()}")
        count = rng.randint(self.min_per_day, self.max_per_day)
        return tuple(self._work(rng, day, n) for n in range(count)) + self.planted.get(day, ())

    def works_between(self, first: dt.date, last: dt.date) -> list[SimWork]:
        days = (last - first).days + 1
        return [w for offset in range(max(days, 0)) for w in self.works_on(first + dt.timedelta(days=offset))]

    def works_matching(self, words: frozenset[str], first: dt.date, last: dt.date, provider: str) -> list[SimWork]:
        """The works of the window at `provider` that a search with these words finds (every work when there are none)."""
        return [w for w in self.works_between(first, last) if w.held_by(provider) and self.matches(words, w)]

    def matches(self, words: frozenset[str], work: SimWork) -> bool:
        if not words or work.planted:
            return True
        digest = hashlib.sha256(f"{self.seed}:{' '.join(sorted(words))}:{work.serial}".encode()).digest()
        return int.from_bytes(digest[:4], "big") < MATCH_SHARE * 2**32

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
        if abstract and serial % 7 < 2:  # signs markup parsers must keep as text, spaced or not, as real abstracts have them
            size = 10 + serial % 90
            abstract += f" Effects held at p < 0.05 & n > {size}." if serial % 2 else f" Effects held at p<0.01 & n>{size}."
        venue, publisher = rng.choice(VENUES)
        doi = f"10.{rng.randint(1000, 9999)}/sim.{serial}" if rng.random() < 0.9 else None
        work_type = rng.choice(["article", "article", "article", "preprint", "book-chapter"])
        language, license_ = rng.choice(["en", "en", "en", "de", "es"]), rng.choice(LICENSES)
        return SimWork(
            serial=serial,
            doi=doi,
            title=title,
            abstract=abstract,
            authors=authors,
            published=day,
            venue=venue,
            publisher=publisher,
            work_type=work_type,
            language=language,
            license=license_,
            cited_by=rng.randint(0, 400),
            pmid=pmid_for(day, n),
            pmcid=pmcid_for(serial) if license_ and doi else None,  # open and deposited in PMC
            arxiv_id=arxiv_id_for(day, n) if work_type == "preprint" else None,
        )
