"""Work identifiers besides the DOI, bare and checked: PubMed ids, PubMed Central ids, arXiv ids.

`works` stores them as `unique_works` matches on them, one spelling each: a PMID as its
digits (`12345678`), a PMCID as `PMC` and its digits (`PMC1234567`), an arXiv id without
version (`2401.01234`, old-style `hep-th/9901001`). Providers write them as URLs, with
`PMC` in any case, with `arXiv:` and a version, inside a DOI (`10.48550/arXiv.2401.01234`,
arXiv's DataCite DOIs) or inside an OAI identifier (`oai:arXiv.org:2401.01234`, CORE).

Each `bare_*` function gives the bare id, or None when the value is not one, so that the
readers set the column to NULL and report the value (`RecordReader.bare_identifier`):
an id that merely looks close (`PMC0`, `2401.1234` after 2014, a month 13) would match
the wrong work or none, and a wrong match merges two works for good.

What is checked, after surrounding whitespace goes:
- PMID: digits without a leading zero, at most 9 (PubMed's are 8 today), alone, after
  `PMID:`, or ending a PubMed URL (`https://pubmed.ncbi.nlm.nih.gov/12345678/`).
- PMCID: `PMC` (any case) and digits without a leading zero, alone, after `PMCID:`, or
  ending a PMC article URL, where the digits may come without `PMC` (OpenAlex documents
  `https://www.ncbi.nlm.nih.gov/pmc/articles/5815332`). Bare digits are refused unless the
  field says it holds a PMCID: elsewhere they are as likely a PMID.
- arXiv: new style `YYMM.NNNN` from 0704 to 1412 and `YYMM.NNNNN` from 1501 (arXiv's
  scheme), month 01 to 12, number not all zeros; old style `archive/YYMMNNN` (`hep-th`,
  `math`, an optional subject class `math.GT` dropped: it is no part of the id) from
  9108 to 0703. An optional `arXiv:` before and version after (`v2`), or an arxiv.org
  `abs`/`pdf` URL around it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from scholar_pipeline.text import bare_doi

_DIGITS = "[1-9][0-9]{0,8}"  # [0-9], not \d: no other script's digits
_PMID = re.compile(rf"(?:pmid:?\s*|https?://(?:pubmed\.ncbi\.nlm\.nih\.gov|(?:www\.)?ncbi\.nlm\.nih\.gov/pubmed)/)?({_DIGITS})/?", re.I)
_PMC_URL = r"https?://(?:(?:www\.)?ncbi\.nlm\.nih\.gov/pmc/articles|pmc\.ncbi\.nlm\.nih\.gov/articles)/(?:pmc)?"
_PMCID = re.compile(rf"(?:{_PMC_URL}|(?:pmcid:?\s*)?pmc)({_DIGITS})/?", re.I)
_ARXIV_BODY = r"(?:(?P<yymm>[0-9]{4})\.(?P<number>[0-9]{4,5})|(?P<archive>[a-z]+(?:-[a-z]+)?)(?:\.[a-z]{2})?/(?P<old_yymm>[0-9]{4})(?P<old_number>[0-9]{3}))"
_ARXIV = re.compile(rf"(?:arxiv:\s*|https?://(?:www\.|export\.)?arxiv\.org/(?:abs|pdf)/)?{_ARXIV_BODY}(?:v[1-9][0-9]*)?(?:\.pdf)?/?", re.I)
_ARXIV_UNVERSIONED = re.compile(_ARXIV_BODY, re.I)
ARXIV_DOI_PREFIX = "10.48550/arxiv."  # arXiv's DataCite DOIs, bare and lower case as `text.bare_doi` gives them
_OAI = re.compile(r"oai:([^:]+):(.+)", re.I)


def bare_pmid(value: str | None) -> str | None:
    """`12345678`, `PMID: 12345678` or a PubMed URL to `12345678`; None unless it is a PMID."""
    match = _PMID.fullmatch(value.strip()) if value else None
    return match.group(1) if match else None


def bare_pmcid(value: str | None, digits_alone: bool = False) -> str | None:
    """`PMC1234567`, `pmc1234567`, `PMCID: PMC1234567` or a PMC article URL to `PMC1234567`; None unless it is a PMCID.

    `digits_alone` takes `1234567` too, for a field that says it holds a PMCID (PubMed's
    `ArticleId IdType="pmc"`, which its reference lists write without `PMC`)."""
    value = value.strip() if value else ""
    match = _PMCID.fullmatch(f"PMC{value}" if digits_alone and value.isascii() and value.isdigit() else value)
    return f"PMC{match.group(1)}" if match else None


def bare_arxiv_id(value: str | None) -> str | None:
    """`arXiv:2401.01234v3`, `2401.01234`, `http://arxiv.org/abs/hep-th/9901001v2` to `2401.01234` / `hep-th/9901001`
    (no version); None unless it is an arXiv id."""
    match = _ARXIV.fullmatch(value.strip()) if value else None
    return _valid_arxiv_id(match) if match else None


def is_arxiv_doi(doi: str | None) -> bool:
    """Whether `doi` (bare or a doi.org link, any case) is one of arXiv's DOIs, whose suffix names an arXiv id."""
    bare = bare_doi(doi)
    return bare is not None and bare.startswith(ARXIV_DOI_PREFIX)


def arxiv_id_from_doi(doi: str | None) -> str | None:
    """`10.48550/arXiv.2401.01234` (bare or a link, any case) to `2401.01234`; None for another DOI or a suffix that is
    no arXiv id. arXiv mints its DOIs without a version, so one with a version is none of them."""
    bare = bare_doi(doi)
    if bare is None or not bare.startswith(ARXIV_DOI_PREFIX):
        return None
    match = _ARXIV_UNVERSIONED.fullmatch(bare[len(ARXIV_DOI_PREFIX):])
    return _valid_arxiv_id(match) if match else None


def oai_repository(oai_id: str | None) -> str | None:
    """The repository an OAI identifier names, lower case: `oai:arXiv.org:2401.01234` gives `arxiv.org`."""
    match = _OAI.fullmatch(oai_id.strip()) if oai_id else None
    return match.group(1).lower() if match else None


def arxiv_id_from_oai(oai_id: str | None) -> str | None:
    """`oai:arXiv.org:2401.01234` (arXiv's OAI-PMH identifiers) to `2401.01234`; None for another repository or id."""
    return _from_oai(oai_id, "arxiv.org", bare_arxiv_id)


def pmcid_from_oai(oai_id: str | None) -> str | None:
    """`oai:pubmedcentral.nih.gov:1234567` (PMC's OAI-PMH identifiers, digits alone) to `PMC1234567`; None otherwise."""
    return _from_oai(oai_id, "pubmedcentral.nih.gov", lambda digits: bare_pmcid(digits, digits_alone=True))


def _from_oai(oai_id: str | None, repository: str, to_id: Callable[[str], str | None]) -> str | None:
    match = _OAI.fullmatch(oai_id.strip()) if oai_id else None
    return to_id(match.group(2)) if match and match.group(1).lower() == repository else None


def _valid_arxiv_id(match: re.Match[str]) -> str | None:
    """The id a match of `_ARXIV_BODY` names, if arXiv's numbering allows it."""
    if match.group("yymm"):
        yymm, number = match.group("yymm"), match.group("number")
        digits = 4 if yymm < "1501" else 5  # four-digit numbers until December 2014, five since January 2015
        if "0704" <= yymm and _month(yymm) and len(number) == digits and int(number):
            return f"{yymm}.{number}"
        return None
    yymm, number = match.group("old_yymm"), match.group("old_number")
    in_range = yymm >= "9108" or yymm <= "0703"  # August 1991 to March 2007, when the new scheme began
    if in_range and _month(yymm) and int(number):
        return f"{match.group('archive').lower()}/{yymm}{number}"
    return None


def _month(yymm: str) -> bool:
    return 1 <= int(yymm[2:]) <= 12


# What each identifier column holds, as the readers check it (`RecordReader.bare_identifier`).
BARE: dict[str, Callable[[str | None], str | None]] = {"pmid": bare_pmid, "pmcid": bare_pmcid, "arxiv_id": bare_arxiv_id}
