"""Crossref pages normalize into the works schema; expected values were read off the recorded files."""

import datetime as dt
import json

from scholar_pipeline.normalize import normalize_page, normalize_page_checked
from scholar_pipeline_tests.conftest import real_response

ECOLOGY = "crossref/fulltext_works_query_ecology_has_license_rows200.json"
WIDGET = "crossref/habanero_works_query_widget_cursor_p{}.json"


def test_large_page_with_partial_dates():
    rows = normalize_page("crossref", real_response(ECOLOGY)).to_pylist()
    assert len(rows) == 200
    assert rows[0]["provider_id"] == rows[0]["doi"] == "10.2307/1929908"
    assert rows[0]["title"] == "Scandinavian Ecology"
    # issued 1957-07 (no day): stored as the month's first day, precision says so.
    assert (rows[0]["publication_date"], rows[0]["publication_date_precision"]) == (dt.date(1957, 7, 1), "month")
    assert [a["name"] for a in rows[0]["authors"]] == ["Askell Love", "Hugo Sjors"]
    assert rows[199]["doi"] == "10.1016/0169-5347(91)90151-m"
    assert rows[199]["authors"] == []
    assert sum(r["title"] is not None for r in rows) == 176  # 24 items carry no title
    # The search asked for has-license:true; 177 items hold only text-and-data-mining licences (Wiley's), which license
    # no reading: 20 name a licence of the version of record, 3 one for no version in particular.
    assert sum(r["license"] is not None for r in rows) == 23


def test_cursor_chain_pages_and_jats_abstract():
    pages = [normalize_page("crossref", real_response(WIDGET.format(n))).to_pylist() for n in (1, 2, 3)]
    assert [len(p) for p in pages] == [20, 20, 20]
    assert pages[0][0]["doi"] == "10.1007/978-1-4302-0197-7_9" and pages[0][0]["publication_date"] is None
    assert pages[1][0]["doi"] == "10.1145/3027385.3027428"
    assert pages[2][-1]["doi"] == "10.3997/2214-4609.201410548"
    by_doi = {r["doi"]: r for page in pages for r in page}
    post = by_doi["10.59350/7mtwq-q3661"]
    assert post["abstract"] == ("In addition to this Swing-based screenshot of JChemPaint , here's a SWT widget in action "
                                "(lower right corner):")
    assert post["authors"] == [{"name": "Egon Willighagen", "orcid": "0000-0001-7542-0286", "affiliations": []}]
    assert post["is_oa"] is True and post["license"] == "https://creativecommons.org/licenses/by/4.0/legalcode"
    assert (post["publication_date"], post["publication_date_precision"]) == (dt.date(2008, 6, 18), "day")
    scheffel = pages[1][0]["authors"][0]
    assert scheffel == {"name": "Maren Scheffel", "orcid": None, "affiliations": ["Open Universiteit, Heerlen, NL"]}


def test_an_author_entry_holding_nothing_is_left_out():
    # Recorded: the thesis's deposit lists an entry with no name, ORCID or affiliation before its `sequence: first`
    # author, who would otherwise read as the second author after an anonymous first.
    page = normalize_page_checked("crossref", real_response(WIDGET.format(3)))
    thesis = next(r for r in page.table.to_pylist() if r["doi"] == "10.31390/gradschool_theses.6125")
    assert thesis["authors"] == [{"name": "Joshua Rovira", "orcid": None,
                                  "affiliations": ["Louisiana State University and Agricultural and Mechanical College"]}]
    assert page.problems == ()  # well formed: nothing for `values_well_typed` to warn of


def _with_licenses(licenses: list[dict]) -> dict:
    page = json.loads(real_response(WIDGET.format(1)))
    page["message"]["items"] = page["message"]["items"][:1]
    page["message"]["items"][0]["license"] = licenses
    return normalize_page("crossref", json.dumps(page).encode()).to_pylist()[0]


def _license(url: str, version: str, delay: int = 0) -> dict:
    return {"URL": url, "content-version": version, "delay-in-days": delay,
            "start": {"date-parts": [[2020, 1, 1]], "date-time": "2020-01-01T00:00:00Z", "timestamp": 1577836800000}}


def test_the_license_is_the_version_of_records_and_open_access_needs_it_open_from_publication():
    elsevier = "https://www.elsevier.com/tdm/userlicense/1.0/"
    cc_by = "http://creativecommons.org/licenses/by/4.0/"
    # Elsevier's shape: text-and-data-mining licences, and a Creative Commons one for the accepted manuscript, two years on.
    closed = _with_licenses([_license(elsevier, "tdm"), _license("http://creativecommons.org/licenses/by-nc-nd/4.0/", "am", 727)])
    assert (closed["license"], closed["is_oa"]) == (None, None)
    # Wiley's: a TDM licence alone (177 of the recorded ecology page) licenses no reading.
    assert (_with_licenses([_license("http://doi.wiley.com/10.1002/tdm_license_1.1", "tdm")])["license"]) is None
    gold = _with_licenses([_license(elsevier, "tdm"), _license(cc_by, "vor")])
    assert (gold["license"], gold["is_oa"]) == (cc_by, True)
    embargoed = _with_licenses([_license(cc_by, "vor", 365)])
    assert (embargoed["license"], embargoed["is_oa"]) == (cc_by, None)
    # The delay counts from `issued`, the 1st of a month-dated issue: Wiley's start on the online date, days later.
    assert _with_licenses([_license(cc_by, "vor", 3)])["is_oa"] is True
    # A publisher's own terms beside a Creative Commons licence of the same version: the open one licenses reading.
    both = _with_licenses([_license("https://example.org/terms", "vor"), _license(cc_by, "vor")])
    assert (both["license"], both["is_oa"]) == (cc_by, True)
    unspecified = _with_licenses([_license(elsevier, "tdm"), _license(cc_by, "unspecified")])
    assert (unspecified["license"], unspecified["is_oa"]) == (cc_by, True)


def test_year_only_dates_have_year_precision():
    rows = normalize_page("crossref", real_response(WIDGET.format(1))).to_pylist()
    year_only = [r for r in rows if r["title"] == "Adding Additional Widget Sizes"][0]
    assert (year_only["publication_date"], year_only["publication_date_precision"]) == (dt.date(2020, 1, 1), "year")


def _with_first_item(relative: str, **fields) -> bytes:
    page = json.loads(real_response(relative))
    page["message"]["items"][0].update(fields)
    return json.dumps(page).encode()


def test_recorded_container_title_entities_are_decoded():
    rows = normalize_page("crossref", real_response(WIDGET.format(2))).to_pylist()
    scheffel = next(r for r in rows if r["doi"] == "10.1145/3027385.3027428")
    assert scheffel["venue"] == "Proceedings of the Seventh International Learning Analytics & Knowledge Conference"


def test_jats_abstract_and_inline_title_markup_become_text():
    body = _with_first_item(
        ECOLOGY,
        title=["Expression of <i>Bcl</i>-2 in H<sub>2</sub>O-stressed <scp>Quercus</scp>"],
        abstract="<jats:title>Abstract</jats:title><jats:p>Richness rose (p < 0.05) in plots with > 3 species.</jats:p>"
                 "<jats:p>Second &amp; last.</jats:p>",
    )
    row = normalize_page("crossref", body).to_pylist()[0]
    assert row["title"] == "Expression of Bcl-2 in H2O-stressed Quercus"
    assert row["abstract"] == "Richness rose (p < 0.05) in plots with > 3 species. Second & last."


def test_title_given_as_a_string_is_not_cut_to_its_first_letter():
    body = _with_first_item(ECOLOGY, title="Scandinavian Ecology", **{"container-title": "Ecology"})
    row = normalize_page("crossref", body).to_pylist()[0]
    assert (row["title"], row["venue"]) == ("Scandinavian Ecology", "Ecology")


def test_title_and_abstract_text_shaped_like_a_tag_is_kept():
    body = _with_first_item(
        ECOLOGY,
        title=["Optional<T> types and the <canvas> element"],
        abstract="<jats:p>We show a<b and c>d for <i>List</i><String>.</jats:p>",
        **{"container-title": ["Journal of <Generic> Programming"]},
    )
    row = normalize_page("crossref", body).to_pylist()[0]
    assert row["title"] == "Optional<T> types and the <canvas> element"
    assert row["abstract"] == "We show a<b and c>d for List<String>."
    assert row["venue"] == "Journal of <Generic> Programming"
