"""arXiv Atom pages normalize into the works schema; expected values were read off the recorded files by eye."""

import datetime as dt

import pytest

from scholar_pipeline.normalize import normalize_page, normalize_page_checked
from scholar_pipeline.providers.base import MalformedPage, RecordError
from scholar_pipeline.schema import RECORD_FIELDS
from scholar_pipeline_tests.conftest import real_response

PAGE_0 = "arxiv/arxiv_query_testing_start0_max10.xml"
PAGE_10 = "arxiv/arxiv_query_testing_start10_max10.xml"
PAGE_20 = "arxiv/arxiv_query_testing_start20_max10.xml"

# Per recorded page: entry ids (with versions), DOIs as written in `arxiv:doi`, <author> counts, `published` days.
RECORDED = {
    PAGE_0: {
        "ids": ["2202.12139v1", "2405.13786v1", "2005.14124v2", "2204.08348v3", "2302.03287v3", "1202.4527v1", "2503.05378v2",
                "1205.1866v1", "2502.07719v2", "1812.11470v1"],
        "dois": {"2202.12139v1": "10.1109/ICSTW55395.2022.00035", "2405.13786v1": "10.1109/ICSTW58534.2023.00023",
                 "2005.14124v2": "10.1145/3395363.3397376", "2204.08348v3": "10.1145/3533767.3534401",
                 "2302.03287v3": "10.1109/ICSTW58534.2023.00078", "1205.1866v1": "10.5121/vlsic.2012.3205"},
        "authors": [3, 4, 5, 4, 5, 2, 4, 2, 4, 2],
        "dates": ["2022-02-24", "2024-05-22", "2020-05-28", "2022-04-18", "2023-02-07", "2012-02-21", "2025-03-07", "2012-05-09",
                  "2025-02-11", "2018-12-30"],
    },
    PAGE_10: {
        "ids": ["2403.16981v2", "2004.03322v1", "1912.09881v1", "2406.19956v3", "1912.04900v1", "2301.05651v1", "1605.01097v1",
                "2301.13615v1", "2407.18756v1", "2202.06271v1"],
        "dois": {"2407.18756v1": "10.1145/3679006.3685071"},
        "authors": [3, 1, 4, 2, 5, 5, 1, 4, 4, 3],
        "dates": ["2024-03-25", "2020-04-07", "2019-12-20", "2024-06-28", "2019-12-10", "2023-01-13", "2016-05-03", "2023-01-31",
                  "2024-07-26", "2022-02-13"],
    },
    PAGE_20: {
        "ids": ["2008.01944v1", "2005.06826v1", "2306.03845v1", "1908.03707v1", "2109.07960v2", "2409.05654v9", "2104.11069v1",
                "2106.13414v2", "2007.10224v1", "2602.15552v1"],
        "dois": {"2306.03845v1": "10.1145/3597926.3598112"},
        "authors": [5, 5, 4, 6, 6, 1, 3, 4, 3, 3],
        "dates": ["2020-08-05", "2020-05-14", "2023-06-06", "2019-08-10", "2021-09-16", "2024-09-09", "2021-04-21", "2021-06-25",
                  "2020-07-20", "2026-02-17"],
    },
}


@pytest.mark.parametrize("relative", RECORDED)
def test_every_recorded_page_normalizes_with_the_ids_dois_authors_and_dates_it_holds(relative):
    page = normalize_page_checked("arxiv", real_response(relative))
    expected = RECORDED[relative]
    assert page.table.schema == RECORD_FIELDS
    assert page.problems == ()
    rows = page.table.to_pylist()
    assert [r["provider_id"] for r in rows] == expected["ids"]  # the version is kept
    assert {r["provider_id"]: r["doi"] for r in rows if r["doi"]} == {k: v.lower() for k, v in expected["dois"].items()}
    assert [len(r["authors"]) for r in rows] == expected["authors"]
    assert [r["publication_date"].isoformat() for r in rows] == expected["dates"]
    assert {r["publication_date_precision"] for r in rows} == {"day"}
    for row in rows:
        assert row["url"] == f"https://arxiv.org/abs/{row['provider_id']}"
        assert row["oa_url"] == f"https://arxiv.org/pdf/{row['provider_id']}"
        assert row["is_oa"] is True and row["license"] is None and row["cited_by_count"] is None
        assert row["title"] and row["abstract"] and "\n" not in row["title"] + row["abstract"]
    assert len({r["record_hash"] for r in rows}) == 10


def test_titles_and_names_are_read_as_written():
    rows = normalize_page("arxiv", real_response(PAGE_20)).to_pylist()
    assert rows[0]["title"] == "Optimal Pooling Matrix Design for Group Testing with Dilution (Row Degree) Constraints"
    assert rows[2]["title"] == "$ω$Test: WebView-Oriented Testing for Android Applications"  # LaTeX stays as written
    assert rows[4]["title"] == ("Efficient and Effective Generation of Test Cases for Pedestrian Detection -- Search-based Software "
                                "Testing of Baidu Apollo in SVL")
    assert [a["name"] for a in rows[9]["authors"]] == ["Giorgi Merabishvili", "Oliver Weißl", "Andrea Stocco"]
    assert rows[9]["authors"][0] == {"name": "Giorgi Merabishvili", "orcid": None, "affiliations": []}
    rows = normalize_page("arxiv", real_response(PAGE_0)).to_pylist()
    assert [a["name"] for a in rows[1]["authors"]] == ["Aurora Ramírez", "Mario Berrios", "José Raúl Romero", "Robert Feldt"]


def test_an_abstract_in_paragraphs_is_unwrapped_to_one_line():
    """1812.11470v1's summary holds four paragraphs, each break a newline and two spaces of indentation."""
    abstract = normalize_page("arxiv", real_response(PAGE_0)).to_pylist()[9]["abstract"]
    assert "community as a whole. Objective. In this systematic review" in abstract
    assert "systematic review. Results. From effectiveness" in abstract
    assert abstract.endswith("current automated testing techniques are not efficient enough.")


def _entry_changed(old: str, new: str, relative: str = PAGE_10) -> bytes:
    body = real_response(relative).decode()
    assert old in body
    return body.replace(old, new, 1).encode()


def test_affiliations_and_a_license_are_read_when_a_feed_carries_them():
    body = _entry_changed("<name>Ankit Pensia</name>", "<name>Ankit Pensia</name>\n      <arxiv:affiliation>UC Berkeley</arxiv:affiliation>"
                          "<arxiv:affiliation> IBM\n  Research </arxiv:affiliation>")
    body = body.replace(b"<published>2024-03-25T17:42:32Z</published>", b"<published>2024-03-25T17:42:32Z</published>"
                        b"<arxiv:license>http://creativecommons.org/licenses/by/4.0/</arxiv:license>")
    row = normalize_page("arxiv", body).to_pylist()[0]
    assert row["authors"][0] == {"name": "Ankit Pensia", "orcid": None, "affiliations": ["UC Berkeley", "IBM Research"]}
    assert row["license"] == "http://creativecommons.org/licenses/by/4.0/"


def test_several_dois_in_one_element_keep_the_first():
    body = _entry_changed("<arxiv:doi>10.1145/3679006.3685071</arxiv:doi>", "<arxiv:doi>10.1145/3679006.3685071 10.1000/other</arxiv:doi>")
    assert normalize_page("arxiv", body).to_pylist()[8]["doi"] == "10.1145/3679006.3685071"


@pytest.mark.parametrize(
    "old, new, field, column, stored, action",
    [
        # A single-valued element given twice is the wrong type: NULL and reported.
        ("<published>2024-03-25T17:42:32Z</published>", "<published>2024-03-25T17:42:32Z</published><published>2024-03-26T00:00:00Z</published>",
         "published", "publication_date", None, "set to NULL"),
        # An element that should hold text but holds elements.
        ("<title>The Sample Complexity of Simple Binary Hypothesis Testing</title>", "<title><b>Marked</b> up</title>",
         "title", "title", None, "set to NULL"),
        ("<published>2024-03-25T17:42:32Z</published>", "<published>2024-02-30T17:42:32Z</published>",
         "published", "publication_date", dt.date(2024, 1, 1), "impossible date kept as its year"),
        ("<published>2024-03-25T17:42:32Z</published>", "<published>last Tuesday</published>",
         "published", "publication_date", None, "set to NULL"),
        ("<name>Ankit Pensia</name>", "<name><given>Ankit</given></name>", "author[0].name", "authors", None, "set to NULL"),
    ],
)
def test_values_of_the_wrong_shape_become_null_and_are_reported(old, new, field, column, stored, action):
    page = normalize_page_checked("arxiv", _entry_changed(old, new))
    row = page.table.to_pylist()[0]
    assert (row[column][0]["name"] if column == "authors" else row[column]) == stored
    assert [(p.record_id, p.field, p.action) for p in page.problems] == [("2403.16981v2", field, action)]
    assert page.table.num_rows == 10


@pytest.mark.parametrize("new_id", ["<id>http://arxiv.org/api/errors#x</id>", "<id></id>", "<id><b>2403.16981v2</b></id>"])
def test_an_entry_without_an_abs_page_id_fails_its_page_by_name(new_id):
    with pytest.raises(RecordError) as error:
        normalize_page("arxiv", _entry_changed("<id>http://arxiv.org/abs/2403.16981v2</id>", new_id))
    assert "arxiv record #0 (feed.entry[0])" in str(error.value) and "`id`" in str(error.value)


ERROR_FEED = b"""<?xml version='1.0' encoding='UTF-8'?>
<feed xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/" xmlns:arxiv="http://arxiv.org/schemas/atom" xmlns="http://www.w3.org/2005/Atom">
  <id>https://arxiv.org/api/7tK4VZ5gQ3kqjv0Ey8R7xSb2VHo</id>
  <title>arXiv Query: search_query=&amp;id_list=1234.12345&amp;start=0&amp;max_results=10</title>
  <updated>2026-04-12T22:09:27Z</updated>
  <opensearch:itemsPerPage>10</opensearch:itemsPerPage>
  <opensearch:totalResults>1</opensearch:totalResults>
  <opensearch:startIndex>0</opensearch:startIndex>
  <entry>
    <id>http://arxiv.org/api/errors#incorrect_id_format_for_1234.12345</id>
    <title>Error</title>
    <summary>incorrect id format for 1234.12345</summary>
    <updated>2026-04-12T00:00:00-04:00</updated>
    <link href="http://arxiv.org/api/errors#incorrect_id_format_for_1234.12345" rel="alternate" type="text/html"/>
    <author>
      <name>arXiv api core</name>
    </author>
  </entry>
</feed>
"""


def test_the_error_feed_is_an_error_with_its_message():
    with pytest.raises(MalformedPage, match="arxiv refused the request: incorrect id format for 1234.12345"):
        normalize_page("arxiv", ERROR_FEED)


@pytest.mark.parametrize(
    "body, problem",
    [
        (b"<html><body>Service temporarily unavailable</body></html>", "not an Atom feed"),
        (b"Rate exceeded.", "not XML"),
        (real_response(PAGE_0)[:5000], "not XML"),  # truncated
        (real_response(PAGE_0).replace(b"<opensearch:totalResults>214881</opensearch:totalResults>", b""), "totalResults"),
        (b'<!DOCTYPE feed [<!ENTITY e SYSTEM "file:///etc/passwd">]><feed xmlns="http://www.w3.org/2005/Atom">&e;</feed>', "totalResults"),
    ],
)
def test_a_body_that_is_not_an_arxiv_feed_is_malformed(body, problem):
    with pytest.raises(MalformedPage, match=problem):
        normalize_page("arxiv", body)
