"""One bad record: a value of the wrong type is set to NULL and reported; a record that cannot be a row fails its page by name.

Each test takes a real recorded page, damages one record (json.loads, change, json.dumps)
and checks what lands and what is reported.
"""

import datetime as dt
import json

import pytest

from scholar_pipeline.normalize import FieldProblem, RecordError, normalize_page, normalize_page_checked
from scholar_pipeline.providers.base import MalformedPage
from scholar_pipeline.schema import RECORD_FIELDS
from scholar_pipeline_tests.conftest import REAL_RESPONSES, real_response

OPENALEX = "openalex/openalexpro_works_search_biodiversity_finance_per200_cursor_p1.json"
CROSSREF = "crossref/fulltext_works_query_ecology_has_license_rows200.json"


def _damaged(relative: str, index: int, change) -> bytes:
    page = json.loads(real_response(relative))
    records = page["results"] if "results" in page else page["message"]["items"]
    records[index] = change(records[index])
    return json.dumps(page).encode()  # ensure_ascii: a lone surrogate travels as the escape "\ud800"


def _update(**fields):
    return lambda record: {**record, **fields}


def test_recorded_pages_normalize_without_problems():
    for path in sorted(REAL_RESPONSES.glob("*/*.json")):
        normalized = normalize_page_checked(path.parent.name, path.read_bytes())
        assert normalized.problems == (), path.name
        assert normalized.table.equals(normalize_page(path.parent.name, path.read_bytes()))


def test_openalex_values_of_the_wrong_type_become_null_and_are_reported():
    body = _damaged(OPENALEX, 0, _update(cited_by_count="many", authorships="abc", title=456, primary_location=7))
    normalized = normalize_page_checked("openalex", body)
    assert normalized.table.num_rows == 200 and normalized.table.schema == RECORD_FIELDS
    row = normalized.table.to_pylist()[0]
    original = normalize_page("openalex", real_response(OPENALEX)).to_pylist()[0]
    assert row["provider_id"] == original["provider_id"] == "W4235089722"
    assert (row["cited_by_count"], row["authors"], row["venue"]) == (None, None, None)
    assert row["title"] == original["title"]  # `display_name` carries the title too
    assert row["abstract"] == original["abstract"] and row["abstract"]
    assert set(normalized.problems) == {
        FieldProblem("W4235089722", "cited_by_count", "'many'", "set to NULL"),
        FieldProblem("W4235089722", "authorships", "'abc'", "set to NULL"),
        FieldProblem("W4235089722", "title", "456", "set to NULL"),
        FieldProblem("W4235089722", "primary_location", "7", "set to NULL"),
    }


def test_openalex_list_elements_of_the_wrong_type_are_left_out():
    def damage(work):
        work["authorships"].insert(1, "not an author")
        work["authorships"][0]["author"]["orcid"] = ["0000-0002-1853-3038"]
        work["abstract_inverted_index"] = {"word": "0"}
        return work

    normalized = normalize_page_checked("openalex", _damaged("openalex/openalexpro_works_filter_ids_cursor_p1.json", 0, damage))
    row = normalized.table.to_pylist()[0]
    assert [a["name"] for a in row["authors"]] == ["Chifumi Nishioka", "Michael Färber"]
    assert row["authors"][0]["orcid"] is None and row["abstract"] is None
    assert {(p.record_id, p.field, p.action) for p in normalized.problems} == {
        ("W3046863325", "abstract_inverted_index", "set to NULL"),
        ("W3046863325", "authorships[1]", "left out of the list"),
        ("W3046863325", "authorships[0].author.orcid", "set to NULL"),
    }


def test_crossref_values_of_the_wrong_type_become_null_and_are_reported():
    body = _damaged(CROSSREF, 0, _update(**{"is-referenced-by-count": True, "author": [{"given": "Askell", "family": 7}, None],
                                            "published": {"date-parts": "1957-07"}, "license": {"URL": "x"}}))
    normalized = normalize_page_checked("crossref", body)
    row = normalized.table.to_pylist()[0]
    assert row["doi"] == "10.2307/1929908"
    assert row["cited_by_count"] is None and row["license"] is None
    assert row["authors"] == [{"name": "Askell", "orcid": None, "affiliations": []}]
    # `published` is read as null, so `issued` serves, as for an item without `published`.
    assert (row["publication_date"], row["publication_date_precision"]) == (dt.date(1957, 7, 1), "month")
    assert sorted((p.field, p.value, p.action) for p in normalized.problems) == [
        ("author[0].family", "7", "set to NULL"),
        ("author[1]", "None", "left out of the list"),
        ("is-referenced-by-count", "True", "set to NULL"),
        ("license", "{'URL': 'x'}", "set to NULL"),
        ("published.date-parts", "'1957-07'", "set to NULL"),
    ]
    assert {p.record_id for p in normalized.problems} == {"10.2307/1929908"}


@pytest.mark.parametrize(
    "provider, relative, title, field",
    [("openalex", OPENALEX, "Soil \ud800 fungi", "title"), ("crossref", CROSSREF, ["Soil \ud800 fungi"], "title[0]")],
)
def test_lone_surrogate_is_replaced_and_reported(provider, relative, title, field):
    body = _damaged(relative, 3, _update(title=title))
    assert b"\\ud800" in body
    normalized = normalize_page_checked(provider, body)
    row = normalized.table.to_pylist()[3]
    assert row["title"] == "Soil \ufffd fungi" and len(row["record_hash"]) == 64
    assert normalized.problems == (
        FieldProblem(row["provider_id"], field, repr("Soil \ud800 fungi"), "replaced lone surrogate with U+FFFD"),
    )


@pytest.mark.parametrize(
    "provider, relative, change, expected",
    [
        ("openalex", OPENALEX, lambda record: None, ["openalex", "record #3", "results[3]", "None", "not an object"]),
        ("crossref", CROSSREF, lambda record: "10.1/x", ["crossref", "record #3", "message.items[3]", "'10.1/x'", "not an object"]),
        ("openalex", OPENALEX, _update(id=123), ["openalex", "record #3", "`id`", "123", "not a usable openalex id"]),
        ("crossref", CROSSREF, _update(DOI="n/a"), ["crossref", "record #3", "`DOI`", "'n/a'", "not a usable crossref id"]),
    ],
)
def test_record_that_cannot_be_a_row_fails_the_page_by_name(provider, relative, change, expected):
    with pytest.raises(RecordError) as error:
        normalize_page_checked(provider, _damaged(relative, 3, change))
    for fragment in expected:
        assert fragment in str(error.value)


def test_a_body_that_is_not_the_wire_format_is_still_malformed():
    with pytest.raises(MalformedPage, match="openalex"):
        normalize_page_checked("openalex", b"<html>502 Bad Gateway</html>")
    with pytest.raises(MalformedPage, match="results"):
        normalize_page_checked("openalex", b'{"meta": {}, "results": "none"}')


CONTROLS_REPLACED = "replaced control characters with spaces"


@pytest.mark.parametrize(
    "provider, relative, fields, column, text, field",
    [
        # Each field goes through the markup parser, where lxml raised "All strings must be XML compatible".
        ("openalex", OPENALEX, {"title": "Soil\u0002fungi <i>in</i> forests"}, "title", "Soil fungi in forests", "title"),
        ("crossref", CROSSREF, {"title": ["Soil\x0bfungi <i>in</i> forests"]}, "title", "Soil fungi in forests", "title[0]"),
        ("crossref", CROSSREF, {"container-title": ["Ecology\x1f<sup>2</sup>"]}, "venue", "Ecology 2", "container-title[0]"),
        ("crossref", CROSSREF, {"abstract": "<jats:p>Soil\x00fungi</jats:p><jats:p>\ufffeSecond</jats:p>"}, "abstract",
         "Soil fungi Second", "abstract"),
        # A plain field is cleaned alike: every string passes RecordReader.clean.
        ("crossref", CROSSREF, {"publisher": "Wiley\x02Blackwell"}, "publisher", "Wiley Blackwell", "publisher"),
    ],
)
def test_control_characters_are_replaced_with_spaces_and_reported(provider, relative, fields, column, text, field):
    body = _damaged(relative, 3, _update(**fields))
    normalized = normalize_page_checked(provider, body)
    assert normalized.table.num_rows == 200
    row = normalized.table.to_pylist()[3]
    assert row[column] == text
    (value,) = [v[0] if isinstance(v, list) else v for v in fields.values()]
    assert normalized.problems == (FieldProblem(row["provider_id"], field, repr(value), CONTROLS_REPLACED),)


def test_control_characters_in_openalex_abstract_words_are_reported():
    words = ["Soil\x0bfungi", "rose\x02", "sharply"]
    body = _damaged(OPENALEX, 3, _update(abstract_inverted_index={word: [i] for i, word in enumerate(words)}))
    normalized = normalize_page_checked("openalex", body)
    assert normalized.table.to_pylist()[3]["abstract"] == "Soil fungi rose sharply"
    assert [(p.field, p.action) for p in normalized.problems] == [("abstract_inverted_index", CONTROLS_REPLACED)]
    # A whitespace-like control character alone is reported too, though rebuilding the text merged it already.
    body = _damaged(OPENALEX, 3, _update(abstract_inverted_index={"Soil\x1ffungi": [0]}))
    assert [p.action for p in normalize_page_checked("openalex", body).problems] == [CONTROLS_REPLACED]


def test_a_string_with_a_lone_surrogate_and_a_control_character_reports_both():
    body = _damaged(OPENALEX, 3, _update(title="Soil\ud800\u0002fungi"))
    normalized = normalize_page_checked("openalex", body)
    assert normalized.table.to_pylist()[3]["title"] == "Soil\ufffd fungi"
    assert {p.action for p in normalized.problems} == {"replaced lone surrogate with U+FFFD", CONTROLS_REPLACED}


@pytest.mark.parametrize(
    "fields, stored, problems",
    [
        ({"publication_date": "2024-02-30"}, (dt.date(2024, 1, 1), "year"),
         [("publication_date", "'2024-02-30'", "impossible date kept as its year")]),
        ({"publication_date": "2024-13-01"}, (dt.date(2024, 1, 1), "year"),
         [("publication_date", "'2024-13-01'", "impossible date kept as its year")]),
        ({"publication_date": "2024-03-1"}, (dt.date(2024, 3, 1), "month"),
         [("publication_date", "'2024-03-1'", "impossible date kept as its month")]),
        # Year 0 is no date: `publication_year` serves, as for a missing date.
        ({"publication_date": "0000-01-01"}, (dt.date(2010, 1, 1), "year"), [("publication_date", "'0000-01-01'", "set to NULL")]),
        ({"publication_date": None, "publication_year": 0}, (None, None), [("publication_year", "0", "set to NULL")]),
        ({"publication_date": None, "publication_year": 12024}, (None, None), [("publication_year", "12024", "set to NULL")]),
    ],
)
def test_openalex_impossible_dates_are_reported(fields, stored, problems):
    normalized = normalize_page_checked("openalex", _damaged(OPENALEX, 3, _update(**fields)))
    row = normalized.table.to_pylist()[3]
    assert (row["publication_date"], row["publication_date_precision"]) == stored
    assert [(p.record_id, p.field, p.value, p.action) for p in normalized.problems] == [("W1698421338", *p) for p in problems]


@pytest.mark.parametrize(
    "fields, stored, problems",
    [
        ({"published": {"date-parts": [[2024, 2, 30]]}}, (dt.date(2024, 1, 1), "year"),
         [("published.date-parts", "[[2024, 2, 30]]", "impossible date kept as its year")]),
        ({"published": {"date-parts": [[2024, 13]]}}, (dt.date(2024, 1, 1), "year"),
         [("published.date-parts", "[[2024, 13]]", "impossible date kept as its year")]),
        ({"published": {"date-parts": [[2024, None, 5]]}}, (dt.date(2024, 1, 1), "year"),
         [("published.date-parts", "[[2024, None, 5]]", "impossible date kept as its year")]),
        # Year 0 is read as null, so `issued` serves; a year past 9999 is NULL, as before.
        ({"published": {"date-parts": [[0, 1, 1]]}}, (dt.date(1927, 4, 1), "month"),
         [("published.date-parts", "[[0, 1, 1]]", "set to NULL")]),
        ({"published": {"date-parts": [[12024, 1, 1]]}}, (None, None), [("published.date-parts", "[[12024, 1, 1]]", "set to NULL")]),
        ({"published": {"date-parts": [[None]]}}, (dt.date(1927, 4, 1), "month"), []),  # Crossref's "no date": not a problem
    ],
)
def test_crossref_impossible_dates_are_reported(fields, stored, problems):
    normalized = normalize_page_checked("crossref", _damaged(CROSSREF, 3, _update(**fields)))
    row = normalized.table.to_pylist()[3]
    assert (row["publication_date"], row["publication_date_precision"]) == stored
    assert [(p.record_id, p.field, p.value, p.action) for p in normalized.problems] == [("10.2307/1928969", *p) for p in problems]
