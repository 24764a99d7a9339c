"""A saved search's text means what the user wrote at every provider, or the definitions refuse to load."""

import datetime as dt

import pytest

from scholar_pipeline.providers import PROVIDERS
from scholar_pipeline.providers.base import SearchTextError
from scholar_pipeline.queries import SavedSearchError, load_saved_searches

DAY = dt.date(2024, 3, 1)


def _openalex_filters(text: str) -> list[tuple[str, str]]:
    """The filters OpenAlex reads from the request: `,` separates them, the first `:` splits name and value."""
    request = PROVIDERS["openalex"].first_request(text, DAY, 100, None)
    return [tuple(part.split(":", 1)) for part in request.param("filter").split(",")]


@pytest.mark.parametrize(
    "text, words",
    [
        ("machine learning, fairness", "machine learning fairness"),  # a comma is punctuation to the search, not a new filter
        ('"Hello, John" AND (soil OR fungi)', '"Hello John" AND (soil OR fungi)'),  # the search's own syntax passes through
        ("!important, urgent", "important urgent"),  # a leading `!` would negate the whole filter
    ],
)
def test_openalex_request_carries_the_users_words_in_one_filter(text, words):
    assert _openalex_filters(text) == [
        ("title_and_abstract.search", words), ("from_publication_date", "2024-03-01"), ("to_publication_date", "2024-03-01"),
    ]


def test_crossref_query_is_free_text():
    request = PROVIDERS["crossref"].first_request("machine learning, fairness | bias", DAY, 100, None)
    assert request.param("query") == "machine learning, fairness | bias"


@pytest.mark.parametrize(
    "provider, text, reason",
    [
        ("openalex", "fairness | bias", "write OR"),  # `|` would OR two filter values
        ("openalex", ",|,", "no word"),  # an empty search filter
        ("openalex", "!", "no word"),
        ("crossref", " ?!, ", "no word"),
        ("springer", "soil AND", "a term is missing after AND"),  # the same boolean reader as arXiv and PubMed
        ("core", '"soil microbiome', "a double quote is not closed"),
        ("core", "(soil OR", "a term is missing after OR"),
    ],
)
def test_text_the_provider_cannot_search_for_as_written_is_refused(provider, text, reason):
    with pytest.raises(SearchTextError, match=reason):
        PROVIDERS[provider].search_terms(text)


@pytest.mark.parametrize("provider", ["springer", "core"])
def test_field_and_range_syntax_is_searched_as_words(provider):
    """`title:` (a Premium constraint at Springer, a field at CORE) and `>=` never reach the provider's parser."""
    assert PROVIDERS[provider].search_terms("title:soil year>=2020") == '("title soil" AND "year 2020")'


def test_syntax_only_text_is_refused_when_definitions_load(tmp_path):
    path = tmp_path / "queries.yaml"
    path.write_text("queries:\n  - {name: empty_search, text: ',|,', providers: [openalex, crossref], start_date: 2024-01-01}\n")
    with pytest.raises(SavedSearchError) as error:
        load_saved_searches(path)
    message = str(error.value)
    assert "\n" not in message
    for fragment in (str(path), "'empty_search'", "text:", "for openalex", "for crossref", "no word"):
        assert fragment in message
