"""A saved search's text means what the user wrote at every provider, or the definitions refuse to load."""

import datetime as dt
import re
from collections.abc import Callable
from types import SimpleNamespace
from typing import NamedTuple
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import yaml

from scholar_pipeline.client.provider_client import ProviderClient
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


class Refused(NamedTuple):
    reason: str


BASE_URL = "http://127.0.0.1:9000/prefix"  # a root with a path prefix, as the simulator's
# Where each provider's search value travels, as its module documents the request for DAY.
SEARCH_PARAMETER: dict[str, tuple[str, Callable[[str], str]]] = {
    "openalex": ("filter", lambda terms: f"title_and_abstract.search:{terms},from_publication_date:2024-03-01,to_publication_date:2024-03-01"),
    "crossref": ("query", lambda terms: terms),
    "arxiv": ("search_query", lambda terms: f"{terms} AND submittedDate:[202403010000 TO 202403012359]"),
    "pubmed": ("term", lambda terms: terms),
    "plos": ("q", lambda terms: terms),
    "springer": ("q", lambda terms: f"{terms} onlinedatefrom:2024-03-01 onlinedateto:2024-03-01"),
    "core": ("q", lambda terms: f"{terms} AND publishedDate>=2024-03-01 AND publishedDate<2024-03-02"),
}


def _free_text(value: str) -> dict[str, str]:
    """OpenAlex and Crossref take the words as written (OpenAlex only rewrites `,`, `|` and a leading `!`)."""
    return {"openalex": value, "crossref": value}


def _boolean(value: str) -> dict[str, str]:
    """Springer and CORE read the same boolean language: adjacent terms ANDed, punctuated words as phrases of their pieces."""
    return {"springer": value, "core": value}


# Each text as every provider's search value, from the provider modules' docstrings.
SEARCH_VALUES: dict[str, dict[str, str | Refused]] = {
    '"machine learning" evaluation': {
        **_free_text('"machine learning" evaluation'), "arxiv": '(all:"machine learning" AND all:evaluation)',
        "pubmed": '"machine learning" AND evaluation', "plos": '"machine learning" evaluation',
        **_boolean('("machine learning" AND evaluation)'),
    },
    "Alzheimer's disease": {
        **_free_text("Alzheimer's disease"), "arxiv": '(all:"Alzheimer s" AND all:disease)', "pubmed": "Alzheimer's AND disease",
        "plos": "Alzheimer's disease", **_boolean('("Alzheimer s" AND disease)'),
    },
    "soil AND (fungi OR bacteria) NOT plant": {
        **_free_text("soil AND (fungi OR bacteria) NOT plant"), "arxiv": "(all:soil AND (all:fungi OR all:bacteria) ANDNOT all:plant)",
        "pubmed": "soil AND (fungi OR bacteria) NOT plant", "plos": "soil AND (fungi OR bacteria) NOT plant",
        **_boolean("(soil AND (fungi OR bacteria) NOT plant)"),
    },
    "title:foo": {**_free_text("title:foo"), "arxiv": 'all:"title foo"', "pubmed": '"title foo"', "plos": r"title\:foo", **_boolean('"title foo"')},
    "a+b": {**_free_text("a+b"), "arxiv": 'all:"a b"', "pubmed": '"a b"', "plos": r"a\+b", **_boolean('"a b"')},
    "c++": {**_free_text("c++"), "arxiv": "all:c", "pubmed": "c", "plos": r"c\+\+", **_boolean("c")},
    "x~2": {**_free_text("x~2"), "arxiv": 'all:"x 2"', "pubmed": '"x 2"', "plos": r"x\~2", **_boolean('"x 2"')},
    "*": {provider: Refused("holds no word to search for") for provider in PROVIDERS},
    "Müller café 量子": {
        **_free_text("Müller café 量子"), "arxiv": "(all:Müller AND all:café AND all:量子)", "pubmed": "Müller AND café AND 量子",
        "plos": "Müller café 量子", **_boolean("(Müller AND café AND 量子)"),
    },
    "CRISPR 🧬 editing": {
        **_free_text("CRISPR 🧬 editing"), "arxiv": "(all:CRISPR AND all:editing)", "pubmed": "CRISPR AND editing",
        "plos": "CRISPR editing", **_boolean("(CRISPR AND editing)"),
    },
    "'; DROP TABLE works; --": {
        **_free_text("'; DROP TABLE works; --"), "arxiv": "(all:DROP AND all:TABLE AND all:works)", "pubmed": "DROP AND TABLE AND works",
        "plos": r"DROP TABLE works\;", **_boolean("(DROP AND TABLE AND works)"),
    },
    "100% recall %20": {
        **_free_text("100% recall %20"), "arxiv": "(all:100 AND all:recall AND all:20)", "pubmed": "100 AND recall AND 20",
        "plos": "100% recall %20", **_boolean("(100 AND recall AND 20)"),
    },
    "R&D": {**_free_text("R&D"), "arxiv": 'all:"R D"', "pubmed": '"R D"', "plos": r"R\&D", **_boolean('"R D"')},
    "cost=benefit": {**_free_text("cost=benefit"), "arxiv": 'all:"cost benefit"', "pubmed": '"cost benefit"', "plos": "cost=benefit",
                     **_boolean('"cost benefit"')},
    "C# programming": {
        **_free_text("C# programming"), "arxiv": "(all:C AND all:programming)",
        "pubmed": Refused("PubMed reads `#` as a reference to an earlier search"), "plos": "C# programming",
        **_boolean("(C AND programming)"),
    },
    # Would end the parameter (&), start another (=) or cut the URL (#) if sent unencoded.
    "soil?q=1&x=2#frag": {
        **_free_text("soil?q=1&x=2#frag"), "arxiv": 'all:"soil q 1 x 2 frag"',
        "pubmed": Refused("PubMed reads `#` as a reference to an earlier search"), "plos": r"soil\?q=1\&x=2#frag",
        **_boolean('"soil q 1 x 2 frag"'),
    },
}
ENCODING_CASES = [(provider, text, values[provider]) for text, values in SEARCH_VALUES.items() for provider in PROVIDERS]


def _saved_search_file(tmp_path, text: str, provider: str):
    path = tmp_path / "queries.yaml"
    entry = {"name": "odd_text", "text": text, "providers": [provider], "start_date": "2024-01-01"}
    path.write_text(yaml.safe_dump({"queries": [entry]}, allow_unicode=True), encoding="utf-8")
    return path


def test_every_provider_has_its_search_values_listed():
    assert all(set(values) == set(PROVIDERS) for values in SEARCH_VALUES.values())
    assert set(SEARCH_PARAMETER) == set(PROVIDERS)


@pytest.mark.parametrize("provider, text, expected", ENCODING_CASES, ids=[f"{p}-{t}" for p, t, _ in ENCODING_CASES])
def test_search_text_reaches_the_provider_with_every_character_meaning_what_it_says(tmp_path, provider, text, expected):
    """The URL the client sends, parsed back as a server would, holds the documented search value: no character lost,
    doubled or read as URL syntax (`&`, `=`, `#`, `+`, `%` stay inside their parameter)."""
    if isinstance(expected, Refused):
        with pytest.raises(SearchTextError, match=re.escape(expected.reason)):
            PROVIDERS[provider].first_request(text, DAY, 100, None)
        with pytest.raises(SavedSearchError) as error:
            load_saved_searches(_saved_search_file(tmp_path, text, provider))
        assert f"saved search 'odd_text' is invalid: text: for {provider}: " in str(error.value)
        assert expected.reason in str(error.value)
        return
    (search,) = load_saved_searches(_saved_search_file(tmp_path, text, provider))
    assert search.text == text
    request = PROVIDERS[provider].first_request(search.text, DAY, 100, "me@example.org")
    # The client's own URL building (it reads nothing of the client but the base URL).
    url = ProviderClient.url_for(SimpleNamespace(base_url=BASE_URL), request)

    parameter, in_request = SEARCH_PARAMETER[provider]
    sent = httpx.URL(url)
    assert sent.params.get_list(parameter) == [in_request(expected)]
    assert sent.params.multi_items() == list(request.params)  # no parameter split off, lost or added
    # As the simulator reads it, like any form decoder: an unencoded `+` would be a space.
    assert parse_qs(urlsplit(url).query, keep_blank_values=True) == {
        name: [v for k, v in request.params if k == name] for name, _ in request.params
    }
    assert sent.fragment == "" and url.startswith(f"{BASE_URL}{request.path}?")
