"""Small, pure helpers for cleaning provider values into the normalized schema."""

from __future__ import annotations

import datetime as dt
import html
import re

_TAG = re.compile(r"<[^>]+>")
_JATS_ABSTRACT_HEADING = re.compile(r"^\s*<(jats:)?title>\s*(abstract|summary)\s*</(jats:)?title>", re.I)
_DOI_PREFIX = re.compile(r"^(https?://(dx\.)?doi\.org/|doi:\s*)", re.I)
_ORCID = re.compile(r"(\d{4}-\d{4}-\d{4}-\d{3}[\dX])", re.I)


def plain_text(markup: str | None) -> str | None:
    """Markup (JATS, HTML) to one line of plain text; None when nothing is left."""
    if not markup:
        return None
    text = _JATS_ABSTRACT_HEADING.sub("", markup)
    # Block ends become spaces so that paragraphs do not run together.
    text = _TAG.sub(" ", text)
    text = " ".join(html.unescape(text).split())
    return text or None


def bare_doi(value: str | None) -> str | None:
    """`https://doi.org/10.1/X` or `doi:10.1/X` to `10.1/x`; None unless it looks like a DOI."""
    if not value:
        return None
    doi = _DOI_PREFIX.sub("", value.strip()).lower()
    return doi if doi.startswith("10.") else None


def bare_orcid(value: str | None) -> str | None:
    """`https://orcid.org/0000-0002-1825-0097` to `0000-0002-1825-0097`."""
    match = _ORCID.search(value or "")
    return match.group(1).upper() if match else None


def partial_date(year: int | None, month: int | None = None, day: int | None = None) -> tuple[dt.date | None, str | None]:
    """A possibly partial date as (first day of its period, precision).

    Providers often know only the year or the month. Days are never invented silently:
    the date is the period's first day and the precision ('year', 'month', 'day') says
    how much of it is real.
    """
    if not year:
        return None, None
    try:
        if month and day:
            return dt.date(year, month, day), "day"
        if month:
            return dt.date(year, month, 1), "month"
        return dt.date(year, 1, 1), "year"
    except ValueError:  # e.g. month 13 or February 30 in a deposit
        return (dt.date(year, 1, 1), "year") if 1 <= year <= 9999 else (None, None)


def iso_date(value: str | None) -> tuple[dt.date | None, str | None]:
    """`2024-03-01`, `2024-03` or `2024` (with any time suffix) as a partial date."""
    match = re.match(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?", value or "")
    if not match:
        return None, None
    return partial_date(*(int(g) if g else None for g in match.groups()))
