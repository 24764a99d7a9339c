import datetime as dt

import pytest

from scholar_pipeline.text import bare_doi, bare_orcid, decode_entities, iso_date, markup_to_text, partial_date, plain_text


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


def test_plain_text_keeps_angle_brackets_and_only_tidies_whitespace():
    assert plain_text("(p < 0.05) in plots\n with > 3 species") == "(p < 0.05) in plots with > 3 species"
    assert plain_text("<i>kept</i> &amp; kept") == "<i>kept</i> &amp; kept"
    assert plain_text("   ") is None and plain_text(None) is None


@pytest.mark.parametrize(
    "markup, text",
    [
        ("<jats:title>Abstract</jats:title><jats:p>A &amp; B</jats:p><jats:p>C</jats:p>", "A & B C"),
        ("<jats:sec><jats:title>Summary</jats:title><jats:p>Soil</jats:p></jats:sec>", "Soil"),  # heading inside a leading sec
        ("<jats:p>Results</jats:p><jats:title>Abstract</jats:title>", "Results Abstract"),  # only a leading heading goes
        # Inline elements vanish without a space; block elements separate words.
        ("<i>b</i><sup>2</sup>", "b2"),
        ("H<sub>2</sub>O and <scp>dna</scp><span>-</span>binding <a href='x'>site</a>s", "H2O and dna-binding sites"),
        ("<mml:math><mml:mi>x</mml:mi><mml:mo>=</mml:mo><mml:msup><mml:mi>y</mml:mi><mml:mn>2</mml:mn></mml:msup></mml:math>", "x=y2"),
        ("one<br>two<br/>three<p>four</p><div>five</div><li>six</li><title>seven</title>", "one two three four five six seven"),
        ("<jats:list><jats:list-item>a</jats:list-item><jats:list-item>b</jats:list-item></jats:list>", "a b"),
        # Entities, named and numeric.
        ("&lt;tag&gt; &amp; &#955; &#x3bb; &eacute;", "<tag> & λ λ é"),
        # A `<` that opens no tag is text, in a JATS abstract and in broken markup alike.
        ("<jats:p>Richness rose (p < 0.05) in plots with > 3 species</jats:p>", "Richness rose (p < 0.05) in plots with > 3 species"),
        ("<jats:p>p<0.05 for x<y and a<b</jats:p>", "p<0.05 for x<y and a<b"),
        ("<p>unclosed <i>italic and <b>bold", "unclosed italic and bold"),
        ("<jats:p>", None),
        ("Learning Analytics &amp; Knowledge", "Learning Analytics & Knowledge"),
    ],
)
def test_markup_becomes_plain_text(markup, text):
    assert markup_to_text(markup) == text


def test_only_terminated_entities_are_decoded():
    assert decode_entities("R&amp;D, AT&T, a&notation, &#13;x") == "R&D, AT&T, a&notation, \rx"


def test_orcid_is_bare():
    assert bare_orcid("https://orcid.org/0000-0002-1825-009x") == "0000-0002-1825-009X"
    assert bare_orcid(None) is None
