"""NCBI E-utilities for PubMed: `esearch.fcgi` with the history server, then `efetch.fcgi` in batches (XML).

Two steps. The first request is ESearch (`db=pubmed`, `term`, `datetype=pdat`,
`mindate`=`maxdate`=`YYYY/MM/DD`, `usehistory=y`, `retmax=0`, `tool`, `email` when a
contact address is set): it holds no records (`holds_records=False`: fetched and landed,
never normalized) and answers `eSearchResult` with `Count`, `QueryKey` and `WebEnv`, the
search stored on NCBI's history server. Its `inspect` returns the first EFetch request
(`db=pubmed`, `WebEnv`, `query_key`, `retstart=0`, `retmax`=page size, `retmode=xml`);
each EFetch page's `inspect` moves `retstart` on by `retmax` until `Count`. The stored
result set keeps its positions, so a batch with fewer articles than asked for (a PMID
withdrawn since the search) does not shift the next one; an empty batch where records
remain is refused (MalformedPage), since taking it as the end would drop the rest.

Limits: PubMed's ESearch serves no more than the first 10,000 records of a search
(`MAX_TOTAL`), so a day reporting more fails on the esearch page with `PartitionTooLarge`
saying to narrow the search, instead of landing part of the day. Without an API key NCBI
allows 3 requests a second (the default rate); with `PUBMED_API_KEY` (sent as `api_key`,
added below the HTTP cache like every secret) it allows 10, the default then.

Errors NCBI sends as data, each a MalformedPage (the fetch evicts the page and fails the
partition with the message; issue 6 retries them):
- the rate-limit error as JSON, `{"error":"API rate limit exceeded",...}`, which also comes
  with status 200;
- an `ERROR` element in `eSearchResult` (bad term, retstart past 9,998) or an
  `eFetchResult/ERROR` (history lost, an unknown WebEnv);
- an esearch answer without `WebEnv`/`QueryKey`, a body that is not XML.

Records (`PubmedArticleSet/PubmedArticle`, parsed with lxml; `PubmedBookArticle` too):
- `provider_id` the PMID; `url` `https://pubmed.ncbi.nlm.nih.gov/<pmid>/`;
- `doi` from `PubmedData/ArticleIdList/ArticleId[@IdType=doi]`, else from
  `Article/ELocationID[@EIdType=doi]` (unless ValidYN="N");
- `pmid` the PMID (else `ArticleId[@IdType=pubmed]`), `pmcid` `ArticleId[@IdType=pmc]`
  (`PMC1234567`), each checked (identifiers.py); `arxiv_id` the one an arXiv DOI names
  (`10.48550/arXiv.2401.01234`: the preprints of the NIH Preprint Pilot);
- `title` from `ArticleTitle` (else `VernacularTitle`), which holds inline markup
  (`<i>`, `<sup>`, `<sub>`, MathML): converted with `markup_to_text`;
- `abstract` from `Abstract/AbstractText`, markup too; a structured abstract keeps its
  labels: "BACKGROUND: … METHODS: …";
- `authors` from the `AuthorList` of authors (not editors, nor an author marked
  `ValidYN="N"`, a misspelling kept beside the corrected name): "ForeName LastName" (the
  initials when there is no fore name) or `CollectiveName`, ORCID from
  `Identifier[@Source=ORCID]`, affiliations from `AffiliationInfo/Affiliation`;
- `venue` `Journal/Title`; `language` the first `Language`, ISO 639-2 codes mapped to
  the two-letter codes the other providers use (others kept as sent, `und` dropped);
  `work_type` the first `PublicationType` ("Journal Article", "Review"...);
- `publication_date`: the electronic `ArticleDate` when there is one, else the issue's
  `PubDate`. An ArticleDate is the day the article first appeared (before or with its
  issue), always to the day, and PubMed's `pdat` (the partition's window) matches it
  as well as the print date; PubDate often names only a month or a season. PubDate is
  `Year`/`Month`(`Mar` or `03`)/`Day` at the precision given, or `MedlineDate` free text
  read honestly: "2019 Mar-Apr" is March 2019 to the month, "2018 Winter" and "2019-2020"
  the year 2018/2019, "2019 Mar 15-21" March 2019 to the month;
- `is_oa`: True with `oa_url` the PMC article when a valid PMC id is listed and no
  `pmc-release` date (an embargo, which a pure normalization cannot compare with today)
  is; otherwise unknown (NULL). PubMed has no publisher, license or citation count.

Bad values: each article is read into a dict (element name -> text; a dict of `@attribute`
and `#text` for the elements listed in `_ATTRIBUTED`; a dict of its children otherwise,
repeated ones as lists; the inner markup as a string for `_MARKUP` elements) and goes
through `RecordReader`, so the rule in normalize.py holds: an element holding the wrong
shape is read as null and reported under its path (`MedlineCitation.Article.Journal.Title`);
an article without a usable PMID fails its page (RecordError).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
from dataclasses import dataclass, replace
from typing import Any, NamedTuple
from xml.sax.saxutils import escape

from lxml import etree

from scholar_pipeline.identifiers import bare_pmcid
from scholar_pipeline.providers.base import (
    Credential, MalformedPage, PageInfo, PageRequest, ParsedRecords, PartitionTooLarge, Provider, RecordReader, SearchTextError,
    add_child, read_records, require,
)
from scholar_pipeline.providers.boolean_query import QueryLanguage
from scholar_pipeline.settings import ProviderSettings
from scholar_pipeline.text import PartialDate, bare_doi, bare_orcid, markup_to_text, plain_text, read_partial_date

MAX_TOTAL = 10_000  # ESearch serves only the first 10,000 records of a PubMed search
MAX_RETMAX = 10_000  # per EFetch request
TOOL = "scholar-pipeline"

_ARTICLES = ("PubmedArticle", "PubmedBookArticle")
# Elements a record may hold several of: always read as lists.
_REPEATED = frozenset({
    "Author", "AffiliationInfo", "Identifier", "AbstractText", "ArticleId", "ELocationID", "PublicationType", "Language",
    "ArticleDate", "PubMedPubDate", "AuthorList", "Reference", "Keyword", "KeywordList", "MeshHeading", "Chemical", "Grant",
    "OtherAbstract", "OtherID", "DataBank", "AccessionNumber", "CommentsCorrections", "SupplMeshName", "GeneSymbol",
    "PersonalNameSubject", "Investigator", "Section", "ReferenceList", "ObjectList", "Object", "Param", "QualifierName",
    "ContributionDate", "Isbn", "ItemList", "Item",
})
# Elements read with their attributes: {"@Attr": value, "#text": text}.
_ATTRIBUTED = frozenset({"ArticleId", "ELocationID", "Identifier", "AbstractText", "PublicationType", "ArticleTitle", "VernacularTitle"})
# Elements holding inline markup (<i>, <sup>, MathML): their content is kept as a markup string.
_MARKUP = frozenset({"ArticleTitle", "VernacularTitle", "AbstractText", "BookTitle"})
_WITH_ATTRIBUTES = _ATTRIBUTED | _MARKUP

_MONTHS = {name: number for number, name in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}
_MEDLINE_DATE = re.compile(r"^\s*(\d{4})(?:\s+([A-Za-z]{3})[a-z]*(?:\s+(\d{1,2}))?)?(.*)$")
# ISO 639-2 (bibliographic) codes PubMed uses, as the two-letter codes of the other providers.
_LANGUAGES = {
    "eng": "en", "ger": "de", "fre": "fr", "spa": "es", "ita": "it", "por": "pt", "rus": "ru", "chi": "zh", "jpn": "ja",
    "kor": "ko", "dut": "nl", "pol": "pl", "swe": "sv", "dan": "da", "nor": "no", "fin": "fi", "cze": "cs", "hun": "hu",
    "tur": "tr", "gre": "el", "heb": "he", "ara": "ar", "per": "fa", "ukr": "uk", "rum": "ro", "slo": "sk", "slv": "sl",
    "hrv": "hr", "srp": "sr", "bul": "bg", "lit": "lt", "lav": "lv", "est": "et", "ice": "is", "ind": "id", "tha": "th",
    "vie": "vi", "hin": "hi", "cat": "ca", "afr": "af", "mul": None, "und": None,
}

# PubMed query syntax: quotes (phrases), parentheses, upper-case AND / OR / NOT, `[tag]` field tags, `*` wildcards, `#n` history.
# Letters and digits make a word, with hyphens and apostrophes inside it (`COVID-19`, `Alzheimer's`).
QUERY_LANGUAGE = QueryLanguage("pubmed", re.compile(r"[^\W_]+(?:['-][^\W_]+)*"))


@dataclass(frozen=True)
class EsearchRequest(PageRequest):
    """The ESearch call, carrying the EFetch batch size (`retmax` of the esearch itself is 0). Not sent."""

    page_size: int = 200


@dataclass(frozen=True)
class EfetchRequest(PageRequest):
    """An EFetch batch, carrying the `Count` its esearch reported: EFetch pages do not repeat it. Not sent."""

    count: int = 0


class PubMed(Provider):
    name = "pubmed"
    # 3 requests a second without a key (NBK25497); batches of 200 articles (about 4 MB of XML).
    defaults = ProviderSettings(base_url="https://eutils.ncbi.nlm.nih.gov/entrez/eutils", rate_limit=3, page_size=200, max_records=MAX_TOTAL)
    credential = Credential(env="PUBMED_API_KEY", query_param="api_key")
    KEYED_RATE_LIMIT = 10.0

    def default_settings(self, mailto: str | None, keyed: bool) -> ProviderSettings:
        return replace(self.defaults, rate_limit=self.KEYED_RATE_LIMIT) if keyed else self.defaults

    def first_request(self, text: str, day: dt.date, page_size: int, mailto: str | None) -> PageRequest:
        stamp = f"{day:%Y/%m/%d}"
        params = (("db", "pubmed"), ("term", self.search_terms(text)), ("datetype", "pdat"), ("mindate", stamp), ("maxdate", stamp),
                  ("usehistory", "y"), ("retmax", "0"), ("tool", TOOL))
        if mailto:
            params += (("email", mailto),)
        return EsearchRequest("/esearch.fcgi", params, holds_records=False, page_size=min(page_size, MAX_RETMAX))

    def search_terms(self, text: str) -> str:
        """The text in PubMed's query syntax, meaning what it means at the other providers.

        Every word must occur (adjacent terms are joined by AND). A word is kept with its
        inner hyphens and apostrophes (`COVID-19`); a word holding other characters is
        searched as the quoted phrase of its pieces (`p53/mdm2` as `"p53 mdm2"`, so no `/`
        reaches PubMed's subheading syntax); a quoted phrase stays a phrase. `AND`, `OR`,
        `NOT` and parentheses are kept; PubMed reads operators strictly left to right, so
        where AND and OR mix the AND runs are parenthesized (AND binds tighter elsewhere).
        Refused (SearchTextError): a text without a word, an unmatched quote or
        parenthesis, an operator without a term on each side (PubMed's NOT is binary),
        `[tag]` field tags and `*` (syntax to PubMed, words elsewhere), `#` (a history
        reference to PubMed).
        """
        super().search_terms(text)
        if "[" in text or "]" in text:
            raise SearchTextError(f"{text!r}: `[...]` is PubMed's field-tag syntax, which the other providers read as words; write the words alone")
        if "*" in text:
            raise SearchTextError(f"{text!r}: PubMed reads `*` as a wildcard and the other providers do not; write whole words")
        if "#" in text:
            raise SearchTextError(f"{text!r}: PubMed reads `#` as a reference to an earlier search; remove it")
        return QUERY_LANGUAGE.write(text)

    def inspect(self, request: PageRequest, body: bytes) -> PageInfo:
        if request.path == "/esearch.fcgi":
            return self._inspect_search(request, body)
        articles = len(_article_set(body))
        count = request.count if isinstance(request, EfetchRequest) else 0
        start = int(request.param("retstart") or 0)
        size = int(request.param("retmax") or 20)
        expected = max(min(size, count - start), 0)
        if not articles and start < count:
            raise MalformedPage(f"pubmed sent an empty batch at retstart={start} although the search reports Count={count}; the history "
                                "server may have lost the search, and taking it as the end would drop the rest of the day")
        if articles != expected:
            raise MalformedPage(f"pubmed sent {articles} articles at retstart={start} where the stored search (Count={count}, "
                                f"retmax={size}) holds {expected}; a batch that does not match would drop or repeat records")
        following = request.with_param("retstart", str(start + size)) if start + size < count else None
        return PageInfo(records=articles, total=count, next_request=following)

    def _inspect_search(self, request: PageRequest, body: bytes) -> PageInfo:
        root = _xml(body)
        require("pubmed", root.tag == "eSearchResult", f"the root element is {root.tag!r}, not eSearchResult", body)
        _raise_error_element(root, "esearch")
        count_text = (root.findtext("Count") or "").strip()
        require("pubmed", count_text.isdigit(), f"`Count` is {count_text!r}, not a count", body)
        count = int(count_text)
        if count > MAX_TOTAL:
            raise PartitionTooLarge(
                f"pubmed reports {count} records for this search and day, more than the {MAX_TOTAL} PubMed's ESearch serves for one "
                "search; narrow the saved search (more or more specific words) so that a day holds fewer"
            )
        if count == 0:
            return PageInfo(records=0, total=0, next_request=None)
        web_env, query_key = (root.findtext("WebEnv") or "").strip(), (root.findtext("QueryKey") or "").strip()
        require("pubmed", bool(web_env) and bool(query_key),
                "no `WebEnv`/`QueryKey`: the search was not stored on the history server (usehistory=y)", body)
        size = request.page_size if isinstance(request, EsearchRequest) else self.defaults.page_size
        params = (("db", "pubmed"), ("WebEnv", web_env), ("query_key", query_key), ("retstart", "0"), ("retmax", str(size)),
                  ("retmode", "xml"), ("tool", TOOL))
        if request.param("email"):
            params += (("email", request.param("email")),)
        return PageInfo(records=0, total=count, next_request=EfetchRequest("/efetch.fcgi", params, count=count))

    def raw_records(self, body: bytes) -> list[Any]:
        return [_with_pmid(_element_value(a, a.tag)) for a in _article_set(body)]

    def read_raw_records(self, raw_records: list[Any]) -> ParsedRecords:
        return read_records(self.name, "PubmedArticleSet", raw_records, _article)


def _xml(body: bytes) -> etree._Element:
    """The XML root of `body`; MalformedPage for NCBI's JSON error (also sent with status 200) and anything not XML."""
    if body.lstrip()[:1] == b"{":
        try:
            error = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            error = None
        message = error.get("error") if isinstance(error, dict) else None
        raise MalformedPage(f"pubmed answered with an error instead of data: {message or body[:200]!r}"
                            + (" (NCBI's rate limit; slow down or set PUBMED_API_KEY)" if message and "rate limit" in str(message).lower() else ""))
    # No DTDs, no entities from outside, no network: the DOCTYPE PubMed sends names a DTD that must not be fetched.
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, remove_comments=True, remove_pis=True, huge_tree=True)
    try:
        return etree.fromstring(body, parser)
    except etree.XMLSyntaxError as error:
        raise MalformedPage(f"pubmed answered with a body that is not XML ({error}); starts with {body[:120]!r}") from None


def _raise_error_element(root: etree._Element, step: str) -> None:
    error = root.find("ERROR")
    if error is not None:
        raise MalformedPage(f"pubmed {step} refused the request: {plain_text(''.join(error.itertext())) or 'no message'}")


def _article_set(body: bytes) -> list[etree._Element]:
    root = _xml(body)
    if root.tag == "eFetchResult":
        _raise_error_element(root, "efetch")
    require("pubmed", root.tag == "PubmedArticleSet", f"the root element is {root.tag!r}, not PubmedArticleSet", body)
    return [child for child in root if child.tag in _ARTICLES]


def _inner_markup(element: etree._Element) -> str:
    """An element's content as markup: its text escaped, its children serialized (with their tails)."""
    return escape(element.text or "") + "".join(etree.tostring(child, encoding=str, with_tail=True) for child in element)


def _element_value(element: etree._Element, tag: str) -> Any:
    """An element (whose tag is `tag`) as JSON-like data (see the module docstring).

    Every element of a page passes here (about 270 an article), so each is visited once
    and its tag read once: lxml makes a new string at every `.tag`.
    """
    if tag in _WITH_ATTRIBUTES:
        value = {f"@{k}": v for k, v in element.items()}
        value["#text"] = _inner_markup(element) if tag in _MARKUP else element.text or ""
        return value
    if not len(element):  # no child at all, the common case
        return element.text or ""
    attributes = element.items()
    value: dict[str, Any] = {f"@{k}": v for k, v in attributes} if attributes else {}
    has_children = False
    for child in element:
        child_tag = child.tag
        if not isinstance(child_tag, str):  # an entity reference left unresolved
            continue
        has_children = True
        add_child(value, child_tag, _element_value(child, child_tag), _REPEATED)
    if not has_children:
        return element.text or ""
    if tag in _ARTICLES:
        value["@kind"] = tag
    return value


def _with_pmid(article: dict[str, Any]) -> dict[str, Any]:
    """The article with its PMID (`MedlineCitation/PMID`, `BookDocument/PMID`) as the top-level field `PMID`, the record's id."""
    citation = article.get("BookDocument" if article.get("@kind") == "PubmedBookArticle" else "MedlineCitation")
    return {"PMID": citation.get("PMID") if isinstance(citation, dict) else None, **article}


def _pmid(value: str) -> str | None:
    value = value.strip()
    return value if value.isdigit() else None


def _article(r: RecordReader) -> dict[str, Any]:
    book = r.value("@kind") == "PubmedBookArticle"
    citation_key = "BookDocument" if book else "MedlineCitation"
    pmid = r.identify("PMID", _pmid)
    article_keys = (citation_key,) if book else (citation_key, "Article")
    ids = _article_ids(r.objects("PubmedData", "ArticleIdList", "ArticleId"))
    if book:
        ids = _article_ids(r.objects("PubmedBookData", "ArticleIdList", "ArticleId")) | ids
    doi = bare_doi(ids["doi"].text if "doi" in ids else None)
    if doi is None:
        for location in r.objects(*article_keys, "ELocationID") or ():
            if location.text("@EIdType") == "doi" and location.text("@ValidYN") != "N":
                doi = bare_doi(location.text("#text"))
                break
    pmc = ids["pmc"].bare("pmcid") if "pmc" in ids else None
    release = [d for d in r.objects("PubmedData", "History", "PubMedPubDate") or () if d.text("@PubStatus") == "pmc-release"]
    title = markup_to_text(r.text(*article_keys, "ArticleTitle", "#text")) or markup_to_text(r.text(*article_keys, "VernacularTitle", "#text"))
    if book and not title:
        title = markup_to_text(r.text(citation_key, "Book", "BookTitle", "#text"))
    published, precision = _publication_date(r, article_keys, book)
    languages = r.texts(*article_keys, "Language")
    language = (languages[0] or "").strip().lower() if languages else None
    types = [plain_text(t.text("#text")) for t in r.objects(*article_keys, "PublicationTypeList", "PublicationType") or ()]
    venue = plain_text(r.text(citation_key, "Book", "Publisher", "PublisherName")) if book else plain_text(r.text(*article_keys, "Journal", "Title"))
    return {
        "provider": "pubmed",
        "provider_id": pmid,
        "doi": doi,
        "pmid": r.bare_identifier("pmid", ("PMID",), pmid) or (ids["pubmed"].bare("pmid") if "pubmed" in ids else None),
        "pmcid": pmc,
        "arxiv_id": r.arxiv_id_of_doi(("PubmedData", "ArticleIdList", "ArticleId"), doi),
        "title": title,
        "abstract": _abstract(r.objects(*article_keys, "Abstract", "AbstractText")),
        "authors": _authors(r.objects(*article_keys, "AuthorList")),
        "publication_date": published,
        "publication_date_precision": precision,
        "venue": venue,
        "publisher": plain_text(r.text(citation_key, "Book", "Publisher", "PublisherName")) if book else None,
        "work_type": next((t for t in types if t), "Book" if book else None),
        "language": _LANGUAGES.get(language, language) if language else None,
        "is_oa": True if pmc and not release else None,
        "oa_url": f"https://pmc.ncbi.nlm.nih.gov/articles/{pmc}/" if pmc and not release else None,
        "license": None,
        "cited_by_count": None,
        "url": f"https://pubmed.ncbi.nlm.nih.gov/{pmid}/",
    }


class _ArticleId(NamedTuple):
    text: str | None
    reader: RecordReader  # the ArticleId element, for reports

    def bare(self, column: str) -> str | None:
        # IdType says what the id is, so a PMCID's digits alone are one (PubMed writes them so in reference lists).
        to_id = functools.partial(bare_pmcid, digits_alone=True) if column == "pmcid" else None
        return self.reader.bare_identifier(column, ("#text",), self.text, to_id)


def _article_ids(elements: list[RecordReader] | None) -> dict[str, _ArticleId]:
    """An ArticleIdList's ids by IdType (`doi`, `pubmed`, `pmc`...; the last of a type wins)."""
    return {(i.text("@IdType") or ""): _ArticleId(i.text("#text"), i) for i in elements or ()}


def _abstract(texts: list[RecordReader] | None) -> str | None:
    parts = []
    for text in texts or ():
        body = markup_to_text(text.text("#text"))
        if not body:
            continue
        label = plain_text(text.text("@Label"))
        parts.append(f"{label}: {body}" if label and label.upper() not in ("UNLABELLED", "UNASSIGNED") else body)
    return " ".join(parts) or None


def _authors(author_lists: list[RecordReader] | None) -> list[dict[str, Any]] | None:
    if author_lists is None:
        return None
    lists = [a for a in author_lists if (a.text("@Type") or "authors") == "authors"]
    authors = []
    for author_list in lists:
        for a in author_list.objects("Author") or ():
            if a.text("@ValidYN") == "N":  # a misspelling PubMed keeps beside the corrected author
                continue
            name = plain_text(a.text("CollectiveName")) or plain_text(
                " ".join(p for p in (a.text("ForeName") or a.text("Initials"), a.text("LastName"), a.text("Suffix")) if p))
            orcid = next((bare_orcid(i.text("#text")) for i in a.objects("Identifier") or () if (i.text("@Source") or "").upper() == "ORCID"), None)
            affiliations = [plain_text(info.text("Affiliation")) for info in a.objects("AffiliationInfo") or ()]
            authors.append({"name": name, "orcid": orcid, "affiliations": [x for x in affiliations if x]})
    return authors


def _publication_date(r: RecordReader, article_keys: tuple[str, ...], book: bool) -> tuple[dt.date | None, str | None]:
    for article_date in r.objects(*article_keys, "ArticleDate") or ():
        if (article_date.text("@DateType") or "Electronic") == "Electronic":
            read = _ymd(article_date.text("Year"), article_date.text("Month"), article_date.text("Day"))
            if read.date is not None and not read.lost:
                return read.date, read.precision
            if read.lost:  # reported, and the issue date below is read instead
                article_date.report((), _shown_date(article_date), "impossible date left for the issue's PubDate")
    keys = (*article_keys, "Journal", "JournalIssue", "PubDate") if not book else (*article_keys[:1], "Book", "PubDate")
    medline = r.text(*keys, "MedlineDate")
    if medline is not None:
        return r.date((*keys, "MedlineDate"), medline, read_medline_date(medline))
    year = r.text(*keys, "Year")
    if year is None:
        return None, None
    return r.date(keys, " ".join(v for v in (year, r.text(*keys, "Month"), r.text(*keys, "Day")) if v), _ymd(year, r.text(*keys, "Month"), r.text(*keys, "Day")))


def _shown_date(reader: RecordReader) -> str:
    return "-".join(v for v in (reader.text("Year"), reader.text("Month"), reader.text("Day")) if v)


def _month(value: str | None) -> int | None | str:
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value)
    return _MONTHS.get(value[:3].lower(), "bad")


def _ymd(year: str | None, month: str | None, day: str | None) -> PartialDate:
    """Year / Month (`Mar` or `03`) / Day as PubMed writes them."""
    if not year or not year.strip().isdigit():
        return PartialDate(None, None, year is not None)
    month_number = _month(month)
    if month_number == "bad":
        return read_partial_date(int(year))._replace(lost=True)
    day_number = int(day) if day and day.strip().isdigit() else None
    read = read_partial_date(int(year), month_number, day_number)
    return read._replace(lost=True) if day and day_number is None else read


def read_medline_date(value: str) -> PartialDate:
    """`MedlineDate` free text at the precision it holds: "2019 Mar-Apr" is March 2019 (month), "2018 Winter" the year
    2018, "1998 Dec-1999 Jan" December 1998, "2019 Mar 15-21" March 2019 (month), "2019 Mar 15" the day."""
    match = _MEDLINE_DATE.match(value)
    if not match:
        return PartialDate(None, None, True)
    year, month_name, day, rest = match.groups()
    month = _MONTHS.get(month_name.lower()) if month_name else None
    if month is None:  # a season ("Winter", "Spring"), a year range, or nothing more: the year is all it says
        return read_partial_date(int(year))
    if day and not rest.strip().startswith("-"):
        return read_partial_date(int(year), month, int(day))
    return read_partial_date(int(year), month)

