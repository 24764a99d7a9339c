"""Simulated NCBI E-utilities for PubMed: `esearch.fcgi` with a history server, `efetch.fcgi` by WebEnv/query_key.

- ESearch (`db=pubmed`) answers `eSearchResult` XML (`Count`, `RetMax`, `RetStart`,
  `QueryKey`, `WebEnv`, `IdList`, the DTD line of the recorded files). `datetype=pdat` with
  `mindate`/`maxdate` (YYYY/MM/DD, YYYY/MM or YYYY; both or neither) selects the works
  published in the window (a search without one is refused: the simulator builds its
  corpus day by day); of those, the works the words of `term` find (`search_words` sets the
  operators aside; `Corpus.works_matching` decides). The term is checked for balanced
  quotes and parentheses. `usehistory=y` stores the found PMIDs on the history server
  under a new `WebEnv` (or the one given) and `QueryKey`. Like PubMed's ESearch, it
  serves ids only up to the first 10,000 (`retstart` above 9,998 is the recorded error),
  while `Count` says how many match; the history server keeps those first 10,000 too
  (UNCONFIRMED).
- EFetch (`db=pubmed`, `WebEnv` + `query_key` or `id`, `retstart`, `retmax` default 20,
  at most 10,000, `retmode=xml`) answers `PubmedArticleSet` shaped like the recorded
  efetch file (`pubmed_250101` DTD): MedlineCitation with PMID, dates, Article (Journal
  with ISSN, JournalIssue/PubDate, Title, ISOAbbreviation; ArticleTitle, ELocationID,
  Abstract with labelled AbstractText for some, AuthorList with ORCID Identifier and
  AffiliationInfo, Language, PublicationTypeList, ArticleDate), MedlineJournalInfo, and
  PubmedData (History, PublicationStatus, ArticleIdList with pubmed, doi and some pmc ids).
  An unknown WebEnv or query_key gets an `eFetchResult/ERROR` body (status 200; the exact
  text NCBI sends is UNCONFIRMED).
- Quirks of real records: inline markup in some titles (`<i>`), a month name in
  `PubDate` (`Mar`), some print issues dated only to the month or by `MedlineDate`
  ("2024 Mar-Apr"), a `CollectiveName` author now and then. Every work has its
  publication day as the electronic `ArticleDate`, or (no ArticleDate) as a full PubDate,
  so pdat windows match the works of their day.
- Rate limit: over it, HTTP 429 with NCBI's JSON body; `json_error_with_200` answers the
  next N requests with the same JSON body and status 200, as NCBI sometimes does.
- `record_ids(first, last, text)`: the PMIDs of the works published in the window that a
  search for `text` finds. A PMID numbers a work by its place among all of its day's works
  (identifiers.py), so it is the same whatever the search, and it tells EFetch the work's day.
  A work without a PMID (a planted one) is not in PubMed.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
import threading

from lxml import etree

from scholar_pipeline.simulator.common import BadRequest, SimResponse, single
from scholar_pipeline.simulator.corpus import Corpus, SimWork, search_words
from scholar_pipeline.simulator.identifiers import pmid_day, pmid_for
from scholar_pipeline.simulator.record_faults import XmlRecords

MAX_SERVED = 10_000  # ESearch (and here the history server) serves only the first 10,000 ids
MAX_RETSTART = 9_998
MAX_RETMAX = 10_000
MAX_WINDOW_DAYS = 400
XML_TYPE = "text/xml; charset=UTF-8"
ESEARCH_HEAD = ('<?xml version="1.0" encoding="UTF-8" ?>\n<!DOCTYPE eSearchResult PUBLIC "-//NLM//DTD esearch 20060628//EN" '
                '"https://eutils.ncbi.nlm.nih.gov/eutils/dtd/20060628/esearch.dtd">\n')
EFETCH_HEAD = ('<?xml version="1.0" ?>\n<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle, 1st January 2025//EN" '
               '"https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_250101.dtd">\n')
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
LANGUAGES = {"en": "eng", "de": "ger", "es": "spa", "fr": "fre"}
LABELS = ("BACKGROUND", "METHODS", "RESULTS", "CONCLUSIONS")
_DATE = re.compile(r"^(\d{4})(?:/(\d{1,2})(?:/(\d{1,2}))?)?$")


def _error(step: str, message: str, status: int = 200) -> BadRequest:
    root = "eSearchResult" if step == "esearch" else "eFetchResult"
    head = ESEARCH_HEAD if step == "esearch" else '<?xml version="1.0" encoding="UTF-8" ?>\n'
    return BadRequest(SimResponse(status, f"{head}<{root}><ERROR>{_escape(message)}</ERROR></{root}>\n".encode(), XML_TYPE))


def rate_limit_body() -> bytes:
    return json.dumps({"error": "API rate limit exceeded", "api-key": "127.0.0.1", "count": "4", "limit": "3"}).encode()


class PubMedApi:
    name = "pubmed"
    records = XmlRecords("PubmedArticle", abstract="Abstract", retyped="Year")  # where faults on records act (record_faults.py)
    records_route = "/efetch.fcgi"
    default_rate_limit = 3  # requests a second without an API key

    def __init__(self, corpus: Corpus):
        self.corpus = corpus
        self.routes = {"/esearch.fcgi": self.esearch, "/efetch.fcgi": self.efetch}
        self.history: dict[str, dict[str, list[str]]] = {}  # WebEnv -> query_key -> PMIDs
        self.json_error_with_200 = 0
        self._serial = itertools.count(1)
        self._lock = threading.Lock()

    def record_ids(self, first: dt.date, last: dt.date, text: str | None = None) -> list[str]:
        return self._pmids(search_words(text), first, last)

    def _pmids(self, words: frozenset[str], first: dt.date, last: dt.date) -> list[str]:
        out = []
        for offset in range(max((last - first).days + 1, 0)):
            day = first + dt.timedelta(days=offset)
            out += [w.pmid for w in self.corpus.works_on(day) if w.pmid and w.held_by(self.name) and self.corpus.matches(words, w)]
        return out

    def _json_error_instead(self) -> SimResponse | None:
        with self._lock:
            if self.json_error_with_200 <= 0:
                return None
            self.json_error_with_200 -= 1
        return SimResponse(200, rate_limit_body(), "application/json")

    def esearch(self, params: dict[str, list[str]]) -> SimResponse:
        if (error := self._json_error_instead()) is not None:
            return error
        if single(params, "db") != "pubmed":
            raise _error("esearch", f"Invalid db name specified: {single(params, 'db', '')}")
        term = (single(params, "term") or "").strip()
        if not term:
            raise _error("esearch", "Empty term and query_key - nothing todo")
        if term.count('"') % 2 or term.count("(") != term.count(")"):
            raise _error("esearch", f"Unbalanced quotes or parentheses in term: {term}")
        first, last = _window(params)
        retstart, retmax = _count(params, "retstart", "0", "esearch"), _count(params, "retmax", "20", "esearch")
        if retstart > MAX_RETSTART:
            raise _error("esearch", f"'retstart' cannot be larger than {MAX_RETSTART}. For PubMed, ESearch can only retrieve the first "
                                    "9,999 records matching the query. To obtain more than 9,999 PubMed records, consider using EDirect "
                                    "that contains additional logic to batch PubMed search results automatically so that an arbitrary "
                                    "number can be retrieved.")
        pmids = self._pmids(search_words(term), first, last)
        served = pmids[:MAX_SERVED]
        page = served[retstart:retstart + min(retmax, MAX_RETMAX)]
        history = ""
        if single(params, "usehistory") == "y":
            with self._lock:
                web_env = single(params, "WebEnv") or f"MCID_{next(self._serial):08d}{abs(hash(term)) % 10**12:012d}"
                keys = self.history.setdefault(web_env, {})
                query_key = str(len(keys) + 1)
                keys[query_key] = served
            history = f"<QueryKey>{query_key}</QueryKey><WebEnv>{web_env}</WebEnv>"
        ids = "".join(f"\n<Id>{pmid}</Id>" for pmid in page) + ("\n" if page else "")
        body = (f"{ESEARCH_HEAD}<eSearchResult><Count>{len(pmids)}</Count><RetMax>{len(page)}</RetMax><RetStart>{retstart}</RetStart>"
                f"{history}<IdList>{ids}</IdList><TranslationSet/><QueryTranslation>{_escape(term)}</QueryTranslation></eSearchResult>\n")
        return SimResponse(200, body.encode(), XML_TYPE)

    def efetch(self, params: dict[str, list[str]]) -> SimResponse:
        if (error := self._json_error_instead()) is not None:
            return error
        if single(params, "db") != "pubmed":
            raise _error("efetch", f"Invalid db name specified: {single(params, 'db', '')}", 400)
        retstart, retmax = _count(params, "retstart", "0", "efetch"), _count(params, "retmax", "20", "efetch")
        if "id" in params:
            pmids = [i for value in params["id"] for i in value.split(",") if i.strip()]
        else:
            web_env, query_key = single(params, "WebEnv"), single(params, "query_key")
            with self._lock:
                stored = self.history.get(web_env or "", {}).get(query_key or "")
            if stored is None:
                raise _error("efetch", f"Cannot retrieve history data. query_key: {query_key}, WebEnv: {web_env}")
            pmids = stored[retstart:retstart + min(retmax, MAX_RETMAX)]
        set_element = etree.Element("PubmedArticleSet")
        for pmid in pmids:
            found = self._work_for(pmid)
            if found is not None:
                set_element.append(_article(found))
        articles = "".join(etree.tostring(a, encoding=str) + "\n" for a in set_element)
        return SimResponse(200, f"{EFETCH_HEAD}<PubmedArticleSet>\n{articles}</PubmedArticleSet>\n".encode(), XML_TYPE)

    def _work_for(self, pmid: str) -> SimWork | None:
        """The work PubMed holds under this PMID: a generated one sits at the place its PMID numbers; others are looked up."""
        day = pmid_day(pmid)
        if day is None:
            return None
        works, n = self.corpus.works_on(day), int(pmid) - int(pmid_for(day, 0))
        if n < len(works) and works[n].pmid == pmid and works[n].held_by(self.name):
            return works[n]
        return next((w for w in works if w.pmid == pmid and w.held_by(self.name)), None)

    @staticmethod
    def rate_limited() -> SimResponse:
        return SimResponse(429, rate_limit_body(), "application/json")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _count(params: dict[str, list[str]], name: str, default: str, step: str) -> int:
    value = (single(params, name, default) or default).strip()
    if not value.isdigit():
        raise _error(step, f"Invalid {name} value: {value}")
    return int(value)


def _bound(value: str | None, last: bool) -> dt.date | None:
    match = _DATE.match((value or "").strip())
    if not match:
        return None
    year, month, day = (int(g) if g else None for g in match.groups())
    try:
        if month is None:
            return dt.date(year, 12, 31) if last else dt.date(year, 1, 1)
        if day is None:
            following = dt.date(year + month // 12, month % 12 + 1, 1)
            return following - dt.timedelta(days=1) if last else dt.date(year, month, 1)
        return dt.date(year, month, day)
    except ValueError:
        return None


def _window(params: dict[str, list[str]]) -> tuple[dt.date, dt.date]:
    mindate, maxdate = single(params, "mindate"), single(params, "maxdate")
    if (mindate is None) != (maxdate is None):
        raise _error("esearch", "mindate and maxdate must be used together")
    if mindate is None:
        raise _error("esearch", "the simulator serves searches with a date window (datetype=pdat, mindate, maxdate) only")
    if single(params, "datetype", "pdat") != "pdat":
        raise _error("esearch", "the simulator knows publication dates only (datetype=pdat)")
    first, last = _bound(mindate, False), _bound(maxdate, True)
    if first is None or last is None:
        raise _error("esearch", f"Invalid date: mindate={mindate} maxdate={maxdate} (YYYY/MM/DD, YYYY/MM or YYYY)")
    if (last - first).days > MAX_WINDOW_DAYS:
        raise _error("esearch", f"the simulator serves date windows of at most {MAX_WINDOW_DAYS} days")
    return first, last


def _text(parent: etree._Element, tag: str, text: str | None = None, **attributes) -> etree._Element:
    element = etree.SubElement(parent, tag, **attributes)
    if text is not None:
        element.text = text
    return element


def _ymd(parent: etree._Element, tag: str, day: dt.date, month_name: bool = False, **attributes) -> None:
    element = _text(parent, tag, **attributes)
    _text(element, "Year", str(day.year))
    _text(element, "Month", MONTHS[day.month - 1] if month_name else f"{day.month:02d}")
    _text(element, "Day", f"{day.day:02d}")


def _article(w: SimWork) -> etree._Element:
    s, pmid, day = w.serial, w.pmid, w.published
    electronic = s % 5 != 0  # most articles appear online first, with an ArticleDate
    article = etree.Element("PubmedArticle")
    citation = _text(article, "MedlineCitation", Status=("MEDLINE", "Publisher", "PubMed-not-MEDLINE")[s % 3], Owner="NLM")
    _text(citation, "PMID", pmid, Version="1")
    _ymd(citation, "DateRevised", day + dt.timedelta(days=1 + s % 20))
    body = _text(citation, "Article", PubModel="Print-Electronic" if electronic else "Print")
    journal = _text(body, "Journal")
    _text(journal, "ISSN", f"{1000 + s % 9000}-{s % 10000:04d}", IssnType="Electronic")
    issue = _text(journal, "JournalIssue", CitedMedium="Internet")
    _text(issue, "Volume", str(1 + s % 60))
    _text(issue, "Issue", str(1 + s % 12))
    pub_date = _text(issue, "PubDate")
    if not electronic:  # the issue date is the publication day
        _text(pub_date, "Year", str(day.year))
        _text(pub_date, "Month", MONTHS[day.month - 1])
        _text(pub_date, "Day", f"{day.day:02d}")
    elif s % 7 == 0:  # a print issue dated by MedlineDate
        following = MONTHS[day.month % 12]
        _text(pub_date, "MedlineDate", f"{day.year} {MONTHS[day.month - 1]}-{following}")
    else:
        _text(pub_date, "Year", str(day.year))
        _text(pub_date, "Month", MONTHS[day.month - 1])
    _text(journal, "Title", w.venue)
    _text(journal, "ISOAbbreviation", " ".join(word[:4] for word in w.venue.split()))
    title = _text(body, "ArticleTitle")
    if s % 6 == 0:
        first, _, rest = w.title.partition(" ")
        title.text = ""
        _text(title, "i", first).tail = f" {rest}."
    else:
        title.text = f"{w.title}."
    pages = _text(body, "Pagination")
    _text(pages, "StartPage", str(1 + s % 900))
    _text(pages, "MedlinePgn", str(1 + s % 900))
    if w.doi:
        _text(body, "ELocationID", w.doi, EIdType="doi", ValidYN="Y")
    if w.abstract:
        abstract = _text(body, "Abstract")
        sentences = [part for part in re.split(r"(?<=\.)\s+", w.abstract) if part]  # not at `0.05`
        if s % 2 and len(sentences) > 1:  # a structured abstract, its last label holding the sentences left
            parts = [*sentences[:len(LABELS) - 1], " ".join(sentences[len(LABELS) - 1:])]
            for label, sentence in zip(LABELS, parts):
                _text(abstract, "AbstractText", sentence, Label=label, NlmCategory=label)
        else:
            _text(abstract, "AbstractText", w.abstract)
    if w.authors or s % 11 == 0:
        authors = _text(body, "AuthorList", CompleteYN="Y")
        for author in w.authors:
            element = _text(authors, "Author", ValidYN="Y")
            _text(element, "LastName", author.family)
            _text(element, "ForeName", author.given)
            _text(element, "Initials", author.given[0])
            if author.orcid:
                _text(element, "Identifier", author.orcid, Source="ORCID")
            if author.affiliation:
                _text(_text(element, "AffiliationInfo"), "Affiliation", f"{author.affiliation}.")
        if s % 11 == 0:
            _text(_text(authors, "Author", ValidYN="Y"), "CollectiveName", "Simulated Study Group")
    _text(body, "Language", LANGUAGES.get(w.language, "eng"))
    types = _text(body, "PublicationTypeList")
    _text(types, "PublicationType", "Journal Article", UI="D016428")
    if w.work_type != "article":
        _text(types, "PublicationType", "Review", UI="D016454")
    if electronic:
        _ymd(body, "ArticleDate", day, DateType="Electronic")
    info = _text(citation, "MedlineJournalInfo")
    _text(info, "Country", "United States")
    _text(info, "MedlineTA", w.venue)
    _text(info, "NlmUniqueID", str(100_000_000 + s % 900_000))
    _text(info, "ISSNLinking", f"{1000 + s % 9000}-{s % 10000:04d}")
    data = _text(article, "PubmedData")
    history = _text(data, "History")
    for status, before in (("received", 60 + s % 90), ("accepted", 10 + s % 20), ("entrez", 0)):
        _ymd(history, "PubMedPubDate", day - dt.timedelta(days=before), PubStatus=status)
        _text(history[-1], "Hour", str(s % 24))
        _text(history[-1], "Minute", str(s % 60))
    _text(data, "PublicationStatus", "epublish" if electronic else "ppublish")
    ids = _text(data, "ArticleIdList")
    _text(ids, "ArticleId", pmid, IdType="pubmed")
    if w.doi:
        _text(ids, "ArticleId", w.doi, IdType="doi")
    if w.pmcid:
        _text(ids, "ArticleId", w.pmcid, IdType="pmc")
    return article
