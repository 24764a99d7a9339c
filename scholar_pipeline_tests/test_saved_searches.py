"""Saved-search files are validated at load, with errors that name the entry and the field."""

import datetime as dt
import json
import os
import re
import subprocess
import sys

import pytest

from scholar_pipeline.queries import SavedSearchError, load_saved_searches


def _write(tmp_path, text):
    path = tmp_path / "queries.yaml"
    path.write_text(text)
    return path


def test_valid_file_loads(tmp_path):
    path = _write(tmp_path, "queries:\n  - {name: a_1, text: soil, providers: [openalex], start_date: 2024-02-01}\n")
    (search,) = load_saved_searches(path)
    assert (search.name, search.providers, search.start_date) == ("a_1", ["openalex"], dt.date(2024, 2, 1))


@pytest.mark.parametrize(
    "entry, expected",
    [
        ("{name: Bad-Name, text: x, providers: [openalex], start_date: 2024-01-01}", ["'Bad-Name'", "name"]),
        ("{name: ok, text: x, providers: [scopus], start_date: 2024-01-01}", ["'ok'", "providers", "scopus"]),
        ("{name: ok, text: x, providers: [openalex], start_date: soon}", ["'ok'", "start_date"]),
        ("{name: ok, providers: [openalex], start_date: 2024-01-01}", ["'ok'", "text"]),
        ("{name: ok, text: x, providers: [openalex], start_date: 2024-01-01, typo: 1}", ["'ok'", "typo"]),
        # PyYAML's own date constructor would fail with a bare "month must be in 1..12".
        ("{name: ok, text: x, providers: [openalex], start_date: 2024-13-01}", ["'ok'", "start_date", "month must be in 1..12", "YYYY-MM-DD"]),
        ("{name: ok, text: x, providers: [openalex], start_date: 2999-01-01}", ["'ok'", "start_date", "future"]),
        # pydantic alone reads a number as seconds since 1970.
        ("{name: ok, text: x, providers: [openalex], start_date: 0}", ["'ok'", "start_date: 0 is not a date"]),
        ("{name: ok, text: x, providers: [openalex], start_date: 20240101}", ["'ok'", "start_date", "YYYY-MM-DD"]),
        ("{name: ok, text: x, providers: [openalex], start_date: 2024-01-01 10:00:00}", ["'ok'", "start_date", "YYYY-MM-DD"]),
        (f"{{name: {'n' * 300}, text: x, providers: [openalex], start_date: 2024-01-01}}", ["'nnnn", "name", "at most 64 characters"]),
        (f"{{name: ok, text: {'word ' * 200_000}, providers: [openalex], start_date: 2024-01-01}}", ["'ok'", "text", "at most 1000 characters"]),
        ("{name: ok, text: x, providers: [openalex], start_date: 2024-01-01, typo: 1}", ["typo: not a field of a saved search"]),
        ("just text", ["saved search #1 is 'just text', not a mapping of fields", "under the dash"]),
        ("", ["saved search #1 is empty", "name, text, providers, start_date"]),
        ("{name: ok, text: x, providers: openalex, start_date: 2024-01-01}",
         ["'ok'", "providers: 'openalex' is not a list; write providers: [openalex]"]),
        ("{name: ok, text: x, providers: [], start_date: 2024-01-01}", ["'ok'", "providers: no provider named", "openalex"]),
        ("{name: ok, text: x, providers: [openalex, openalex], start_date: 2024-01-01}", ["'ok'", "providers: ", "more than once"]),
        ("{name: ok, text: '', providers: [openalex], start_date: 2024-01-01}", ["'ok'", "text: empty; write the words to search for"]),
        ("{name: ok, text: '   ', providers: [openalex], start_date: 2024-01-01}", ["'ok'", "text: empty; write the words to search for"]),
        ("{name: ok, text: , providers: [openalex], start_date: 2024-01-01}", ["'ok'", "text: empty; write the words to search for"]),
        # YAML reads these as a number and a boolean: the user meant text.
        ("{name: ok, text: 1984, providers: [openalex], start_date: 2024-01-01}",
         ["'ok'", "text: YAML reads it as int 1984, not text; put the text in quotes"]),
        ("{name: ok, text: yes, providers: [openalex], start_date: 2024-01-01}", ["'ok'", "text: YAML reads it as bool True, not text"]),
        ("{name: ok, providers: [openalex], text: soil}", ["'ok'", "start_date: missing (a saved search has name, text, providers, start_date"]),
        ("{name: ok, text: x, providers: [openalex], start_date: }", ["'ok'", "start_date: empty; write the first day to fetch as YYYY-MM-DD"]),
    ],
    ids=lambda value: value[:60] if isinstance(value, str) else None,
)
def test_invalid_entry_is_named_with_its_field(tmp_path, entry, expected):
    path = _write(tmp_path, f"queries:\n  - {entry}\n")
    with pytest.raises(SavedSearchError) as error:
        load_saved_searches(path)
    message = str(error.value)
    assert message.startswith(f"{path}: line 2: saved search ") and "\n" not in message and len(message) < 400
    assert "Value error" not in message and "should be a valid" not in message  # pydantic's words, not the user's
    for fragment in expected:
        assert fragment in message


def test_dates_are_iso_dates_however_they_are_quoted(tmp_path):
    path = _write(tmp_path, "queries:\n  - {name: a, text: x, providers: [crossref], start_date: '2024-02-29'}\n")
    assert load_saved_searches(path)[0].start_date == dt.date(2024, 2, 29)


def test_key_given_twice_in_an_entry_is_refused_with_its_line(tmp_path):
    path = _write(tmp_path, "queries:\n  - name: twice\n    text: soil\n    providers: [openalex]\n    text: fungi\n    start_date: 2024-01-01\n")
    with pytest.raises(SavedSearchError) as error:
        load_saved_searches(path)
    assert str(error.value) == (
        f"{path}: line 5: saved search 'twice' is invalid: text: given twice (first on line 3); YAML would keep only the last"
    )


def test_file_that_is_not_utf8_or_not_yaml_is_reported_with_its_line(tmp_path):
    path = tmp_path / "queries.yaml"
    path.write_bytes("queries:\n  - {name: cafe, text: caf\xe9, providers: [openalex], start_date: 2024-01-01}\n".encode("latin-1"))
    with pytest.raises(SavedSearchError, match=r"queries.yaml: line 2: byte 0xe9 is not UTF-8"):
        load_saved_searches(path)
    path.write_text("queries:\n  - name: ok\n    text: [soil\n    providers: [openalex]\n")
    with pytest.raises(SavedSearchError, match=r"queries.yaml: line 4, column \d+: not valid YAML: expected ',' or ']'"):
        load_saved_searches(path)


def test_tab_indentation_is_reported_with_its_line(tmp_path):
    path = _write(tmp_path, "queries:\n  - name: ok\n\ttext: soil\n")
    with pytest.raises(SavedSearchError) as error:
        load_saved_searches(path)
    assert str(error.value) == (f"{path}: line 3, column 1: not valid YAML: found character '\\t' that cannot start any token; "
                                "indent with spaces: YAML does not allow tabs there")


@pytest.mark.parametrize(
    "text_line",
    [
        'text: "soil microbiome',  # never closed: PyYAML notices at the end of the file, two lines on
        "text: 'Alzheimer's disease'",  # the apostrophe closes the quote
        'text: "machine learning" evaluation',  # a quoted phrase first: YAML takes the quotes as its own
        "text: %20 recall",  # `%` cannot start a plain value
    ],
)
def test_yaml_error_in_a_search_text_gives_its_line_and_how_to_quote(tmp_path, text_line):
    path = _write(tmp_path, f"queries:\n  - name: ok\n    {text_line}\n    providers: [openalex]\n    start_date: 2024-01-01\n")
    with pytest.raises(SavedSearchError) as error:
        load_saved_searches(path)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{path}: line ") and "not valid YAML" in message
    assert "line 3" in message  # where the text is, also when the error is found later
    assert "in single quotes, doubling each ' inside: text: '\"deep learning\" Alzheimer''s'" in message


def test_the_quoting_the_error_advises_keeps_the_text(tmp_path):
    path = _write(tmp_path, "queries:\n  - name: ok\n    text: '\"deep learning\" Alzheimer''s'\n    providers: [openalex]\n"
                            "    start_date: 2024-01-01\n")
    assert load_saved_searches(path)[0].text == '"deep learning" Alzheimer\'s'


UNSAFE_NAMES = ["a/b", "../x", "..", "a b", "x;rm -rf", "x'--", "$(id)", "a.b", "", "müller", "量子", "Abc", "ABC", "1abc", "_x", "a-b",
                "abc\n", "a\\b", "%2e%2e", "a\u0000b"]


@pytest.mark.parametrize("name", UNSAFE_NAMES, ids=repr)
def test_name_that_is_not_a_safe_identifier_is_refused_in_plain_words(tmp_path, name):
    """The name becomes asset keys, a folder of the landing zone and a DuckDB value: nothing a path, shell or SQL reads."""
    path = _write(tmp_path, f"queries:\n  - {{name: {json.dumps(name)}, text: soil, providers: [openalex], start_date: 2024-01-01}}\n")
    with pytest.raises(SavedSearchError) as error:
        load_saved_searches(path)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{path}: line 2: saved search ")
    assert f"name: {name!r} is not a safe name: use lowercase letters a-z, digits and _, starting with a letter " \
           "(it names the assets, the landing-zone folder and the schedule)" in message


@pytest.mark.parametrize("name, shown", [("1", "1"), ("true", "True"), ("[a, b]", "['a', 'b']"), ("", "''")])
def test_name_that_yaml_reads_as_no_text_is_refused_as_unsafe(tmp_path, name, shown):
    path = _write(tmp_path, f"queries:\n  - {{name: {name}, text: soil, providers: [openalex], start_date: 2024-01-01}}\n")
    with pytest.raises(SavedSearchError, match=f"name: {re.escape(shown)} is not a safe name: use lowercase letters"):
        load_saved_searches(path)


def test_safe_names_load_and_the_dataset_groups_name_is_taken(tmp_path):
    entry = "{{name: {}, text: soil, providers: [openalex], start_date: 2024-01-01}}"
    path = _write(tmp_path, f"queries:\n  - {entry.format('x')}\n  - {entry.format('soil_2024_v2')}\n")
    assert [s.name for s in load_saved_searches(path)] == ["x", "soil_2024_v2"]
    path = _write(tmp_path, f"queries:\n  - {entry.format('dataset')}\n")
    with pytest.raises(SavedSearchError, match="name: 'dataset' is the name of the code location's own `dataset` asset group"):
        load_saved_searches(path)


def test_duplicate_names_are_reported_with_the_lines_of_their_entries(tmp_path):
    entry = "  - name: {}\n    text: x\n    providers: [crossref]\n    start_date: 2024-01-01\n"
    path = _write(tmp_path, "queries:\n" + "".join(entry.format(n) for n in ("twice", "once", "twice", "thrice", "thrice", "thrice")))
    with pytest.raises(SavedSearchError) as error:
        load_saved_searches(path)
    assert str(error.value) == (f"{path}: saved search names must be unique (each names an asset group): "
                                "'twice' at line 2 and line 10; 'thrice' at line 14 and line 18 and line 22")


def test_missing_file_is_reported_with_the_variable_to_set(tmp_path):
    with pytest.raises(SavedSearchError, match="SCHOLAR_PIPELINE_QUERIES"):
        load_saved_searches(tmp_path / "missing.yaml")


WHAT_TO_WRITE = "write `queries:` and under it one `- name: ...` entry per saved search, with name, text, providers, start_date"


@pytest.mark.parametrize(
    "source, problem",
    [
        ("", "holds no saved search (the file is empty or only comments)"),
        ("\n\n", "holds no saved search (the file is empty or only comments)"),
        ("# saved searches\n# none yet\n", "holds no saved search (the file is empty or only comments)"),
        # An empty list would load a code location without a single saved-search asset: a mistake, not a choice.
        ("queries:\n", "`queries:` lists no saved search"),
        ("queries: []\n", "`queries:` lists no saved search"),
        ("queries:\n# - {name: a, text: soil, providers: [openalex], start_date: 2024-01-01}\n", "`queries:` lists no saved search"),
        ("- {name: a, text: soil, providers: [openalex], start_date: 2024-01-01}\n", "is a list without the top-level `queries:` key"),
        ("queries: {name: a, text: soil}\n", "`queries:` holds dict {'name': 'a', 'text': 'soil'}, not a list"),
        ("queries: soil\n", "`queries:` holds str 'soil', not a list"),
        ("querys:\n  - {name: a, text: soil, providers: [openalex], start_date: 2024-01-01}\n",
         "has no top-level `queries:` (found keys querys)"),
        ("just text\n", "has no top-level `queries:` (found 'just text')"),
    ],
    ids=repr,
)
def test_file_without_saved_searches_is_refused_saying_what_to_write(tmp_path, source, problem):
    path = _write(tmp_path, source)
    with pytest.raises(SavedSearchError) as error:
        load_saved_searches(path)
    message = str(error.value)
    assert message.startswith(str(path)) and "\n" not in message
    assert problem in message and WHAT_TO_WRITE in message


def test_entry_errors_name_the_line_of_their_entry(tmp_path):
    path = _write(tmp_path, "queries:\n  - name: first\n    text: soil\n    providers: [openalex]\n    start_date: 2024-01-01\n"
                            "  # a comment\n  - name: second\n    text: soil\n    providers: [scopus]\n    start_date: 2024-01-01\n")
    with pytest.raises(SavedSearchError, match=r"queries.yaml: line 7: saved search 'second' is invalid: providers: unknown provider"):
        load_saved_searches(path)


def _check_file(path):
    env = {**os.environ, "SCHOLAR_PIPELINE_QUERIES": str(path)}
    return subprocess.run([sys.executable, "-m", "scholar_pipeline.queries"], env=env, capture_output=True, text=True, timeout=120)


def test_the_file_check_prints_one_line_either_way(tmp_path):
    bad = _write(tmp_path, "queries:\n  - {name: bad, text: soil, providers: [openalex], start_date: 2024-13-01}\n")
    result = _check_file(bad)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [f"error: {bad}: line 2: saved search 'bad' is invalid: start_date: "
                                                  "'2024-13-01' is not a date (month must be in 1..12); write YYYY-MM-DD"]
    good = _write(tmp_path, "queries:\n  - {name: a, text: soil, providers: [openalex], start_date: 2024-01-01}\n"
                            "  - {name: b, text: fungi, providers: [crossref], start_date: 2024-01-01}\n")
    result = _check_file(good)
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.splitlines() == [f"{good}: 2 saved searches: a, b"]
