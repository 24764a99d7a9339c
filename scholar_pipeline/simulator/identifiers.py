"""How the simulator numbers the identifiers other databases give a work: PMIDs, PMCIDs and arXiv ids.

Each is derived from where a work sits (its day and its place among the day's works) or from
its serial, so the same work gets the same id at every provider and in every run, and a
simulated API can tell a work's day from its PMID. Slots from `PLANTED_SLOTS` on are kept for
the hand-written works of planted.py, so theirs never collide with a generated one.
"""

from __future__ import annotations

import datetime as dt

EPOCH = dt.date(2000, 1, 1)
PMIDS_PER_DAY = 100_000
FIRST_PMID = 10_000_000
PLANTED_SLOTS = 90_000  # places in a day from here on are planted works' (a day holds far fewer generated works)


def pmid_for(day: dt.date, n: int) -> str:
    """The PMID of the n-th work of a day: unique, stable, ascending with the day."""
    return str(FIRST_PMID + (day - EPOCH).days * PMIDS_PER_DAY + n)


def pmid_day(pmid: str) -> dt.date | None:
    """The day a simulated PMID belongs to (None for a PMID the simulator never gives)."""
    if not pmid.isdigit() or int(pmid) < FIRST_PMID:
        return None
    return EPOCH + dt.timedelta(days=(int(pmid) - FIRST_PMID) // PMIDS_PER_DAY)


def pmcid_for(serial: int) -> str:
    """A generated work's PMC id (8 digits; the planted ones have 7)."""
    return f"PMC{10_000_000 + serial % 9_000_000}"


def arxiv_id_for(day: dt.date, n: int) -> str:
    """The arXiv id (no version) of the n-th work submitted on a day: `YYMM.NNNNN`, numbered within the month."""
    return f"{day:%y%m}.{(day.day - 1) * 1000 + n + 1:05d}"


def arxiv_doi(arxiv_id: str) -> str:
    """The DOI DataCite registers for an arXiv e-print (arXiv's spelling; OpenAlex writes it in lower case)."""
    return f"10.48550/arXiv.{arxiv_id}"
