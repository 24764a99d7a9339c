"""OpenAlex `/works`: publication-date filter, cursor paging, abstracts from inverted indexes.

Wire format: {"meta": {"count", "next_cursor", ...}, "results": [work, ...]}. Paging ends
when `next_cursor` is null or a page comes back empty. The search text goes into a
`title_and_abstract.search` filter: plain `search=` calls cost ten times the daily budget.

Text fields:
- `abstract_inverted_index` is plain text split into words. It is never parsed as markup
  ("(<5" and "<1%" occur in the recorded pages), but the words keep the publisher's HTML
  entities ("R&amp;D"), so those are decoded, and some line ends come escaped twice
  (`&#13;` and a literal backslash-n), so those become spaces.
- `title` is read as markup: OpenAlex copies titles from Crossref deposits, where inline
  tags (`<i>`, `<sub>`) and entities are common. The recorded pages hold none, and a `<`
  that opens no known tag stays text (`Optional<T> types`, `The <canvas> element`), so a
  plain title comes through unchanged.

Identifiers: `ids.pmid` (`https://pubmed.ncbi.nlm.nih.gov/12345678`) and `ids.pmcid` (a PMC article
URL, with or without `PMC` before the digits) give `pmid` and `pmcid`; `ids` holds no arXiv id,
but an arXiv e-print's DOI is arXiv's (`10.48550/arxiv.2007.14454` in the recorded pages),
which names it.

Dates: OpenAlex stores a year-only date as YYYY-01-01 and a month-only one as YYYY-MM-01,
with nothing in the record saying so. In the recorded 200-work page 73 dates fall on
1 January and 60 on the 1st of another month (by chance: about 1 and 6). So a date on
the 1st claims only what is certain: 1 January has precision 'year' and the 1st of
another month 'month'. A real 1 January is understated, never a filled-in day claimed.
"""

from __future__ import annotations

import datetime as dt
import re
from itertools import chain, repeat
from operator import itemgetter
from typing import Any

from scholar_pipeline.providers.base import (
    SET_TO_NULL, Credential, PageInfo, PageRequest, ParsedRecords, Provider, RecordReader, SearchTextError, load_json, read_records,
    require,
)
from scholar_pipeline.settings import ProviderSettings
from scholar_pipeline.text import bare_doi, bare_orcid, decode_entities, markup_to_text, plain_text, read_iso_date, read_partial_date

MAX_PER_PAGE = 100  # developers.openalex.org; older docs allowed 200
_NOT_A_NAME = re.compile(r"(?i)(?:https?://|www\.|doi:|10\.\d{4,9}/)")  # a URL or a DOI where a venue's name belongs


class OpenAlex(Provider):
    name = "openalex"
    defaults = ProviderSettings(base_url="https://api.openalex.org", rate_limit=10.0, page_size=100, max_records=200_000)
    credential = Credential(env="OPENALEX_API_KEY", query_param="api_key")
    drift_opaque_fields = frozenset({"abstract_inverted_index"})  # keyed by the abstract's words

    def throttling(self, status: int, body: bytes) -> bool:
        # Its errors page lists 403 "Rate limit exceeded; slow down" beside 429 (developers.openalex.org). Only those
        # words, and never a body about the key: a refused key or plan must fail at once, not after six attempts.
        text = body.lower()
        return status == 403 and b"rate limit exceeded" in text and b"api key" not in text and b"api_key" not in text

    def first_request(self, text: str, day: dt.date, page_size: int, mailto: str | None) -> PageRequest:
        filters = f"title_and_abstract.search:{self.search_terms(text)},from_publication_date:{day},to_publication_date:{day}"
        params = [("filter", filters), ("per_page", str(min(page_size, MAX_PER_PAGE))), ("cursor", "*")]
        if mailto:
            params.append(("mailto", mailto))
        return PageRequest("/works", tuple(params))

    def search_terms(self, text: str) -> str:
        """The text as a filter value: `,` ends a filter, `|` ORs values and a leading `!` negates, with no escape.

        The search splits words at punctuation, so a comma means what a space means and
        becomes one, and a leading `!` is dropped. A `|` is refused: sent, it splits the
        filter into OR-ed values; dropped, it would make alternatives required words. The
        search itself reads OR (and AND, NOT, quotes, parentheses), so the user can write that.
        """
        terms = super().search_terms(text.replace(",", " ").replace("|", " "))
        if "|" in text:
            raise SearchTextError(f"{text!r}: `|` would split the OpenAlex search into OR-ed filter values; write OR between alternatives")
        return terms.lstrip("! ")

    def inspect(self, request: PageRequest, body: bytes) -> PageInfo:
        page = _page(body)
        results, cursor = page["results"], page["meta"].get("next_cursor")
        following = request.with_param("cursor", cursor) if cursor and results else None
        return PageInfo(records=len(results), total=page["meta"].get("count"), next_request=following)

    def raw_records(self, body: bytes) -> list[Any]:
        return _page(body)["results"]

    def read_raw_records(self, raw_records: list[Any]) -> ParsedRecords:
        return read_records(self.name, "results", raw_records, _work)


def _page(body: bytes) -> dict[str, Any]:
    page = load_json("openalex", body)
    require("openalex", isinstance(page, dict) and isinstance(page.get("results"), list), "no `results` list", body)
    require("openalex", isinstance(page.get("meta"), dict), "no `meta` object", body)
    return page


def abstract_from_inverted_index(index: dict[str, list[int]] | None) -> str | None:
    """OpenAlex ships abstracts as {word: [positions]}; put the words back in order.

    TypeError for any other shape, so that a damaged index is reported rather than misread.
    """
    if not index:
        return None
    # Type checks by set(map(type, ...)) run at C speed: an abstract holds a few hundred positions.
    if not isinstance(index, dict) or not set(map(type, index.values())) <= {list}:
        raise TypeError(f"{index!r:.80} is not an object of position lists")
    positions = list(chain.from_iterable(index.values()))
    if not set(map(type, positions)) <= {int}:
        raise TypeError(f"{index!r:.80} holds positions that are not integers")
    text = " ".join(_in_position_order(index, positions))
    return plain_text(decode_entities(text.replace("&#13;\\n", " ")))


def _in_position_order(index: dict[str, list[int]], positions: list[int]) -> list[str]:
    """The words sorted by position, and by word where a position is given twice.

    An abstract's positions are almost always 0 to n-1, each once: then each word goes
    straight into its slot, a third of the time of sorting (position, word) pairs, which
    any other index gets (a gap, a position given twice, a negative one).
    """
    slots: list[str | None] = [None] * len(positions)
    if min(positions, default=0) >= 0:
        try:
            for word, at in index.items():
                for position in at:
                    slots[position] = word
        except IndexError:  # a position past the last slot: there is a gap
            pass
        else:
            if None not in slots:  # n positions filling n slots: each position once
                return slots
    words = chain.from_iterable(repeat(word, len(at)) for word, at in index.items())
    return list(map(itemgetter(1), sorted(zip(positions, words))))


def _work_id(url: str) -> str | None:
    """`https://openalex.org/W123` to `W123`."""
    return url.rsplit("/", 1)[-1].strip() or None


def _work(r: RecordReader) -> dict[str, Any]:
    provider_id = r.identify("id", _work_id)
    published, precision = _publication_date(r)
    authorships = r.objects("authorships")
    doi = r.text("doi")
    return {
        "provider": "openalex",
        "provider_id": provider_id,
        "doi": bare_doi(doi),
        "pmid": r.identifier("pmid", "ids", "pmid"),
        "pmcid": r.identifier("pmcid", "ids", "pmcid"),
        "arxiv_id": r.arxiv_id_of_doi(("doi",), doi),
        "title": markup_to_text(r.text("title") or r.text("display_name")),
        "abstract": _abstract(r),
        "authors": None if authorships is None else [_author(a) for a in authorships],
        "publication_date": published,
        "publication_date_precision": precision,
        "venue": r.text("primary_location", "source", "display_name") or _raw_source_name(r),
        "publisher": r.text("primary_location", "source", "host_organization_name"),
        "work_type": r.text("type"),
        "language": r.text("language"),
        "is_oa": r.boolean("open_access", "is_oa"),
        "oa_url": r.text("open_access", "oa_url"),
        "license": r.text("primary_location", "license") or _same_version_license(r),
        "cited_by_count": r.integer("cited_by_count"),
        "url": r.text("primary_location", "landing_page_url") or r.text("id"),
    }


def _raw_source_name(r: RecordReader) -> str | None:
    """`primary_location.raw_source_name`, the venue as the work's metadata names it when OpenAlex matched no source:
    entities decoded (`Health, Safety &amp; Environment`), and nothing when it is empty or a URL (or DOI), which
    repositories give there (`http://ageconsearch.umn.edu/record/37920` in the recorded pages)."""
    name = plain_text(decode_entities(r.text("primary_location", "raw_source_name") or ""))
    return None if name is None or _NOT_A_NAME.match(name) else name


def _same_version_license(r: RecordReader) -> str | None:
    """The licence of the best open copy when it is the version the primary location holds (the published version
    when the primary location names none): a repository's preprint or accepted manuscript licensed `cc-by-nc-nd` does
    not license the closed journal article (W2011555605 in the recorded pages), while a working paper's copy in
    another repository licenses the working paper."""
    version, primary = r.text("best_oa_location", "version"), r.text("primary_location", "version")
    same = version == primary if primary else version == "publishedVersion"  # no version given: the work as published
    return r.text("best_oa_location", "license") if version and same else None


def _publication_date(r: RecordReader) -> tuple[dt.date | None, str | None]:
    """`publication_date`, or `publication_year` alone; a date on the 1st is as precise as the module docstring says.

    A date that is no date, or an impossible one, is reported: `2024-02-30` is kept as its
    year, `0000-01-01` is read as null (so `publication_year` serves).
    """
    value = r.text("publication_date")
    published, precision = r.date(("publication_date",), value, read_iso_date(value))
    if published is None:
        year = r.integer("publication_year")
        return r.date(("publication_year",), year, read_partial_date(year))
    if published.day == 1 and precision == "day":
        precision = "year" if published.month == 1 else "month"
    return published, precision


def _abstract(r: RecordReader) -> str | None:
    index = r.value("abstract_inverted_index")
    try:
        abstract = abstract_from_inverted_index(index)
    except TypeError:
        r.report(("abstract_inverted_index",), index, SET_TO_NULL)
        return None
    if not abstract:
        return None
    # The words are strings of the record too: cleaned as such, since rebuilding the text has
    # already turned some control characters (\x0b, \x1f...) into spaces unseen.
    r.clean(("abstract_inverted_index",), " ".join(index))
    cleaned = r.clean(("abstract_inverted_index",), abstract)
    return abstract if cleaned is abstract else plain_text(cleaned)


def _author(a: RecordReader) -> dict[str, Any]:
    institutions = [i.text("display_name") for i in a.objects("institutions") or ()]
    return {
        "name": a.text("author", "display_name") or a.text("raw_author_name"),
        "orcid": bare_orcid(a.text("author", "orcid")),
        "affiliations": [i for i in institutions if i] or [text for text in a.texts("raw_affiliation_strings") if text.strip()],
    }
