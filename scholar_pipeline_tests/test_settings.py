"""Provider settings from the environment: numbers that would switch a limit off are refused, by name."""

import pytest

from scholar_pipeline.defs.resources import ScholarApiResource
from scholar_pipeline.providers import PROVIDERS
from scholar_pipeline.settings import (
    ProviderSettings, dataset_automation_on, max_null_title_share, monitor_days, provider_settings,
)

DEFAULTS = ProviderSettings(base_url="https://api.example.org/", rate_limit=10.0, page_size=100, max_records=200_000)


def test_defaults_apply_and_overrides_are_read():
    environ = {"SCHOLAR_PIPELINE_OPENALEX_RATE_LIMIT": "2.5", "SCHOLAR_PIPELINE_OPENALEX_PAGE_SIZE": "50"}
    settings = provider_settings("openalex", DEFAULTS, environ)
    assert settings == ProviderSettings(base_url="https://api.example.org", rate_limit=2.5, page_size=50, max_records=200_000)


@pytest.mark.parametrize("raw", ["inf", "-inf", "Infinity", "nan", "NaN", "1e999"])
def test_a_rate_limit_that_is_not_finite_is_refused_by_name(raw):
    with pytest.raises(ValueError) as error:
        provider_settings("openalex", DEFAULTS, {"SCHOLAR_PIPELINE_OPENALEX_RATE_LIMIT": raw})
    assert f"SCHOLAR_PIPELINE_OPENALEX_RATE_LIMIT={raw!r}" in str(error.value)


@pytest.mark.parametrize("raw", ["0", "-1", "-0.5"])
def test_a_rate_limit_that_is_not_positive_is_refused_by_name(raw):
    with pytest.raises(ValueError, match="must be positive") as error:
        provider_settings("crossref", DEFAULTS, {"SCHOLAR_PIPELINE_CROSSREF_RATE_LIMIT": raw})
    assert f"SCHOLAR_PIPELINE_CROSSREF_RATE_LIMIT={raw!r}" in str(error.value)


@pytest.mark.parametrize("setting", ["PAGE_SIZE", "MAX_RECORDS", "MAX_IN_FLIGHT"])
@pytest.mark.parametrize("raw", ["inf", "nan", "1e999", "2.5", "0", "-3", "many"])
def test_integer_settings_refuse_anything_but_a_positive_integer_by_name(setting, raw):
    with pytest.raises(ValueError) as error:
        provider_settings("openalex", DEFAULTS, {f"SCHOLAR_PIPELINE_OPENALEX_{setting}": raw})
    assert f"SCHOLAR_PIPELINE_OPENALEX_{setting}={raw!r}" in str(error.value)


def test_monitor_days_defaults_to_30_and_is_checked_like_the_others():
    assert monitor_days({}) == 30
    assert monitor_days({"SCHOLAR_PIPELINE_MONITOR_DAYS": "7"}) == 7
    for raw in ("inf", "nan", "0", "-2", "1.5"):
        with pytest.raises(ValueError, match=f"SCHOLAR_PIPELINE_MONITOR_DAYS={raw!r}"):
            monitor_days({"SCHOLAR_PIPELINE_MONITOR_DAYS": raw})


def test_crossref_uses_the_polite_pool_rate_when_a_contact_email_is_set(monkeypatch):
    monkeypatch.delenv("SCHOLAR_PIPELINE_CROSSREF_RATE_LIMIT", raising=False)
    crossref = PROVIDERS["crossref"]
    assert ScholarApiResource(home="/tmp/x").settings_for(crossref).rate_limit == 5.0
    assert ScholarApiResource(home="/tmp/x", mailto="me@example.org").settings_for(crossref).rate_limit == 10.0
    monkeypatch.setenv("SCHOLAR_PIPELINE_CROSSREF_RATE_LIMIT", "2")  # an explicit setting still wins
    assert ScholarApiResource(home="/tmp/x", mailto="me@example.org").settings_for(crossref).rate_limit == 2.0


def test_requests_in_flight_are_capped_where_the_provider_caps_connections(monkeypatch):
    monkeypatch.delenv("SCHOLAR_PIPELINE_CROSSREF_MAX_IN_FLIGHT", raising=False)
    api = ScholarApiResource(home="/tmp/x")
    assert {name: api.settings_for(provider).max_in_flight for name, provider in PROVIDERS.items()} == {
        "openalex": None, "crossref": 1, "arxiv": 1, "pubmed": None, "plos": 5, "springer": None, "core": None}
    assert ScholarApiResource(home="/tmp/x", mailto="me@example.org").settings_for(PROVIDERS["crossref"]).max_in_flight == 5
    monkeypatch.setenv("SCHOLAR_PIPELINE_CROSSREF_MAX_IN_FLIGHT", "2")
    assert ScholarApiResource(home="/tmp/x", mailto="me@example.org").settings_for(PROVIDERS["crossref"]).max_in_flight == 2


def test_pubmed_allows_ten_requests_a_second_with_an_api_key(monkeypatch):
    monkeypatch.delenv("SCHOLAR_PIPELINE_PUBMED_RATE_LIMIT", raising=False)
    pubmed = PROVIDERS["pubmed"]
    assert ScholarApiResource(home="/tmp/x").settings_for(pubmed).rate_limit == 3.0
    assert ScholarApiResource(home="/tmp/x", pubmed_api_key="0123456789abcdef0123").settings_for(pubmed).rate_limit == 10.0


def test_dataset_automation_is_on_unless_turned_off_and_refuses_other_words():
    assert dataset_automation_on({}) and dataset_automation_on({"SCHOLAR_PIPELINE_DATASET_AUTOMATION": " ON "})
    assert not dataset_automation_on({"SCHOLAR_PIPELINE_DATASET_AUTOMATION": "off"})
    with pytest.raises(ValueError, match="SCHOLAR_PIPELINE_DATASET_AUTOMATION='no' must be"):
        dataset_automation_on({"SCHOLAR_PIPELINE_DATASET_AUTOMATION": "no"})


def test_max_null_title_share_is_a_share():
    assert max_null_title_share({}) == 0.1 and max_null_title_share({"SCHOLAR_PIPELINE_MAX_NULL_TITLE_SHARE": "0.5"}) == 0.5
    for raw in ("0", "1.5", "x"):
        with pytest.raises(ValueError, match="SCHOLAR_PIPELINE_MAX_NULL_TITLE_SHARE"):
            max_null_title_share({"SCHOLAR_PIPELINE_MAX_NULL_TITLE_SHARE": raw})
