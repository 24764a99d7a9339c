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
from collections.abc import Iterable
from typing import NamedTuple

from lxml import etree

_DOI_PREFIX = re.compile(r"^(https?://(dx\.)?doi\.org/|doi:\s*)", re.I)
_ORCID = re.compile(r"(\d{4}-\d{4}-\d{4}-\d{3}[\dX])", re.I)
# Only terminated references: html.unescape alone would also read "&not" in "a&notation" as ¬.
# A given name or an initial: letters with inner hyphens or apostrophes, an optional full stop (`J.-P.`).
_GIVEN_NAME = re.compile(r"[^\W\d_][^\W\d_]*(?:[-'][^\W\d_]+)*\.?(?:-[^\W\d_]\.?)?")
NOT_A_PERSONS_NAME = frozenset(
    "jr sr ii iii iv phd md msc dr prof university universität université universidad institute institut department "
    "consortium collaboration group center centre laboratory college school hospital society association team "
    "committee network foundation inc ltd llc ministry organization organisation commission agency bureau directorate "
    "government authority programme program project initiative federation academy corporation company secretariat "
    "of for and the".split()  # not Bank, Board, Service, Trust, Union...: family names too
)
_REFERENCE = r"#[0-9]+|#[xX][0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]*"  # what may stand between `&` and `;`
_ENTITY = re.compile(rf"&(?:{_REFERENCE});")
# An `&` that starts no terminated reference is text: escaped before the HTML parser reads it, since that parser
# would decode a legacy name without its `;` (`?id=1&section=2` would read `?id=1§ion=2`).
_BARE_AMPERSAND = re.compile(rf"&(?!(?:{_REFERENCE});)")
# Characters that no XML text may hold (lxml refuses them: "All strings must be XML compatible"):
# C0 controls other than tab, line feed and carriage return, and the non-characters U+FFFE
# and U+FFFF. They carry no text, so each becomes a space (a run of them collapses with the
# whitespace around it). A lone surrogate is half of a lost character and becomes U+FFFD.
CONTROL_CHARACTERS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
LONE_SURROGATES = re.compile("[\ud800-\udfff]")
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")

# Elements that sit inside a word or line ("<i>b</i><sup>2</sup>" reads "b2"): HTML and JATS
# inline formatting, links, and MathML (also any `mml:` element).
_INLINE = frozenset(
    "a abbr b bdi bdo big cite code del dfn em font i ins kbd mark q s samp small span strike strong sub sup tt u var "
    "img wbr nobr ruby rb rt rp ovl "
    "sc scp italic bold underline overline monospace roman sans-serif ext-link uri xref email inline-formula "
    "inline-graphic named-content styled-content tex-math abbrev private-char chem-struct "
    "math mi mo mn ms mtext mrow msub msup msubsup mfrac msqrt mroot mstyle mover munder munderover mspace mpadded "
    "mphantom mfenced menclose semantics".split()
)
# Elements that separate text and become a space: HTML blocks and JATS structure.
_BLOCK = frozenset(
    "p div br hr li ul ol dl dt dd h1 h2 h3 h4 h5 h6 blockquote pre center section article header footer aside "
    "figure figcaption table caption thead tbody tfoot tr td th "
    "title sec abstract trans-abstract list list-item label def-list def-item term def disp-formula disp-quote fig "
    "fig-group graphic media table-wrap table-wrap-foot fn fn-group break boxed-text kwd-group kwd attrib statement "
    "preformat alternatives annotation annotation-xml mtable mtr mtd mlabeledtr mmultiscripts mprescripts".split()
)


def _trie_pattern(words: Iterable[str]) -> str:
    """A regex matching any of `words`, as a trie: the alternatives branch on one character at a time.

    A flat `a|abbr|b|...` of some 170 names is tried name by name at every `<`: five times
    slower, which made a tag-dense JATS abstract 1.7 times slower to convert.
    """
    trie: dict[str, dict] = {}
    for word in words:
        node = trie
        for character in word:
            node = node.setdefault(character, {})
        node[""] = {}  # a word ends here

    def pattern(node: dict[str, dict]) -> str:
        branches = [re.escape(character) + pattern(child) for character, child in sorted(node.items()) if character]
        if not branches:
            return ""
        alternation = branches[0] if len(branches) == 1 else f"(?:{'|'.join(branches)})"
        return f"(?:{alternation})?" if "" in node else alternation

    return pattern(trie)


# Only known markup is markup. A `<` opens a tag when one of those elements follows (`<i>`,
# `</jats:p>`, `<a href="x">`, `<br/>`; names in any case), with or without a `jats:`/`mml:`
# prefix (any element with one of these prefixes is markup, and an unlisted `jats:` one counts
# as a block: a stray space is harmless, merged words are not), or a comment. Attributes must
# have values, so "a<b and c>d" is text. Any other `<` ("p < 0.05", "Optional<T> types",
# "The <canvas> element", an unclosed "<b") is text and is escaped before parsing, so the
# parser can neither swallow what follows it nor read it as an element. What stays ambiguous
# is a listed name meant as text: "The <b> tag" reads "The tag", "Supplier<U>" reads "Supplier".
_TAG_NAME = rf"(?:(?i:jats|mml):[A-Za-z][\w.-]*|(?i:{_trie_pattern(_INLINE | _BLOCK)}))"
_ATTRIBUTE = r"""\s+[A-Za-z_:][\w:.-]*\s*=\s*(?:"[^"<]*"|'[^'<]*'|[^\s"'<>=`]+)"""
_BARE_LT = re.compile(rf"<(?!/?{_TAG_NAME}(?:{_ATTRIBUTE})*\s*/?>|!--)")
# A leading "Abstract"/"Summary" heading (possibly inside a leading <sec>) repeats the field name.
_LEADING_HEADING = re.compile(
    r"^(\s*(?:<(?:jats:)?(?:sec|abstract)\b[^>]*>\s*)*)<(?:jats:)?title\b[^>]*>\s*(?:abstract|summary)\s*[.:]?\s*</(?:jats:)?title>",
    re.I,
)


def plain_text(value: str | None) -> str | None:
    """Plain text as one line (whitespace runs collapsed); None when nothing is left."""
    text = " ".join((value or "").split())
    return text or None


def decode_entities(text: str) -> str:
    """`&amp;`, `&#955;`, `&eacute;` to their characters; a `&` that starts no reference stays."""
    return _ENTITY.sub(lambda match: html.unescape(match.group()), text) if "&" in text else text


def _separates(tag: str) -> bool:
    """Block elements separate text; inline ones (and any `mml:` element) sit inside a word."""
    prefix, _, name = tag.rpartition(":")
    return name not in _INLINE and prefix != "mml"


# `_separates` of every known name, bare and prefixed, looked up once per element (lxml adds html and body).
_SEPARATES = {tag: _separates(tag) for name in _INLINE | _BLOCK | {"html", "body"} for tag in (name, f"jats:{name}", f"mml:{name}")}


# A formula's other encodings: MathML annotations (TeX, or another markup, of the formula they annotate) and, in
# JATS `<alternatives>`, a TeX formula beside its MathML rendering. Read, each would write the formula twice.
_OTHER_RENDERINGS = frozenset(f"{prefix}{name}" for prefix in ("", "mml:", "jats:") for name in ("annotation", "annotation-xml", "tex-math"))


def _renders_again(element: etree._Element) -> bool:
    """Whether `element` (one of _OTHER_RENDERINGS) encodes a formula that its neighbours give as text already: an
    annotation in MathML's `semantics` (JATS has an `annotation` of its own, a note, which is text), or TeX in
    `alternatives` beside MathML."""
    parent = element.getparent()
    where = parent.tag.rpartition(":")[2] if parent is not None else None
    if not element.tag.endswith("tex-math"):
        return where == "semantics"
    return where == "alternatives" and any(
        isinstance(sibling.tag, str) and sibling.tag.rpartition(":")[2] == "math" for sibling in parent)


def xml_safe(text: str) -> str:
    """`text` without the characters XML cannot hold: each control character (see above) as a space, a lone surrogate as U+FFFD."""
    if not _NOT_XML.search(text):
        return text
    return CONTROL_CHARACTERS.sub(" ", LONE_SURROGATES.sub("\ufffd", text))


def markup_to_text(markup: str | None) -> str | None:
    """Markup (JATS, HTML, MathML) to one line of plain text; None when nothing is left.

    Inline elements vanish without a space, block elements become one, entities are
    decoded, a leading "Abstract"/"Summary" heading is dropped, and a `<` that opens no
    known tag stays text (`Optional<T>`, `The <canvas> element`). Namespace prefixes
    (`jats:p`) need no declaration: the HTML parser reads them as plain names. A control
    character, raw or written as a reference (`&#2;`), becomes a space and a lone surrogate
    U+FFFD, so any string converts (`RecordReader` reports the raw ones).
    """
    if not markup:
        return None
    markup = xml_safe(markup)
    if "<" not in markup:
        return plain_text(decode_entities(markup))
    text = _BARE_AMPERSAND.sub("&amp;", _BARE_LT.sub("&lt;", _LEADING_HEADING.sub(r"\1", markup)))
    # A parser per call: lxml parser objects must not be shared between threads, and one costs < 1 µs.
    parser = etree.HTMLParser(recover=True, no_network=True, remove_comments=True, remove_pis=True)
    root = etree.HTML(f"<div>{text}</div>", parser)
    # The text is gathered, never written back into the tree: a reference such as `&#2;` parses
    # to a character that lxml would refuse to store.
    parts = []
    walk = etree.iterwalk(root, events=("start", "end"))
    for event, element in walk:
        separates = _SEPARATES.get(element.tag)
        if separates or (separates is None and _separates(element.tag)):
            parts.append(" ")
        if event == "start":
            if element.tag in _OTHER_RENDERINGS and _renders_again(element):
                walk.skip_subtree()  # its tail is still read, at its end
            elif element.text:
                parts.append(element.text)
        elif element.tail:
            parts.append(element.tail)
    text = "".join(parts)
    return plain_text(xml_safe(text) if "&#" in markup else text)  # only a reference can bring one back


def bare_doi(value: str | None) -> str | None:
    """`https://doi.org/10.1/X` or `doi:10.1/X` to `10.1/x`; None unless it looks like a DOI."""
    if not value:
        return None
    doi = _DOI_PREFIX.sub("", value.strip()).lower()
    return doi if doi.startswith("10.") else None


def name_in_reading_order(name: str | None) -> str | None:
    """`Conway, Rana E.` (family name first, as Springer and repository metadata write it) to `Rana E. Conway`.

    Only a name that is surely a person's is turned: one comma, at most four words on each
    side, the part after it given names or initials (`Rana E.`, `J.-P.`), neither side
    holding a suffix or a word of an organisation. So `University of California, Berkeley`,
    `Smith, John, Jr.`, `John Smith, PhD` and `The ATLAS Collaboration` stay as written.
    """
    text = plain_text(name)
    if text is None or text.count(",") != 1:
        return text
    family, given = (part.strip() for part in text.split(","))
    family_words, given_words = family.split(), given.split()
    person = (
        0 < len(family_words) <= 4 and 0 < len(given_words) <= 4
        and all(_GIVEN_NAME.fullmatch(word) for word in given_words)
        and not {w.strip(".").lower() for w in family_words + given_words} & NOT_A_PERSONS_NAME
    )
    return f"{given} {family}" if person else text


def bare_orcid(value: str | None) -> str | None:
    """`https://orcid.org/0000-0002-1825-0097` to `0000-0002-1825-0097`."""
    match = _ORCID.search(value or "")
    return match.group(1).upper() if match else None


class PartialDate(NamedTuple):
    """A date as read, with whether the value held more than it keeps."""

    date: dt.date | None  # the first day of its period
    precision: str | None  # 'year', 'month' or 'day'
    lost: bool = False  # a part of the value could not be kept: an impossible month or day, year or string


_PRECISION_RANK = {None: 0, "year": 1, "month": 2, "day": 3}
_ISO_DATE = re.compile(r"(\d{4})(?!\d)(?:-(\d{2})(?:-(\d{2}))?)?")  # not the first 4 digits of "12024"


def partial_date(year: int | None, month: int | None = None, day: int | None = None) -> tuple[dt.date | None, str | None]:
    """A possibly partial date as (first day of its period, precision).

    Providers often know only the year or the month. Days are never invented silently:
    the date is the period's first day and the precision ('year', 'month', 'day') says
    how much of it is real. An impossible date keeps only its year (None when the year
    is impossible too); `read_partial_date` tells when that happened.
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


def read_partial_date(year: int | None, month: int | None = None, day: int | None = None) -> PartialDate:
    """`partial_date`, and `lost` when a part that was given is not kept.

    That is a month or day that makes no date (2024-02-30, month 13 or 0, a day without a
    month: the year is kept) or a year outside 1..9999 (no date). An absent part (None)
    is not lost.
    """
    published, precision = partial_date(year, month, day)
    given = 3 if day is not None else 2 if month is not None else 1 if year is not None else 0
    return PartialDate(published, precision, _PRECISION_RANK[precision] < given)


def read_iso_date(value: str | None) -> PartialDate:
    """`iso_date`, and `lost` when part of the value is not kept.

    That is an impossible date (`2024-02-30`, `2024-13-01`, `0000-01-01`), a value that is
    no date at all (`n/a`), or a month or day not written as two digits (`2024-3-1` keeps
    its year). A time after the date (`T12:00:00` or ` 12:00`) is not a lost part.
    """
    if not value:
        return PartialDate(None, None)
    match = _ISO_DATE.match(value)
    if not match:
        return PartialDate(None, None, True)
    read = read_partial_date(*(int(g) if g else None for g in match.groups()))
    rest = value[match.end() :]
    return read._replace(lost=True) if rest and rest[0] not in "Tt " else read


def iso_date(value: str | None) -> tuple[dt.date | None, str | None]:
    """`2024-03-01`, `2024-03` or `2024` (with any time suffix) as a partial date."""
    return read_iso_date(value)[:2]
