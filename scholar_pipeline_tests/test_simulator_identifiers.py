"""The ids the simulated APIs carry (PMID, PMC id, arXiv id) in each one's wire format, and the planted-overlap works
of PLANTED_DAY: exactly at their providers, found by every search, paged like every other record.

Pages are read here as JSON and XML directly, over HTTP, with each API's own parameters, so that these tests say what
the simulator serves whatever the parsers make of it.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata

import httpx
import pytest
from lxml import etree

from scholar_pipeline.providers import PROVIDERS
from scholar_pipeline.simulator import Corpus, ProviderSimulator
from scholar_pipeline.simulator.planted import (
    ARXIV_ID, DOI_AT_THREE, JOURNAL_VERSION, PART_ONE, PART_TWO, PLANTED, PLANTED_CASES, PLANTED_DAY, PMID_WITHOUT_DOI,
    TITLE_AS_CORE, TITLE_AS_OPENALEX, planted_record_ids,
)
from scholar_pipeline.simulator.server import PLACEHOLDER_KEYS

ATOM = {"a": "http://www.w3.org/2005/Atom", "arxiv": "http://arxiv.org/schemas/atom", "os": "http://a9.com/-/spec/opensearch/1.1/"}
CORPUS = dict(seed=11, min_per_day=120, max_per_day=240)
GENERATED_DAY = dt.date(2024, 3, 1)
TEXTS = ("soil microbiome", "graph neural network")
TEXT = "coral reef"  # a search as a saved one is: PubMed has no search without words


@pytest.fixture(scope="module")
def sim():
    with ProviderSimulator(corpus=Corpus(**CORPUS), rate_limits=dict.fromkeys(PROVIDERS, 1000.0)) as simulator:
        yield simulator


# Each API paged to its end with its own parameters: (the total it reported on every page, the raw records).


def _openalex(sim, day, text, size):
    url, cursor, totals, records = sim.base_url("openalex") + "/works", "*", set(), []
    while cursor:
        search = f",title_and_abstract.search:{text}"
        page = httpx.get(url, params={"filter": f"from_publication_date:{day},to_publication_date:{day}{search}",
                                      "per_page": size, "cursor": cursor}).json()
        totals.add(page["meta"]["count"])
        records += page["results"]
        cursor = page["meta"]["next_cursor"]
    return totals, records


def _crossref(sim, day, text, size):
    url, cursor, totals, records = sim.base_url("crossref") + "/works", "*", set(), []
    while True:
        params = {"filter": f"from-pub-date:{day},until-pub-date:{day}", "query": text, "rows": size, "cursor": cursor}
        message = httpx.get(url, params=params).json()["message"]
        totals.add(message["total-results"])
        if not message["items"]:
            return totals, records
        records += message["items"]
        cursor = message["next-cursor"]


def _arxiv(sim, day, text, size):
    window = f"submittedDate:[{day:%Y%m%d}0000 TO {day:%Y%m%d}2359]"
    query = f"all:{text.replace(' ', ' AND all:')} AND {window}"
    start, totals, records = 0, set(), []
    while True:
        feed = etree.fromstring(httpx.get(sim.base_url("arxiv") + "/query", params={
            "search_query": query, "start": start, "max_results": size, "sortBy": "submittedDate", "sortOrder": "ascending"}).content)
        totals.add(int(feed.findtext("os:totalResults", namespaces=ATOM)))
        entries = feed.findall("a:entry", ATOM)
        records += entries
        start += size
        if start >= max(totals):
            return totals, records


def _pubmed(sim, day, text, size):
    found = etree.fromstring(httpx.get(sim.base_url("pubmed") + "/esearch.fcgi", params={
        "db": "pubmed", "term": text, "datetype": "pdat", "mindate": f"{day:%Y/%m/%d}", "maxdate": f"{day:%Y/%m/%d}",
        "usehistory": "y", "retmax": 0}).content)
    total = int(found.findtext("Count"))
    records = []
    for start in range(0, total, size):
        page = etree.fromstring(httpx.get(sim.base_url("pubmed") + "/efetch.fcgi", params={
            "db": "pubmed", "WebEnv": found.findtext("WebEnv"), "query_key": found.findtext("QueryKey"),
            "retstart": start, "retmax": size, "retmode": "xml"}).content)
        records += page.findall("PubmedArticle")
    return {total}, records


def _plos(sim, day, text, size):
    start, totals, records = 0, set(), []
    while True:
        response = httpx.get(sim.base_url("plos") + "/search", params=[
            ("q", text), ("fq", f"publication_date:[{day}T00:00:00Z TO {day}T23:59:59Z]"), ("fq", "doc_type:full"),
            ("start", start), ("rows", size), ("sort", "id asc"), ("fl", "id,title_display,publication_date")]).json()["response"]
        totals.add(response["numFound"])
        records += response["docs"]
        start += size
        if start >= response["numFound"]:
            return totals, records


def _springer(sim, day, text, size):
    start, totals, records = 1, set(), []
    while True:
        page = httpx.get(sim.base_url("springer") + "/meta/v2/json", params={
            "q": f"{text} onlinedatefrom:{day} onlinedateto:{day}", "s": start, "p": size,
            "api_key": PLACEHOLDER_KEYS["SPRINGER_NATURE_API_KEY"]}).json()
        totals.add(int(page["result"][0]["total"]))
        records += page["records"]
        if "nextPage" not in page:
            return totals, records
        start += size


def _core(sim, day, text, size, scroll=False):
    q = f"{text} AND publishedDate>={day} AND publishedDate<{day + dt.timedelta(days=1)}"
    headers = {"Authorization": f"Bearer {PLACEHOLDER_KEYS['CORE_API_KEY']}"}
    params, totals, records = {"q": q, "limit": size} | ({"scroll": "true"} if scroll else {"offset": 0}), set(), []
    while True:
        page = httpx.get(sim.base_url("core") + "/search/works", params=params, headers=headers).json()
        totals.add(page["totalHits"])
        if not page["results"]:
            return totals, records
        records += page["results"]
        params = {"scrollId": page["scrollId"], "limit": size} if scroll else params | {"offset": params["offset"] + size}


PAGED = {"openalex": _openalex, "crossref": _crossref, "arxiv": _arxiv, "pubmed": _pubmed, "plos": _plos, "springer": _springer,
         "core": _core}
PAGE_SIZES = {"springer": 7}  # Springer's Basic plan serves at most 25 a call


def _record_id(provider: str, record) -> str:
    """The id a record is known by at its provider, read off the wire."""
    if provider == "openalex":
        return record["id"].rsplit("/", 1)[1]
    if provider == "crossref":
        return record["DOI"].lower()
    if provider == "arxiv":
        return record.findtext("a:id", namespaces=ATOM).rsplit("/abs/", 1)[1]
    if provider == "pubmed":
        return record.findtext("MedlineCitation/PMID")
    if provider in ("plos", "core"):
        return str(record["id"])
    return record["doi"]


def _served(sim, provider, day=PLANTED_DAY, text=TEXT, size=None):
    totals, records = PAGED[provider](sim, day, text, size or PAGE_SIZES.get(provider, 10))
    return totals, {_record_id(provider, r): r for r in records}, [_record_id(provider, r) for r in records]


# The ids of generated works


def test_generated_works_keep_their_place_and_content_whether_or_not_works_are_planted():
    with_planted, without = Corpus(**CORPUS), Corpus(**CORPUS, planted=())
    assert with_planted.works_on(GENERATED_DAY) == without.works_on(GENERATED_DAY)
    generated = without.works_on(PLANTED_DAY)
    assert with_planted.works_on(PLANTED_DAY)[:len(generated)] == generated
    assert {w.serial for w in with_planted.works_on(PLANTED_DAY)[len(generated):]} == {w.serial for c in PLANTED_CASES for w in c.works}


def test_generated_works_carry_a_pmid_pmc_ids_when_open_and_arxiv_ids_when_preprints():
    works = Corpus(**CORPUS).works_on(GENERATED_DAY)
    assert all(re.fullmatch(r"\d{8,9}", w.pmid) for w in works) and len({w.pmid for w in works}) == len(works)
    assert {w.serial for w in works if w.pmcid} == {w.serial for w in works if w.license and w.doi} != set()
    assert all(re.fullmatch(r"PMC\d{8}", w.pmcid) for w in works if w.pmcid)
    preprints = [w for w in works if w.work_type == "preprint"]
    assert preprints and {w.serial for w in works if w.arxiv_id} == {w.serial for w in preprints}
    assert all(re.fullmatch(r"2403\.\d{5}", w.arxiv_id) for w in preprints)


def test_each_api_renders_the_pmids_pmc_ids_and_arxiv_ids_it_carries_in_its_own_format(sim):
    _, pubmed, _ = _served(sim, "pubmed", GENERATED_DAY, size=100)
    _, openalex, _ = _served(sim, "openalex", GENERATED_DAY, size=100)
    _, arxiv, _ = _served(sim, "arxiv", GENERATED_DAY, size=100)
    _, core, _ = _served(sim, "core", GENERATED_DAY, size=100)
    _, crossref, _ = _served(sim, "crossref", GENERATED_DAY, size=100)
    by_serial = {w.serial: w for w in sim.corpus.works_on(GENERATED_DAY)}

    # PubMed: the PMID twice (MedlineCitation and ArticleIdList), a PMC id for the open works.
    for pmid, article in pubmed.items():
        ids = {i.get("IdType"): i.text for i in article.findall("PubmedData/ArticleIdList/ArticleId")}
        assert ids["pubmed"] == pmid
    pmc = {pmid: a.findtext("PubmedData/ArticleIdList/ArticleId[@IdType='pmc']") for pmid, a in pubmed.items()}
    assert {p for p, v in pmc.items() if v} and all(v is None or re.fullmatch(r"PMC\d{8}", v) for v in pmc.values())

    # OpenAlex names the same PMIDs as PubMed URLs, and knows them as PubMed's.
    named = {r["ids"]["pmid"] for r in openalex.values()}
    assert named == {f"https://pubmed.ncbi.nlm.nih.gov/{pmid}" for pmid in pubmed}
    assert all("pubmed" in r["indexed_in"] for r in openalex.values())
    for record in openalex.values():
        work = by_serial[int(record["id"].rsplit("/W", 1)[1])]
        assert record["ids"]["pmid"].rsplit("/", 1)[1] == work.pmid and "pmcid" not in record["ids"]

    # CORE: arxivId on its preprints (the id the arXiv feed lists them under, without version), pubmedId on PMC works.
    feed_ids = {versioned.rsplit("v", 1)[0] for versioned in arxiv}
    preprints = [r for r in core.values() if r["documentType"] == "preprint"]
    assert preprints and all(r["arxivId"] in feed_ids and re.fullmatch(r"\d{4}\.\d{5}", r["arxivId"]) for r in preprints)
    assert all(r["arxivId"] is None for r in core.values() if r["documentType"] != "preprint")
    with_pmid = [r for r in core.values() if r["pubmedId"]]
    assert with_pmid and all(pmc[r["pubmedId"]] for r in with_pmid)

    # No generated journal article has an e-print other providers know of: Crossref names none.
    assert not any("relation" in item for item in crossref.values())


# The planted works


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_planted_day_serves_exactly_the_planted_records_of_each_provider(sim, provider):
    generated = set(ProviderSimulator(corpus=Corpus(**CORPUS, planted=())).apis[provider].record_ids(PLANTED_DAY, PLANTED_DAY, TEXT))
    totals, served, order = _served(sim, provider)
    assert set(served) - generated == planted_record_ids(provider)
    assert set(served) >= generated  # the generated works of the day are all still there
    assert totals == {len(order)} and len(order) == len(served)


def test_one_doi_at_openalex_crossref_and_springer_only(sim):
    doi = DOI_AT_THREE.doi
    openalex = _served(sim, "openalex")[1]["W9000000005"]
    assert (openalex["doi"], openalex["ids"]["doi"]) == (f"https://doi.org/{doi}",) * 2 and "pmid" not in openalex["ids"]
    crossref = _served(sim, "crossref")[1][doi]
    assert crossref["DOI"] == doi.upper() and crossref["title"] == [DOI_AT_THREE.title] and "relation" not in crossref
    assert _served(sim, "springer")[1][doi]["identifier"] == f"doi:{doi}"


def test_an_arxiv_preprint_in_two_versions_and_its_journal_version_at_crossref_and_core(sim):
    entries = _served(sim, "arxiv")[1]
    v1, v2 = entries[f"{ARXIV_ID}v1"], entries[f"{ARXIV_ID}v2"]
    assert v1.findtext("a:id", namespaces=ATOM) == f"http://arxiv.org/abs/{ARXIV_ID}v1"
    assert v1.findtext("a:published", namespaces=ATOM) == v2.findtext("a:published", namespaces=ATOM)
    assert v1.findtext("a:published", namespaces=ATOM).startswith(PLANTED_DAY.isoformat())
    assert v1.findtext("a:updated", namespaces=ATOM) < v2.findtext("a:updated", namespaces=ATOM)
    assert v1.findtext("arxiv:doi", namespaces=ATOM) is None and v1.findtext("a:title", namespaces=ATOM) == PLANTED["arxiv_versions"].works[0].title

    crossref = _served(sim, "crossref")[1][JOURNAL_VERSION.doi]
    assert crossref["relation"] == {"has-preprint": [{"id-type": "doi", "id": f"10.48550/arXiv.{ARXIV_ID}", "asserted-by": "subject"}]}
    assert crossref["title"] == [JOURNAL_VERSION.title] != [v1.findtext("a:title", namespaces=ATOM)]
    core = _served(sim, "core")[1]["9000000004"]
    assert (core["arxivId"], core["doi"], core["documentType"]) == (ARXIV_ID, f"https://doi.org/{JOURNAL_VERSION.doi}", "research")
    assert not [r for r in _served(sim, "openalex")[1].values() if r["title"] in (JOURNAL_VERSION.title, PLANTED["arxiv_versions"].works[0].title)]


def test_a_pubmed_record_without_doi_that_openalex_names_by_pmid(sim):
    pmid = PMID_WITHOUT_DOI.pmid
    article = _served(sim, "pubmed")[1][pmid]
    ids = [(i.get("IdType"), i.text) for i in article.findall("PubmedData/ArticleIdList/ArticleId")]
    assert ids == [("pubmed", pmid), ("pmc", "PMC9051401")] and article.find("MedlineCitation/Article/ELocationID") is None
    assert etree.tostring(article.find("MedlineCitation/Article/ArticleTitle"), encoding=str).startswith("<ArticleTitle><i>Longitudinal</i>")
    openalex = _served(sim, "openalex")[1]["W9000000006"]
    assert openalex["doi"] is None and openalex["ids"] == {"openalex": "https://openalex.org/W9000000006",
                                                           "pmid": f"https://pubmed.ncbi.nlm.nih.gov/{pmid}"}


def test_near_identical_titles_and_one_title_written_two_ways_at_openalex_and_core(sim):
    openalex, core = _served(sim, "openalex")[1], _served(sim, "core")[1]
    for work in (PART_ONE, PART_TWO):
        record = openalex[f"W{work.serial}"]
        assert (record["title"], record["doi"], set(record["ids"])) == (work.title, None, {"openalex"})
        assert (core[str(work.serial)]["title"], core[str(work.serial)]["doi"], core[str(work.serial)]["arxivId"]) == (work.title, None, None)
        assert [a["author"]["display_name"] for a in record["authorships"]][0] == "Farah Hoffmann"
        assert core[str(work.serial)]["authors"][0] == {"name": "Hoffmann, Farah"}
    assert openalex["W9000000002"]["title"].endswith("Part I") and openalex["W9000000003"]["title"].endswith("Part II")

    as_openalex, as_core = openalex[f"W{TITLE_AS_OPENALEX.serial}"], core[str(TITLE_AS_CORE.serial)]
    assert (as_openalex["title"], as_core["title"]) == ("Café-scale urban heat island mapping: a multi-site evaluation",
                                                       "Cafe scale urban heat island mapping - A multi-site evaluation")
    assert _folded(as_openalex["title"]) == _folded(as_core["title"])
    assert as_openalex["authorships"][0]["author"]["display_name"] == "Léa Dubois" and as_core["authors"][0] == {"name": "Dubois, L."}
    assert as_openalex["publication_year"] == as_core["yearPublished"] == PLANTED_DAY.year
    assert f"W{TITLE_AS_CORE.serial}" not in openalex and str(TITLE_AS_OPENALEX.serial) not in core


def _folded(title: str) -> str:
    """A title as a rule that ignores case, punctuation and accents compares it."""
    plain = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode().lower()
    return " ".join(re.findall(r"[a-z0-9]+", plain))


@pytest.mark.parametrize("provider", PROVIDERS)
def test_every_search_text_finds_the_planted_works_and_the_generated_ones_as_before(sim, provider):
    found = [set(_served(sim, provider, text=text)[1]) for text in TEXTS]
    planted = planted_record_ids(provider)
    assert all(planted <= ids for ids in found)
    # The generated works keep their matching: each text finds its own part of the day, the same one as before.
    before = ProviderSimulator(corpus=Corpus(**CORPUS, planted=())).apis[provider]
    for text, ids in zip(TEXTS, found):
        assert ids - planted == set(before.record_ids(PLANTED_DAY, PLANTED_DAY, text))
    if provider != "plos":  # PLOS has a few works a day, and the planted works none
        assert found[0] - planted != found[1] - planted


@pytest.mark.parametrize("provider, size", [("openalex", 7), ("crossref", 13), ("arxiv", 9), ("pubmed", 11), ("plos", 3),
                                            ("springer", 4), ("core", 6)])
def test_the_planted_day_pages_to_its_total_without_gaps_or_repeats(sim, provider, size):
    totals, served, order = _served(sim, provider, size=size)
    whole = _served(sim, provider, size=100 if provider != "springer" else 25)[2]
    assert len(totals) == 1 and totals == {len(order)} and len(set(order)) == len(order)
    assert sorted(order) == sorted(whole) == sorted(sim.apis[provider].record_ids(PLANTED_DAY, PLANTED_DAY, TEXT))
    assert planted_record_ids(provider) <= set(order)


def test_core_scrolls_through_the_planted_day_too(sim):
    totals, records = _core(sim, PLANTED_DAY, TEXT, 8, scroll=True)
    ids = [str(r["id"]) for r in records]
    assert totals == {len(ids)} and len(set(ids)) == len(ids) and planted_record_ids("core") <= set(ids)


def test_planted_ids_never_collide_with_generated_ones_whatever_the_seed():
    planted = [w for case in PLANTED_CASES for w in case.works]
    for seed in (7, 11, 12345):
        generated = Corpus(seed=seed, min_per_day=240, max_per_day=240, planted=()).works_on(PLANTED_DAY)
        for field in ("serial", "doi", "pmid", "pmcid", "arxiv_id"):
            taken = {getattr(w, field) for w in generated} - {None}
            assert not taken & {getattr(w, field) for w in planted}, field
    assert len({w.serial for w in planted}) == len(planted)
