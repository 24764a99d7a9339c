import datetime as dt

import pytest

from scholar_pipeline.text import bare_doi, bare_orcid, iso_date, partial_date, plain_text


@pytest.mark.parametrize(
    "raw, doi",
    [("https://doi.org/10.1145/ABC.1", "10.1145/abc.1"), ("http://dx.doi.org/10.1/x", "10.1/x"), ("doi:10.5/Y", "10.5/y"),
     ("10.1/z", "10.1/z"), ("", None), (None, None), ("not a doi", None)],
)
def test_dois_are_bare_and_lower_case(raw, doi):
    assert bare_doi(raw) == doi


def test_partial_dates_never_invent_days_silently():
    assert partial_date(2020) == (dt.date(2020, 1, 1), "year")
    assert partial_date(2009, 9) == (dt.date(2009, 9, 1), "month")
    assert partial_date(2017, 3, 13) == (dt.date(2017, 3, 13), "day")
    assert partial_date(2021, 2, 30) == (dt.date(2021, 1, 1), "year")  # impossible day: keep what is certain
    assert partial_date(None) == (None, None)
    assert iso_date("2024-03") == (dt.date(2024, 3, 1), "month")


def test_markup_becomes_plain_text():
    assert plain_text("<jats:title>Abstract</jats:title><jats:p>A &amp; B</jats:p><jats:p>C</jats:p>") == "A & B C"
    assert plain_text("<i>Drosophila</i> genes") == "Drosophila genes"
    assert plain_text("   ") is None


def test_orcid_is_bare():
    assert bare_orcid("https://orcid.org/0000-0002-1825-009x") == "0000-0002-1825-009X"
    assert bare_orcid(None) is None
