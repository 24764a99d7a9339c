"""Saved-search files are validated at load, with errors that name the entry and the field."""

import datetime as dt

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
    ],
)
def test_invalid_entry_is_named_with_its_field(tmp_path, entry, expected):
    path = _write(tmp_path, f"queries:\n  - {entry}\n")
    with pytest.raises(SavedSearchError) as error:
        load_saved_searches(path)
    for fragment in expected:
        assert fragment in str(error.value)


def test_duplicate_names_and_missing_file_are_reported(tmp_path):
    entry = "{name: twice, text: x, providers: [crossref], start_date: 2024-01-01}"
    with pytest.raises(SavedSearchError, match="twice"):
        load_saved_searches(_write(tmp_path, f"queries:\n  - {entry}\n  - {entry}\n"))
    with pytest.raises(SavedSearchError, match="SCHOLAR_PIPELINE_QUERIES"):
        load_saved_searches(tmp_path / "missing.yaml")
