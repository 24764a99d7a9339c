import datetime as dt

import pytest

from scholar_pipeline.text import (
    PartialDate, bare_doi, bare_orcid, decode_entities, iso_date, markup_to_text, name_in_reading_order, partial_date, plain_text,
    read_iso_date, read_partial_date, xml_safe,
)


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


@pytest.mark.parametrize(
    "parts, read",
    [
        ((2017, 3, 13), PartialDate(dt.date(2017, 3, 13), "day", False)),
        ((2009, 9), PartialDate(dt.date(2009, 9, 1), "month", False)),
        ((2020, None, None), PartialDate(dt.date(2020, 1, 1), "year", False)),  # absent parts are not lost
        ((None,), PartialDate(None, None, False)),
        # Impossible parts: the stored value is what partial_date gives, and `lost` says a part went.
        ((2024, 2, 30), PartialDate(dt.date(2024, 1, 1), "year", True)),
        ((2024, 13), PartialDate(dt.date(2024, 1, 1), "year", True)),
        ((2024, 0, 5), PartialDate(dt.date(2024, 1, 1), "year", True)),
        ((2024, None, 5), PartialDate(dt.date(2024, 1, 1), "year", True)),  # a day without a month
        ((0,), PartialDate(None, None, True)),
        ((10000, 1, 1), PartialDate(None, None, True)),
        ((-5,), PartialDate(None, None, True)),
    ],
)
def test_read_partial_date_tells_when_a_given_part_is_not_kept(parts, read):
    assert read_partial_date(*parts) == read
    assert partial_date(*parts) == read[:2]


@pytest.mark.parametrize(
    "value, read",
    [
        ("2024-03-01", PartialDate(dt.date(2024, 3, 1), "day", False)),
        ("2024-03-01T12:00:00Z", PartialDate(dt.date(2024, 3, 1), "day", False)),  # a time is no lost part
        ("2024", PartialDate(dt.date(2024, 1, 1), "year", False)),
        (None, PartialDate(None, None, False)),
        ("", PartialDate(None, None, False)),
        ("2024-02-30", PartialDate(dt.date(2024, 1, 1), "year", True)),
        ("2024-13-01", PartialDate(dt.date(2024, 1, 1), "year", True)),
        ("0000-01-01", PartialDate(None, None, True)),
        ("n/a", PartialDate(None, None, True)),
        ("2024-3-1", PartialDate(dt.date(2024, 1, 1), "year", True)),  # not two digits: only the year is read
        ("2024-03-1", PartialDate(dt.date(2024, 3, 1), "month", True)),
    ],
)
def test_read_iso_date_tells_when_part_of_the_value_is_not_kept(value, read):
    assert read_iso_date(value) == read
    assert iso_date(value) == read[:2]


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
        # Only known markup is markup: any other `<word>` is text, whatever its shape.
        ("Optional<T> types", "Optional<T> types"),
        ("a<b and c>d", "a<b and c>d"),  # `b` is known, but `and c` are no attributes
        ("The <canvas> element", "The <canvas> element"),
        ("<i>List</i><String> and Map<K, V>", "List<String> and Map<K, V>"),
        ("The </canvas> tag", "The </canvas> tag"),
        # Known tags in any case, with attributes, closing forms and `jats:`/`mml:` prefixes.
        ("<I>Quercus</I> CO<SUB>2</SUB>", "Quercus CO2"),
        ("<span style=\"font-variant:small-caps;\">Sc</span><a href=x>link</a>s<br />", "Sclinks"),
        ("<jats:p>one</jats:p ><jats:boxed-text>two</jats:boxed-text>three", "one two three"),  # any jats: element is markup
        ("<mml:math xmlns:mml=\"http://www.w3.org/1998/Math/MathML\"><mml:mi>x</mml:mi><mml:mn>2</mml:mn></mml:math>", "x2"),
        ("<p>x<!-- a comment --></p>y", "x y"),
        # An `&` that starts no terminated reference stays, as in plain text: the HTML parser would read `&sect` as §.
        ("<p>see x.org/a?id=1&section=2&para=3&deg=5</p>", "see x.org/a?id=1&section=2&para=3&deg=5"),
        ("<i>a&notation</i> &copy 2020 &amp; &#955; &copy;", "a&notation &copy 2020 & λ ©"),
        # A formula once: a TeX rendering beside its MathML in JATS <alternatives> (Springer's deposits), and MathML
        # annotations, are other encodings of it; TeX alone is kept.
        ("<jats:p>The ratio <jats:inline-formula><jats:alternatives><jats:tex-math id=\"IEq1\">"
         "$$\\documentclass[12pt]{minimal}\\begin{document}$$\\alpha &lt; 1$$\\end{document}$$</jats:tex-math>"
         "<mml:math><mml:mi>α</mml:mi><mml:mo>&lt;</mml:mo><mml:mn>1</mml:mn></mml:math></jats:alternatives>"
         "</jats:inline-formula> holds.</jats:p>", "The ratio α<1 holds."),
        ("<mml:math><mml:semantics><mml:mi>x</mml:mi><mml:annotation encoding=\"TeX\">x</mml:annotation>"
         "</mml:semantics></mml:math>y", "xy"),
        ("<jats:alternatives><jats:tex-math>$x^2$</jats:tex-math><jats:inline-graphic/></jats:alternatives> only", "$x^2$ only"),
        # JATS's own `annotation` is a note, which is text.
        ("<jats:mixed-citation>Smith 2020<jats:annotation><jats:p>important</jats:p></jats:annotation></jats:mixed-citation>",
         "Smith 2020 important"),
    ],
)
def test_markup_becomes_plain_text(markup, text):
    assert markup_to_text(markup) == text


@pytest.mark.parametrize(
    "markup, text",
    [
        # Each of these made lxml raise "All strings must be XML compatible".
        ("Soil\x02fungi in <i>Quercus</i>", "Soil fungi in Quercus"),
        ("Soil\x0bfungi<sup>2</sup>", "Soil fungi2"),
        ("a\x00b<i>c</i>", "a bc"),
        ("a\x1fb<p>c</p>", "a b c"),
        ("a\ufffeb<i>c</i>\uffff", "a bc"),
        ("a<sup>2</sup>\ud800", "a2\ufffd"),
        ("<i>a</i>&#2;b&#x1F;c&#xFFFE;d", "a b c d"),  # references parse to the same characters
        ("Soil\x02fungi", "Soil fungi"),  # no markup at all
        ("tab\tline\nreturn\r<i>kept</i>", "tab line return kept"),
    ],
)
def test_markup_with_characters_xml_cannot_hold_converts(markup, text):
    assert markup_to_text(markup) == text


def test_xml_safe_replaces_control_characters_with_spaces_and_lone_surrogates_with_ufffd():
    assert xml_safe("a\x01b\x0cc\td\ne\rf\x7fg\ufffeh\ud800i") == "a b c\td\ne\rf\x7fg h\ufffdi"
    text = "plain text"
    assert xml_safe(text) is text


def test_only_terminated_entities_are_decoded():
    assert decode_entities("R&amp;D, AT&T, a&notation, &#13;x") == "R&D, AT&T, a&notation, \rx"


def test_orcid_is_bare():
    assert bare_orcid("https://orcid.org/0000-0002-1825-009x") == "0000-0002-1825-009X"
    assert bare_orcid(None) is None


@pytest.mark.parametrize(
    "written, read",
    [
        ("Conway, Rana E.", "Rana E. Conway"),
        ("Müller, J.-P.", "J.-P. Müller"),
        ("van der Berg, Anna", "Anna van der Berg"),
        ("O'Neil, Kwame", "Kwame O'Neil"),
        ("  García,   José ", "José García"),
        # Not surely a person's name with the family name first: kept as written.
        ("University of California, Berkeley", "University of California, Berkeley"),
        ("John Smith, PhD", "John Smith, PhD"),
        ("Smith, Jr.", "Smith, Jr."),
        ("Smith, J., Jr.", "Smith, J., Jr."),
        ("The ATLAS Collaboration", "The ATLAS Collaboration"),
        ("Ministry of Health, Kenya", "Ministry of Health, Kenya"),
        ("World Health Organization, Geneva", "World Health Organization, Geneva"),
        ("European Commission, Brussels", "European Commission, Brussels"),
        ("Service, Robert F.", "Robert F. Service"),  # family names that are also words of organisations
        ("Bank, Steven", "Steven Bank"),
        ("Doe, 3M", "Doe, 3M"),
        ("", None),
    ],
)
def test_names_are_turned_to_reading_order_only_when_surely_a_persons(written, read):
    assert name_in_reading_order(written) == read
