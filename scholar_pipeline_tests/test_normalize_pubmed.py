"""PubMed's wire format: the recorded efetch and esearch pages, structured abstracts, dates, errors sent as data, search terms.

Expected values below were read off `data/real_responses/pubmed/*.xml` by hand.
"""

import datetime as dt
import re

import pytest

from scholar_pipeline.normalize import normalize_page, normalize_page_checked
from scholar_pipeline.providers import PROVIDERS
from scholar_pipeline.providers.base import MalformedPage, PartitionTooLarge, RecordError, SearchTextError
from scholar_pipeline.providers.pubmed import MAX_TOTAL, EfetchRequest, read_medline_date
from scholar_pipeline_tests.conftest import real_response

PUBMED = PROVIDERS["pubmed"]
EFETCH = "pubmed/scholarflux_efetch_anxiety_20ids.xml"
ESEARCH_BIOPYTHON = "pubmed/biopython_esearch_biopython_retmax20.xml"
ESEARCH_ANXIETY = "pubmed/scholarflux_esearch_anxiety_retstart41_retmax20.xml"

PMIDS = ["40791037", "40791020", "40790884", "40790851", "40790834", "40790795", "40790754", "40790740", "40790615", "40790504",
         "40790501", "40790436", "40790418", "40790320", "40790318", "40790195", "40790112", "40790105", "40790001", "40790000"]
DOIS = ["10.62641/aep.v53i4.1965", "10.1080/10503307.2025.2538552", "10.1192/bjo.2025.10055", "10.1192/j.eurpsy.2025.10074",
        "10.1002/gps.70141", "10.1002/pbc.31967", "10.1186/s13023-025-03905-y", "10.1002/pon.70222", "10.1111/jop.70026",
        "10.2486/indhealth.2025-0050", "10.1186/s40359-025-03266-y", "10.5826/dpc.1503a5249", "10.5826/dpc.1503a5054",
        "10.1038/s41598-025-14354-9", "10.1038/s41598-025-14336-x", "10.1186/s12912-025-03725-2", "10.1111/jocn.17841",
        "10.1007/s10903-025-01760-4", "10.3758/s13415-025-01336-7", "10.3758/s13415-025-01326-9"]
AUTHOR_COUNTS = [5, 7, 8, 11, 3, 8, 9, 4, 12, 7, 5, 2, 3, 6, 7, 5, 6, 4, 13, 4]
# The electronic ArticleDate where the record has one (to the day), else the issue's PubDate (2025 Aug: to the month).
DATES = ["2025-08-01 month", "2025-08-12 day", "2025-08-12 day", "2025-08-12 day", "2025-08-01 month", "2025-08-11 day",
         "2025-08-11 day", "2025-08-01 month", "2025-08-11 day", "2025-08-08 day", "2025-08-11 day", "2025-07-31 day",
         "2025-07-31 day", "2025-08-12 day", "2025-08-11 day", "2025-08-11 day", "2025-08-11 day", "2025-08-11 day",
         "2025-08-11 day", "2025-08-11 day"]


def _rows(body: bytes) -> list[dict]:
    return normalize_page("pubmed", body).to_pylist()


def test_recorded_efetch_page_normalizes_with_ids_dois_titles_authors_and_dates():
    page = normalize_page_checked("pubmed", real_response(EFETCH))
    rows = page.table.to_pylist()
    assert page.problems == ()
    assert [r["provider_id"] for r in rows] == PMIDS
    assert [r["doi"] for r in rows] == DOIS
    assert [len(r["authors"]) for r in rows] == AUTHOR_COUNTS
    assert [f"{r['publication_date']} {r['publication_date_precision']}" for r in rows] == DATES
    assert rows[0]["title"] == ("Effects of Esketamine on Post-Partum Depression in Patients With Different Personality Types Undergoing "
                                "Caesarean Section: Randomised Controlled Trial.")
    assert rows[14]["title"] == "Social support and anxiety, a moderated mediating model."
    assert rows[19]["title"] == "Intertemporal Pavlovian biases and links with mental health in the general population."
    first = rows[0]
    assert first["url"] == "https://pubmed.ncbi.nlm.nih.gov/40791037/"
    assert (first["venue"], first["language"], first["work_type"], first["publisher"]) == ("Actas espanolas de psiquiatria", "en", "Journal Article", None)
    assert first["authors"][0] == {"name": "Mei Luo", "orcid": None, "affiliations": [
        "Department of Anesthesiology, The Affiliated Hospital of Southwest Medical University, 646000 Luzhou, Sichuan, China."]}
    # No record lists a PMC id: open access is unknown, never False.
    assert {r["is_oa"] for r in rows} == {None} and {r["license"] for r in rows} == {None}


def test_orcids_come_from_author_identifiers():
    rows = {r["provider_id"]: r for r in _rows(real_response(EFETCH))}
    orcids = [(a["name"], a["orcid"]) for r in rows.values() for a in r["authors"] if a["orcid"]]
    assert len(orcids) == 16  # every Identifier in the file is an ORCID
    assert ("Nick Midgley", "0000-0002-6263-5058") in orcids
    assert [a["orcid"] for a in rows["40790615"]["authors"] if a["orcid"]] == [
        "0000-0003-0299-497X", "0009-0005-3576-4670", "0000-0003-1019-9212", "0000-0002-3784-4229"]


def test_structured_abstracts_keep_their_labels_and_inline_markup_is_text():
    rows = {r["provider_id"]: r for r in _rows(real_response(EFETCH))}
    abstract = rows["40791037"]["abstract"]
    assert abstract.startswith("BACKGROUND: As an intravenous general anaesthetic, esketamine")
    assert " METHODS: A total of 280 patients" in abstract and " RESULTS: Statistically significant" in abstract
    assert abstract.endswith("TRIAL REGISTRATION: Chinese Clinical Trial Registry, ChiCTR2100050976, 09/09/2021, http://www.chictr.org.cn.")
    assert "p < 0.05" in abstract  # entities decoded
    assert "METHOD: University students (N = 370, age 21.44 ± 2.30 years)" in rows["40790884"]["abstract"]
    unlabelled = rows["40790320"]["abstract"]
    assert unlabelled.startswith("This study aims to explore") and ":" not in unlabelled[:40]
    assert "(AORmales: 0.805," in unlabelled and "p < 0.001" in unlabelled  # <sub> joins without a space; thin spaces tidied
    assert rows["40790851"]["abstract"] is None  # no Abstract element


def test_title_markup_and_a_collective_author():
    body = real_response(EFETCH)
    body = body.replace(b"<ArticleTitle>Social support and anxiety", b"<ArticleTitle>Social <i>support</i> and H<sub>2</sub>O anxiety", 1)
    body = body.replace(b"<Author ValidYN=\"Y\"><LastName>Luo</LastName><ForeName>Mei</ForeName><Initials>M</Initials>",
                        b"<Author ValidYN=\"Y\"><CollectiveName>ESK Trial Group</CollectiveName>", 1)
    rows = {r["provider_id"]: r for r in _rows(body)}
    assert rows["40790318"]["title"] == "Social support and H2O anxiety, a moderated mediating model."
    assert rows["40791037"]["authors"][0]["name"] == "ESK Trial Group" and len(rows["40791037"]["authors"]) == 5


def test_an_author_marked_not_valid_is_left_out():
    """PubMed keeps a misspelled author (ValidYN="N") beside the corrected one: the work has one such author, not two."""
    valid = b"<Author ValidYN=\"Y\"><LastName>Luo</LastName><ForeName>Mei</ForeName>"
    body = real_response(EFETCH).replace(valid, b"<Author ValidYN=\"N\"><LastName>Lou</LastName><ForeName>Mei</ForeName>"
                                                b"<Initials>M</Initials></Author>" + valid, 1)
    assert body != real_response(EFETCH)
    authors = {r["provider_id"]: r["authors"] for r in _rows(body)}["40791037"]
    assert [a["name"] for a in authors][:1] == ["Mei Luo"] and len(authors) == 5


def test_a_pmc_id_makes_the_record_open_access_unless_embargoed():
    pmc = b'<ArticleId IdType="pmc">PMC1234567</ArticleId></ArticleIdList>'
    body = real_response(EFETCH).replace(b"</ArticleIdList>", pmc, 1)
    row = _rows(body)[0]
    assert (row["is_oa"], row["oa_url"]) == (True, "https://pmc.ncbi.nlm.nih.gov/articles/PMC1234567/")
    embargoed = body.replace(b"<History>", b'<History><PubMedPubDate PubStatus="pmc-release"><Year>2026</Year><Month>8</Month>'
                                           b"<Day>1</Day></PubMedPubDate>", 1)
    assert _rows(embargoed)[0]["is_oa"] is None


@pytest.mark.parametrize(
    "medline, date, precision",
    [("2019 Mar-Apr", "2019-03-01", "month"), ("2018 Winter", "2018-01-01", "year"), ("1998 Dec-1999 Jan", "1998-12-01", "month"),
     ("2019 Mar 15-21", "2019-03-01", "month"), ("2019 Mar 15", "2019-03-15", "day"), ("2019-2020", "2019-01-01", "year"),
     ("2000 Spring-Summer", "2000-01-01", "year")],
)
def test_medline_dates_keep_the_precision_they_have(medline, date, precision):
    read = read_medline_date(medline)
    assert (str(read.date), read.precision, read.lost) == (date, precision, False)
    body = real_response(EFETCH).replace(b"<PubDate><Year>2025</Year><Month>Aug</Month></PubDate>",
                                         f"<PubDate><MedlineDate>{medline}</MedlineDate></PubDate>".encode(), 1)
    row = _rows(body)[0]  # 40791037 has no ArticleDate: its issue date is its date
    assert (str(row["publication_date"]), row["publication_date_precision"]) == (date, precision)


def test_pub_dates_with_a_day_and_impossible_ones():
    body = real_response(EFETCH).replace(b"<PubDate><Year>2025</Year><Month>Aug</Month></PubDate>",
                                         b"<PubDate><Year>2025</Year><Month>Feb</Month><Day>30</Day></PubDate>", 1)
    page = normalize_page_checked("pubmed", body)
    row = page.table.to_pylist()[0]
    assert (str(row["publication_date"]), row["publication_date_precision"]) == ("2025-01-01", "year")
    assert [(p.record_id, p.action) for p in page.problems] == [("40791037", "impossible date kept as its year")]


def test_a_value_of_the_wrong_shape_is_null_and_reported_and_an_article_without_pmid_fails_its_page():
    twice = real_response(EFETCH).replace(b"<Title>Actas espanolas de psiquiatria</Title>",
                                          b"<Title>Actas espanolas de psiquiatria</Title><Title>Again</Title>", 1)
    page = normalize_page_checked("pubmed", twice)
    assert page.table.to_pylist()[0]["venue"] is None
    assert [(p.record_id, p.field, p.action) for p in page.problems] == [("40791037", "MedlineCitation.Article.Journal.Title", "set to NULL")]
    no_pmid = real_response(EFETCH).replace(b'<PMID Version="1">40791020</PMID>', b"", 1)
    with pytest.raises(RecordError, match=r"pubmed record #1 .*`PMID`"):
        normalize_page("pubmed", no_pmid)


# Requests and paging


def test_the_first_request_is_an_esearch_on_the_history_server_for_the_day():
    request = PUBMED.first_request("soil microbiome", dt.date(2024, 3, 1), 300, "me@example.org")
    assert request.path == "/esearch.fcgi" and request.holds_records is False
    assert dict(request.params) == {"db": "pubmed", "term": "soil AND microbiome", "datetype": "pdat", "mindate": "2024/03/01",
                                    "maxdate": "2024/03/01", "usehistory": "y", "retmax": "0", "tool": "scholar-pipeline",
                                    "email": "me@example.org"}
    assert "email" not in dict(PUBMED.first_request("soil", dt.date(2024, 3, 1), 300, None).params)
    assert PUBMED.credential.env == "PUBMED_API_KEY" and PUBMED.credential.query_param == "api_key"
    assert PUBMED.defaults.rate_limit == 3 and PUBMED.defaults.max_records == MAX_TOTAL


def _with_history(relative: str, count: int | None = None) -> bytes:
    body = real_response(relative).replace(b"<IdList>", b"<QueryKey>1</QueryKey><WebEnv>MCID_6789abc</WebEnv><IdList>", 1)
    return body if count is None else re.sub(rb"<Count>\d+</Count>", f"<Count>{count}</Count>".encode(), body)


def test_recorded_esearch_pages_parse_and_lead_to_efetch_batches():
    request = PUBMED.first_request("biopython", dt.date(2024, 3, 1), 25, None)
    info = PUBMED.inspect(request, _with_history(ESEARCH_BIOPYTHON))
    assert (info.records, info.total) == (0, 63)
    fetch = info.next_request
    assert fetch.path == "/efetch.fcgi" and fetch.holds_records
    assert dict(fetch.params) == {"db": "pubmed", "WebEnv": "MCID_6789abc", "query_key": "1", "retstart": "0", "retmax": "25",
                                  "retmode": "xml", "tool": "scholar-pipeline"}
    # The recorded searches were made without usehistory=y: no WebEnv, which the pipeline cannot page with.
    with pytest.raises(MalformedPage, match="no `WebEnv`/`QueryKey`.*usehistory=y"):
        PUBMED.inspect(request, real_response(ESEARCH_BIOPYTHON))
    empty = PUBMED.inspect(request, re.sub(rb"<Count>\d+</Count>", b"<Count>0</Count>", real_response(ESEARCH_BIOPYTHON)))
    assert (empty.total, empty.next_request) == (0, None)


def test_more_than_ten_thousand_records_fail_on_the_esearch_page_and_say_to_narrow_the_search():
    """The recorded search `anxiety` reports 375641 records."""
    request = PUBMED.first_request("anxiety", dt.date(2024, 3, 1), 200, None)
    with pytest.raises(PartitionTooLarge, match=r"375641 records.*more than the 10000.*narrow the saved search"):
        PUBMED.inspect(request, _with_history(ESEARCH_ANXIETY))
    assert PUBMED.inspect(request, _with_history(ESEARCH_ANXIETY, count=MAX_TOTAL)).total == MAX_TOTAL


def _efetch(retstart: int, retmax: int, count: int) -> EfetchRequest:
    params = (("db", "pubmed"), ("WebEnv", "MCID_1"), ("query_key", "1"), ("retstart", str(retstart)), ("retmax", str(retmax)), ("retmode", "xml"))
    return EfetchRequest("/efetch.fcgi", params, count=count)


def test_efetch_batches_move_on_by_retstart_until_the_count():
    first = PUBMED.inspect(_efetch(0, 20, 50), real_response(EFETCH))
    assert (first.records, first.total) == (20, 50) and first.next_request.param("retstart") == "20"
    assert first.next_request.count == 50 and first.next_request.param("WebEnv") == "MCID_1"
    last = PUBMED.inspect(_efetch(40, 20, 60), real_response(EFETCH))
    assert last.records == 20 and last.next_request is None


def test_efetch_batches_that_do_not_match_the_stored_search_are_refused():
    empty = re.sub(rb"<PubmedArticle>.*</PubmedArticle>", b"", real_response(EFETCH), flags=re.S)
    with pytest.raises(MalformedPage, match="empty batch at retstart=20 although the search reports Count=50"):
        PUBMED.inspect(_efetch(20, 20, 50), empty)
    with pytest.raises(MalformedPage, match="sent 20 articles at retstart=0 where the stored search .* holds 30"):
        PUBMED.inspect(_efetch(0, 30, 50), real_response(EFETCH))  # e.g. a cached batch of another size


def test_the_rate_limit_error_with_status_200_is_not_data():
    body = b'{"error":"API rate limit exceeded","api-key":"1.2.3.4","count":"4","limit":"3"}'
    for request in (PUBMED.first_request("x", dt.date(2024, 3, 1), 20, None), _efetch(0, 20, 20)):
        with pytest.raises(MalformedPage, match="API rate limit exceeded.*PUBMED_API_KEY"):
            PUBMED.inspect(request, body)
    with pytest.raises(MalformedPage, match="rate limit"):
        normalize_page("pubmed", body)


def test_errors_in_the_body_are_refused_with_their_message():
    search_error = b'<?xml version="1.0" encoding="UTF-8" ?>\n<eSearchResult><ERROR>Empty term and query_key - nothing todo</ERROR></eSearchResult>'
    with pytest.raises(MalformedPage, match="esearch refused the request: Empty term and query_key"):
        PUBMED.inspect(PUBMED.first_request("x", dt.date(2024, 3, 1), 20, None), search_error)
    fetch_error = b"<eFetchResult><ERROR>Cannot retrieve history data. query_key: 1, WebEnv: MCID_1</ERROR></eFetchResult>"
    with pytest.raises(MalformedPage, match="efetch refused the request: Cannot retrieve history data"):
        PUBMED.inspect(_efetch(0, 20, 20), fetch_error)
    with pytest.raises(MalformedPage, match="not XML"):
        PUBMED.inspect(_efetch(0, 20, 20), b"<html><body>Service unavailable")


@pytest.mark.parametrize(
    "text, term",
    [
        ("large language model", "large AND language AND model"),
        ("graphene", "graphene"),
        ("COVID-19 vaccine", "COVID-19 AND vaccine"),
        ("p53/mdm2 binding", '"p53 mdm2" AND binding'),  # no `/` reaches PubMed's subheading syntax
        ('"machine learning" AND (soil OR fungi)', '"machine learning" AND (soil OR fungi)'),
        ("soil OR fungi bacteria", "soil OR (fungi AND bacteria)"),  # PubMed reads left to right: AND made to bind tighter
        ("soil NOT fungi", "soil NOT fungi"),
        ("soil AND NOT fungi", "soil NOT fungi"),
        ("machine learning, fairness", "machine AND learning AND fairness"),
    ],
)
def test_search_text_is_written_in_pubmed_syntax_with_its_meaning(text, term):
    assert PUBMED.search_terms(text) == term


@pytest.mark.parametrize(
    "text, reason",
    [(" ?!, ", "no word"), ("cancer[ti]", "field-tag"), ("electro*", "wildcard"), ("#1 AND soil", "earlier search"),
     ('"open phrase', "not closed"), ("(soil OR fungi", "is not closed"), ("soil AND", "term is missing after AND"),
     ("NOT fungi", "needs a term before it"), ("()", "no word")],
)
def test_text_pubmed_would_read_otherwise_is_refused(text, reason):
    with pytest.raises(SearchTextError, match=re.escape(reason)):
        PUBMED.search_terms(text)


def test_an_impossible_article_date_is_reported_and_the_issue_date_read_instead():
    body = real_response(EFETCH).replace(b'<ArticleDate DateType="Electronic"><Year>2025</Year><Month>08</Month><Day>12</Day>',
                                         b'<ArticleDate DateType="Electronic"><Year>2025</Year><Month>08</Month><Day>32</Day>', 1)
    page = normalize_page_checked("pubmed", body)
    row = page.table.to_pylist()[1]  # 40791020: PubDate 2025 Aug 12
    assert (str(row["publication_date"]), row["publication_date_precision"]) == ("2025-08-12", "day")
    assert [(p.record_id, p.field, p.value) for p in page.problems] == [("40791020", "MedlineCitation.Article.ArticleDate[0]", "'2025-08-32'")]
