"""PMIDs, PMCIDs and arXiv ids: bare and checked (identifiers.py), and read by every provider that sends them, a value
that is no such id NULL and reported. Pages are the recorded ones (or documented shapes) with the ids edited in."""

import json

import pytest

from scholar_pipeline.identifiers import (
    arxiv_id_from_doi, arxiv_id_from_oai, bare_arxiv_id, bare_pmcid, bare_pmid, is_arxiv_doi, oai_repository, pmcid_from_oai,
)
from scholar_pipeline.normalize import normalize_page_checked
from scholar_pipeline_tests.conftest import DATA, real_response


@pytest.mark.parametrize("value, pmid", [
    ("12345678", "12345678"), (" 12345678\n", "12345678"), ("1", "1"),
    ("https://pubmed.ncbi.nlm.nih.gov/12345678", "12345678"), ("https://pubmed.ncbi.nlm.nih.gov/12345678/", "12345678"),
    ("http://www.ncbi.nlm.nih.gov/pubmed/29456894", "29456894"), ("PMID: 29456894", "29456894"), ("pmid:29456894", "29456894"),
    ("0", None), ("00012345", None), ("1234567890", None), ("12345a", None), ("12 345", None), ("-5", None), ("", None),
    (None, None), ("PMC1234567", None), ("١٢٣", None),  # Arabic-Indic digits are digits to str.isdigit, not to PubMed
    ("https://pubmed.ncbi.nlm.nih.gov/", None), ("https://example.org/12345678", None),
])
def test_pmids_are_their_digits_and_nothing_else(value, pmid):
    assert bare_pmid(value) == pmid


@pytest.mark.parametrize("value, pmcid", [
    ("PMC1234567", "PMC1234567"), ("pmc1234567", "PMC1234567"), ("  Pmc1234567 ", "PMC1234567"), ("PMCID: PMC7", "PMC7"),
    ("https://www.ncbi.nlm.nih.gov/pmc/articles/PMC1234567/", "PMC1234567"),
    ("https://www.ncbi.nlm.nih.gov/pmc/articles/5815332", "PMC5815332"),  # OpenAlex's documented form: digits alone
    ("https://pmc.ncbi.nlm.nih.gov/articles/PMC1234567/", "PMC1234567"),
    ("1234567", None),  # bare digits could as well be a PMID
    ("PMC", None), ("PMC0", None), ("PMC01234", None), ("PMC12a", None), ("PMC 123", None), ("", None), (None, None),
    ("https://www.ncbi.nlm.nih.gov/pmc/articles/", None), ("https://example.org/PMC123", None),
])
def test_pmcids_are_pmc_and_digits(value, pmcid):
    assert bare_pmcid(value) == pmcid


def test_pmcid_digits_alone_count_where_the_field_says_it_holds_one():
    assert bare_pmcid("1234567", digits_alone=True) == bare_pmcid(" PMC1234567 ", digits_alone=True) == "PMC1234567"
    assert bare_pmcid("0", digits_alone=True) is None and bare_pmcid("12x", digits_alone=True) is None


@pytest.mark.parametrize("value, arxiv_id", [
    ("2401.01234", "2401.01234"), ("2401.12345", "2401.12345"), ("2401.01234v2", "2401.01234"), ("arXiv:2401.01234v3", "2401.01234"),
    ("ARXIV: 2401.01234", "2401.01234"), (" 2401.01234\t", "2401.01234"), ("http://arxiv.org/abs/2401.01234v2", "2401.01234"),
    ("https://arxiv.org/abs/2401.01234v2/", "2401.01234"), ("https://arxiv.org/pdf/2401.01234v1.pdf", "2401.01234"),
    ("https://export.arxiv.org/abs/2202.12139", "2202.12139"),
    ("0704.0001", "0704.0001"), ("1412.9999", "1412.9999"), ("1501.00001", "1501.00001"),  # the scheme's bounds
    ("hep-th/9901001", "hep-th/9901001"), ("hep-th/9901001v2", "hep-th/9901001"), ("HEP-TH/9901001", "hep-th/9901001"),
    ("math.GT/0309136", "math/0309136"),  # the subject class is no part of the id
    ("http://arxiv.org/abs/cond-mat/0703001v1", "cond-mat/0703001"), ("hep-th/9108001", "hep-th/9108001"),
    ("2401.1234", None),  # four digits after 2014
    ("0704.00001", None), ("1412.12345", None),  # five digits before 2015
    ("0703.0001", None),  # before the new scheme began
    ("2413.01234", None), ("2400.01234", None),  # month 13, month 0
    ("2401.00000", None), ("2401.01234v0", None), ("2401.01234v", None), ("2401.01234v2v3", None),
    ("hep-th/0801001", None), ("hep-th/9101001", None), ("hep-th/9913001", None), ("hep-th/9901000", None),
    ("hep-th/990100", None), ("9901001", None), ("2401_01234", None), ("0", None), ("", None), (None, None),
    ("10.48550/arXiv.2401.01234", None),  # a DOI is read by arxiv_id_from_doi
])
def test_arxiv_ids_follow_arxivs_numbering_and_lose_their_version(value, arxiv_id):
    assert bare_arxiv_id(value) == arxiv_id


@pytest.mark.parametrize("doi, is_arxiv, arxiv_id", [
    ("10.48550/arXiv.2401.01234", True, "2401.01234"), ("https://doi.org/10.48550/ARXIV.2401.01234", True, "2401.01234"),
    ("10.48550/arxiv.hep-th/9901001", True, "hep-th/9901001"), ("10.48550/arxiv.2007.14454", True, "2007.14454"),
    ("10.48550/arxiv.2401.01234v2", True, None),  # arXiv mints its DOIs without a version
    ("10.48550/arxiv.abc", True, None), ("10.48550/zenodo.123", False, None), ("10.1103/physrevd.108.063017", False, None),
    (None, False, None), ("", False, None),
])
def test_an_arxiv_doi_names_its_arxiv_id(doi, is_arxiv, arxiv_id):
    assert (is_arxiv_doi(doi), arxiv_id_from_doi(doi)) == (is_arxiv, arxiv_id)


def test_oai_identifiers_name_their_repository_and_its_id():
    assert oai_repository("oai:arXiv.org:2403.10101") == "arxiv.org" and oai_repository("not an oai id") is None
    assert arxiv_id_from_oai("oai:arXiv.org:2403.10101") == "2403.10101"
    assert arxiv_id_from_oai("oai:arXiv.org:hep-th/9901001") == "hep-th/9901001"
    assert arxiv_id_from_oai("oai:repository.example.org:4411") is None and arxiv_id_from_oai("oai:arXiv.org:x") is None
    assert pmcid_from_oai("oai:pubmedcentral.nih.gov:1234567") == "PMC1234567"
    assert pmcid_from_oai("oai:pubmedcentral.nih.gov:0") is None and pmcid_from_oai("oai:arXiv.org:1234567") is None


# --- per provider -------------------------------------------------------------------------------------------------------

def _normalized(provider: str, page: dict | bytes):
    body = page if isinstance(page, bytes) else json.dumps(page).encode()
    normalized = normalize_page_checked(provider, body)
    ids = [{k: row[k] for k in ("provider_id", "doi", "pmid", "pmcid", "arxiv_id")} for row in normalized.table.to_pylist()]
    return ids, [(p.record_id, p.field, p.value, p.action) for p in normalized.problems]


def test_openalex_ids_and_arxiv_dois_give_the_identifiers():
    page = json.loads(real_response("openalex/openalexpro_works_filter_ids_cursor_p1.json"))
    first, second = page["results"]
    first["ids"] |= {"pmid": "https://pubmed.ncbi.nlm.nih.gov/29456894", "pmcid": "https://www.ncbi.nlm.nih.gov/pmc/articles/5815332"}
    second["ids"] |= {"pmid": "https://pubmed.ncbi.nlm.nih.gov/0", "pmcid": "https://www.ncbi.nlm.nih.gov/pmc/articles/PMC77/"}
    ids, problems = _normalized("openalex", page)
    assert ids == [
        {"provider_id": "W3046863325", "doi": "10.1145/3383583.3398584", "pmid": "29456894", "pmcid": "PMC5815332", "arxiv_id": None},
        # The recorded arXiv e-print: its DOI is arXiv's.
        {"provider_id": "W3045921891", "doi": "10.48550/arxiv.2007.14454", "pmid": None, "pmcid": "PMC77", "arxiv_id": "2007.14454"},
    ]
    assert problems == [("W3045921891", "ids.pmid", "'https://pubmed.ncbi.nlm.nih.gov/0'", "no valid pmid in it: pmid set to NULL")]


def test_openalex_recorded_pmids_are_bare():
    ids, problems = _normalized("openalex", real_response("openalex/openalexpro_works_search_biodiversity_finance_per200_cursor_p1.json"))
    pmids = [row["pmid"] for row in ids if row["pmid"]]
    assert len(pmids) == 18 and "12295970" in pmids and all(p.isdigit() for p in pmids) and problems == []


def test_pubmed_takes_the_pmid_and_the_article_id_list():
    body = real_response("pubmed/scholarflux_efetch_anxiety_20ids.xml")
    own_ids = '<ArticleIdList><ArticleId IdType="pubmed">40791037</ArticleId>'
    assert body.count(own_ids.encode()) == 1
    body = body.replace(own_ids.encode(), f'{own_ids}<ArticleId IdType="pmc">pmc12345</ArticleId>'.encode())
    body = body.replace(b'<ArticleId IdType="pubmed">40791020</ArticleId>',
                        b'<ArticleId IdType="pubmed">40791020</ArticleId><ArticleId IdType="pmc">PMC-12</ArticleId>')
    normalized = normalize_page_checked("pubmed", body)
    rows = {row["provider_id"]: row for row in normalized.table.to_pylist()}
    assert all(row["pmid"] == pmid and row["arxiv_id"] is None for pmid, row in rows.items())
    assert (rows["40791037"]["pmcid"], rows["40791037"]["is_oa"], rows["40791037"]["oa_url"]) == (
        "PMC12345", True, "https://pmc.ncbi.nlm.nih.gov/articles/PMC12345/")
    # A PMC id that is none: no PMCID, and no open-access link made of it.
    assert (rows["40791020"]["pmcid"], rows["40791020"]["is_oa"], rows["40791020"]["oa_url"]) == (None, None, None)
    assert [(p.record_id, p.field, p.value, p.action) for p in normalized.problems] == [
        ("40791020", "PubmedData.ArticleIdList.ArticleId[1].#text", "'PMC-12'", "no valid pmcid in it: pmcid set to NULL")]


def test_pubmed_reads_the_arxiv_id_an_arxiv_doi_names():
    """PubMed lists arXiv preprints (NIH Preprint Pilot) under their arXiv DOI: the id joins them to arXiv's record."""
    body = real_response("pubmed/scholarflux_efetch_anxiety_20ids.xml")
    assert body.count(b"10.62641/aep.v53i4.1965") == 2  # record 40791037's ELocationID and ArticleId
    body = body.replace(b"10.62641/aep.v53i4.1965", b"10.48550/arXiv.2401.01234")
    rows = {row["provider_id"]: row for row in normalize_page_checked("pubmed", body).table.to_pylist()}
    assert (rows["40791037"]["doi"], rows["40791037"]["arxiv_id"]) == ("10.48550/arxiv.2401.01234", "2401.01234")
    assert [row["arxiv_id"] for pmid, row in rows.items() if pmid != "40791037"] == [None] * (len(rows) - 1)


def test_arxiv_ids_lose_their_version_old_style_ids_too():
    body = real_response("arxiv/arxiv_query_testing_start0_max10.xml")
    ids, problems = _normalized("arxiv", body)
    assert len(ids) == 10 and all(row["arxiv_id"] == row["provider_id"].rsplit("v", 1)[0] for row in ids) and problems == []
    assert ids[2] == {"provider_id": "2005.14124v2", "doi": ids[2]["doi"], "pmid": None, "pmcid": None, "arxiv_id": "2005.14124"}
    old_style = body.replace(b"<id>http://arxiv.org/abs/2202.12139v1</id>", b"<id>http://arxiv.org/abs/hep-th/9901001v2</id>")
    no_id = body.replace(b"<id>http://arxiv.org/abs/2202.12139v1</id>", b"<id>http://arxiv.org/abs/2202.1213v1</id>")
    assert old_style != body != no_id
    assert _normalized("arxiv", old_style)[0][0]["arxiv_id"] == "hep-th/9901001"
    ids, problems = _normalized("arxiv", no_id)
    assert ids[0]["arxiv_id"] is None and ids[0]["provider_id"] == "2202.1213v1"
    assert problems == [("2202.1213v1", "id", "'http://arxiv.org/abs/2202.1213v1'", "no valid arxiv_id in it: arxiv_id set to NULL")]


def test_crossref_reads_an_arxiv_doi_and_the_arxiv_preprint_a_journal_article_names():
    page = json.loads(real_response("crossref/habanero_works_query_widget_cursor_p1.json"))
    items = page["message"]["items"][:5]
    items[0]["relation"] = {"has-preprint": [{"id-type": "doi", "id": "10.1101/2020.01.01.123456", "asserted-by": "subject"},
                                             {"id-type": "arxiv", "id": "arXiv:2401.01234v2", "asserted-by": "subject"}]}
    items[1]["relation"] = {"has-preprint": [{"id-type": "doi", "id": "10.48550/arXiv.2312.00001", "asserted-by": "subject"}],
                            "is-version-of": [{"id-type": "arxiv", "id": "2101.00001", "asserted-by": "object"}]}
    items[2]["relation"] = {"has-preprint": [{"id-type": "arxiv", "id": "2401.1234", "asserted-by": "subject"}]}
    items[3]["DOI"] = "10.48550/arXiv.2402.00002"
    page["message"]["items"] = items
    ids, problems = _normalized("crossref", page)
    assert [row["arxiv_id"] for row in ids] == ["2401.01234", "2312.00001", None, "2402.00002", None]
    assert all(row["pmid"] is None and row["pmcid"] is None for row in ids)
    assert problems == [(ids[2]["provider_id"], "relation.has-preprint[0].id", "'2401.1234'", "no valid arxiv_id in it: arxiv_id set to NULL")]


def test_core_reads_pubmed_and_arxiv_ids_arxiv_dois_and_oai_identifiers():
    page = json.loads((DATA / "documented_shapes/core/search_works_limit3.json").read_bytes())
    ids, problems = _normalized("core", page)
    assert [(row["pmid"], row["pmcid"], row["arxiv_id"]) for row in ids] == [("38491234", None, None), (None, None, "2403.10101"), (None, None, None)]
    assert problems == []
    first, second, third = page["results"]
    first |= {"pubmedId": "PMID 1", "oaiIds": ["oai:repository.example.org:4411", "oai:pubmedcentral.nih.gov:7654321"]}
    second |= {"arxivId": None}  # the arXiv DOI names it
    third |= {"arxivId": "arXiv:hep-th/9901001v1 ", "pubmedId": "n/a", "oaiIds": ["oai:arXiv.org:2401.99999"]}
    ids, problems = _normalized("core", page)
    assert [(row["pmid"], row["pmcid"], row["arxiv_id"]) for row in ids] == [
        ("1", "PMC7654321", None), (None, None, "2403.10101"), (None, None, "hep-th/9901001")]
    assert problems == [("160110007", "pubmedId", "'n/a'", "no valid pmid in it: pmid set to NULL")]
    third |= {"arxivId": None, "oaiIds": ["oai:arXiv.org:2401.9999"]}
    ids, problems = _normalized("core", page)
    assert ids[2]["arxiv_id"] is None
    assert problems[-1] == ("160110007", "oaiIds", "'oai:arXiv.org:2401.9999'", "no valid arxiv_id in it: arxiv_id set to NULL")


@pytest.mark.parametrize("provider, page", [("plos", "real_responses/plos/fulltext_search_ecology_rows200_ids.json"),
                                            ("springer", "documented_shapes/springer/meta_v2_onlinedate_3_records.json")])
def test_plos_and_springer_send_none_of_these_ids(provider, page):
    ids, _ = _normalized(provider, (DATA / page).read_bytes())
    assert ids and all(row["pmid"] is None and row["pmcid"] is None and row["arxiv_id"] is None for row in ids)
