"""PLOS Solr pages normalize into the works schema; expected values were read off the recorded files."""

import datetime as dt
import json

from scholar_pipeline.normalize import normalize_page, normalize_page_checked
from scholar_pipeline_tests.conftest import real_response

IDS_ONLY = "plos/fulltext_search_ecology_rows200_ids.json"  # fl=id, rows=200
DEFAULT_FIELDS = "plos/scholarflux_plos_search_social_wealth_equity_rows100.json"  # PLOS's default fl, rows=100


def _by_doi(relative: str) -> dict[str, dict]:
    return {r["doi"]: r for r in normalize_page("plos", real_response(relative)).to_pylist()}


def test_ids_only_page_keeps_every_doi_and_invents_nothing():
    page = normalize_page_checked("plos", real_response(IDS_ONLY))
    rows = page.table.to_pylist()
    assert len(rows) == 200 and page.problems == ()
    assert rows[0]["provider_id"] == rows[0]["doi"] == "10.1371/journal.pone.0001248"
    assert rows[99]["doi"] == "10.1371/journal.pgen.1005860"
    assert rows[199]["doi"] == "10.1371/journal.pone.0072525"
    assert len({r["doi"] for r in rows}) == 200
    # fl=id asked for nothing else: no title, date or venue is made up.
    assert all(r["title"] is None and r["publication_date"] is None and r["venue"] is None and r["authors"] == [] for r in rows)
    assert rows[0]["url"] == "https://doi.org/10.1371/journal.pone.0001248"


def test_default_field_page_reads_titles_authors_dates_and_venues():
    page = normalize_page_checked("plos", real_response(DEFAULT_FIELDS))
    rows = page.table.to_pylist()
    assert len(rows) == 100 and page.problems == ()
    first = rows[0]
    assert first["provider_id"] == first["doi"] == "10.1371/journal.pone.0241049"
    assert first["title"] == "Social inequality in infant mortality in Angola: Evidence from a population based study"
    assert first["authors"] == [{"name": "Gebretsadik Shibre", "orcid": None, "affiliations": []}]
    assert (first["publication_date"], first["publication_date_precision"]) == (dt.date(2020, 10, 22), "day")
    assert (first["venue"], first["publisher"], first["work_type"]) == ("PLOS ONE", "Public Library of Science", "Research Article")
    assert first["is_oa"] is True and first["license"] is None and first["cited_by_count"] is None
    last = rows[99]
    assert last["doi"] == "10.1371/journal.pone.0248411" and len(last["authors"]) == 7
    assert last["title"] == "Mixed effects analysis of factors associated with health insurance coverage among women in sub-Saharan Africa"
    assert last["publication_date"] == dt.date(2021, 3, 19)
    assert sum(len(r["authors"]) for r in rows) == 471
    by_doi = {r["doi"]: r for r in rows}
    criticisms = by_doi["10.1371/journal.pcbi.1009141"]
    assert len(criticisms["authors"]) == 19 and [a["name"] for a in criticisms["authors"][:2]] == ["Maya L. Gosztyla", "Lydia Kwong"]
    no_journal = by_doi["10.1371/journal.pone.0041225"]  # 3 of the 100 records carry no `journal`
    assert no_journal["venue"] is None and no_journal["publication_date"] == dt.date(2012, 8, 2)
    assert sum(r["venue"] is None for r in rows) == 3
    assert by_doi["10.1371/journal.pgph.0000203"]["venue"] == "PLOS Global Public Health"


def test_title_display_is_markup_and_its_bare_ampersand_stays():
    by_doi = _by_doi(DEFAULT_FIELDS)
    assert by_doi["10.1371/journal.pgph.0000203"]["title"] == (
        "How Jaminan Kesehatan Nasional (JKN) coverage influences out-of-pocket (OOP) payments by vulnerable populations in Indonesia"
    )
    assert by_doi["10.1371/journal.pone.0308121"]["title"] == "Racial/Ethnic inequality & contemporary disparities in mortgage lending"


def test_abstract_is_plain_text_so_comparisons_and_ampersands_stay():
    by_doi = _by_doi(DEFAULT_FIELDS)
    assert "low wealth" in by_doi["10.1371/journal.pone.0139708"]["abstract"]
    assert "95% CI -3.1 points, -1.2, p<0.001); low wealth" in by_doi["10.1371/journal.pone.0139708"]["abstract"]
    assert "(IHDS I & II)—we calcu" in by_doi["10.1371/journal.pone.0158332"]["abstract"]
    assert "all P-values < 0.05). Conclusion:" in by_doi["10.1371/journal.pone.0295810"]["abstract"]
    # Line breaks and indentation around the recorded text are tidied away.
    indented = by_doi["10.1371/journal.pone.0041225"]["abstract"]
    assert indented.startswith("In this paper we appraise current agricultural subsidy policy in the EU")
    assert indented.endswith("loan) are presented and examined.")
    assert by_doi["10.1371/journal.pcbi.1009141"]["abstract"] is None  # recorded as [""]


def test_abstract_that_looks_like_markup_is_not_parsed():
    page = json.loads(real_response(DEFAULT_FIELDS))
    page["response"]["docs"][0]["abstract"] = ["Richness rose (p<0.05 and n>3) in <b plots & <i>x</i>."]
    row = normalize_page("plos", json.dumps(page).encode()).to_pylist()[0]
    assert row["abstract"] == "Richness rose (p<0.05 and n>3) in <b plots & <i>x</i>."


def test_wrong_types_are_null_and_reported():
    page = json.loads(real_response(DEFAULT_FIELDS))
    doc = page["response"]["docs"][0]
    doc.update(title_display=["a list"], author_display="Ana Berg", publication_date="2020-02-30T00:00:00Z", journal=7)
    checked = normalize_page_checked("plos", json.dumps(page).encode())
    row = checked.table.to_pylist()[0]
    assert row["title"] is None and row["venue"] is None
    assert [a["name"] for a in row["authors"]] == ["Ana Berg"]  # a lone string read as a one-element list, and reported
    assert (row["publication_date"], row["publication_date_precision"]) == (dt.date(2020, 1, 1), "year")
    reported = {(p.record_id, p.field, p.action) for p in checked.problems}
    assert reported == {
        ("10.1371/journal.pone.0241049", "title_display", "set to NULL"),
        ("10.1371/journal.pone.0241049", "journal", "set to NULL"),
        ("10.1371/journal.pone.0241049", "author_display", "read as a one-element list"),
        ("10.1371/journal.pone.0241049", "publication_date", "impossible date kept as its year"),
    }
