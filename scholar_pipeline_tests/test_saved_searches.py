"""Saved-search files are validated at load, with errors that name the entry and the field."""

import datetime as dt
import os
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
        ("{name: ok, text: x, providers: [openalex], start_date: 0}", ["'ok'", "start_date: Value error, 0 is not a date"]),
        ("{name: ok, text: x, providers: [openalex], start_date: 20240101}", ["'ok'", "start_date", "YYYY-MM-DD"]),
        ("{name: ok, text: x, providers: [openalex], start_date: 2024-01-01 10:00:00}", ["'ok'", "start_date", "YYYY-MM-DD"]),
        (f"{{name: {'n' * 300}, text: x, providers: [openalex], start_date: 2024-01-01}}", ["'nnnn", "name", "at most 64 characters"]),
        (f"{{name: ok, text: {'word ' * 200_000}, providers: [openalex], start_date: 2024-01-01}}", ["'ok'", "text", "at most 1000 characters"]),
    ],
    ids=lambda value: value[:60] if isinstance(value, str) else None,
)
def test_invalid_entry_is_named_with_its_field(tmp_path, entry, expected):
    path = _write(tmp_path, f"queries:\n  - {entry}\n")
    with pytest.raises(SavedSearchError) as error:
        load_saved_searches(path)
    message = str(error.value)
    assert message.startswith(f"{path}: saved search ") and "\n" not in message and len(message) < 400
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


def test_duplicate_names_and_missing_file_are_reported(tmp_path):
    entry = "{name: twice, text: x, providers: [crossref], start_date: 2024-01-01}"
    with pytest.raises(SavedSearchError, match="twice"):
        load_saved_searches(_write(tmp_path, f"queries:\n  - {entry}\n  - {entry}\n"))
    with pytest.raises(SavedSearchError, match="SCHOLAR_PIPELINE_QUERIES"):
        load_saved_searches(tmp_path / "missing.yaml")


def test_the_file_check_prints_one_line_either_way(tmp_path):
    bad = _write(tmp_path, "queries:\n  - {name: bad, text: soil, providers: [openalex], start_date: 2024-13-01}\n")
    env = {**os.environ, "SCHOLAR_PIPELINE_QUERIES": str(bad)}
    result = subprocess.run([sys.executable, "-m", "scholar_pipeline.queries"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [f"error: {bad}: saved search 'bad' is invalid: start_date: Value error, "
                                                  "'2024-13-01' is not a date (month must be in 1..12); write YYYY-MM-DD"]
