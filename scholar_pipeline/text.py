"""Small, pure helpers for cleaning provider values into the normalized schema.

Two kinds of text arrive: plain text (read as is; only whitespace is tidied) and markup
(JATS or HTML, converted with lxml's forgiving HTML parser). Each provider module says
which of its fields are markup; a markup conversion applied to plain text would delete
whatever looks like a tag ("p < 0.05 ... > 3" loses its middle), so plain fields never
go through it.
"""

from __future__ import annotations

import datetime as dt
import html
import re

from lxml import etree

_DOI_PREFIX = re.compile(r"^(https?://(dx\.)?doi\.org/|doi:\s*)", re.I)
_ORCID = re.compile(r"(\d{4}-\d{4}-\d{4}-\d{3}[\dX])", re.I)
# Only terminated references: html.unescape alone would also read "&not" in "a&notation" as ¬.
_ENTITY = re.compile(r"&(?:#[0-9]+|#[xX][0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]*);")
# A `<` opens a tag only when a tag follows (`<i>`, `</jats:p>`, `<a href="x">`, `<br/>`) or
# a comment; any other `<` ("p < 0.05", "x<y and", an unclosed "<b") is text and escaped
# before parsing so the parser cannot swallow what follows it.
_BARE_LT = re.compile(r"<(?!/?[A-Za-z][\w.:-]*(?:\s[^<>]*)?/?>|!--)")
# A leading "Abstract"/"Summary" heading (possibly inside a leading <sec>) repeats the field name.
_LEADING_HEADING = re.compile(
    r"^(\s*(?:<(?:jats:)?(?:sec|abstract)\b[^>]*>\s*)*)<(?:jats:)?title\b[^>]*>\s*(?:abstract|summary)\s*[.:]?\s*</(?:jats:)?title>",
    re.I,
)
# Elements that sit inside a word or line ("<i>b</i><sup>2</sup>" reads "b2"): HTML and JATS
# inline formatting, links, and MathML (also any `mml:` element). Every other element
# (p, div, br, li, title, sec, list-item...) separates text and becomes a space; an unknown
# element counts as a block because a stray space is harmless and merged words are not.
_INLINE = frozenset(
    "a abbr b bdi bdo big cite code del dfn em font i ins kbd mark q s samp small span strike strong sub sup tt u var "
    "sc scp italic bold underline overline monospace roman sans-serif ext-link uri xref email inline-formula "
    "inline-graphic named-content styled-content tex-math "
    "math mi mo mn ms mtext mrow msub msup msubsup mfrac msqrt mroot mstyle mover munder munderover mspace mpadded "
    "mphantom mfenced menclose semantics".split()
)


def plain_text(value: str | None) -> str | None:
    """Plain text as one line (whitespace runs collapsed); None when nothing is left."""
    text = " ".join((value or "").split())
    return text or None


def decode_entities(text: str) -> str:
    """`&amp;`, `&#955;`, `&eacute;` to their characters; a `&` that starts no reference stays."""
    return _ENTITY.sub(lambda match: html.unescape(match.group()), text) if "&" in text else text


def markup_to_text(markup: str | None) -> str | None:
    """Markup (JATS, HTML, MathML) to one line of plain text; None when nothing is left.

    Inline elements vanish without a space, block elements become one, entities are
    decoded, a leading "Abstract"/"Summary" heading is dropped, and a `<` that opens no
    tag stays text. Namespace prefixes (`jats:p`) need no declaration: the HTML parser
    reads them as plain names.
    """
    if not markup:
        return None
    if "<" not in markup:
        return plain_text(decode_entities(markup))
    text = _BARE_LT.sub("&lt;", _LEADING_HEADING.sub(r"\1", markup))
    # A parser per call: lxml parser objects must not be shared between threads, and one costs < 1 µs.
    parser = etree.HTMLParser(recover=True, no_network=True, remove_comments=True, remove_pis=True)
    root = etree.HTML(f"<div>{text}</div>", parser)
    for element in root.iter():
        prefix, _, name = element.tag.rpartition(":")
        if name not in _INLINE and prefix != "mml":
            element.text = " " + (element.text or "")
            element.tail = " " + (element.tail or "")
    return plain_text("".join(root.itertext()))


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
    except (ValueError, OverflowError):  # e.g. month 13 or February 30 in a deposit
        return (dt.date(year, 1, 1), "year") if 1 <= year <= 9999 else (None, None)


def iso_date(value: str | None) -> tuple[dt.date | None, str | None]:
    """`2024-03-01`, `2024-03` or `2024` (with any time suffix) as a partial date."""
    match = re.match(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?", value or "")
    if not match:
        return None, None
    return partial_date(*(int(g) if g else None for g in match.groups()))
