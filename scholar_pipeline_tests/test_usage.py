"""What fetches spend at each provider: counted per request by the client, recorded per partition in `provider_usage`
(landed or failed) and in the raw materialization's metadata, and reported per provider and day by `scholar-pipeline
usage`; every figure is checked against the simulator's own request log."""

import datetime as dt
import json
import subprocess

import duckdb
import pytest

from scholar_pipeline.client.usage import Usage
from scholar_pipeline.simulator import Corpus, ProviderSimulator
from scholar_pipeline.usage_report import usage_by_day
from scholar_pipeline.warehouse import UsageRow, record_usage
from scholar_pipeline_tests.conftest import REPO_ROOT
from scholar_pipeline_tests.helpers import materialize, nothing_landed, query_db
from scholar_pipeline_tests.test_scenarios import BIN

DAY, OTHER_DAY = "2024-03-01", "2024-03-02"
USAGE = ("outcome", "requests", "cache_hits", "retries", "errors", "throttled", "cost_usd", "quota_remaining",
         "quota_limit", "remaining_usd")


def _usage(provider: str) -> list[dict]:
    rows = query_db(f"SELECT {', '.join(USAGE)} FROM provider_usage WHERE provider = ? ORDER BY recorded_at", [provider])
    return [dict(zip(USAGE, row)) for row in rows]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "scholar-pipeline"), "usage", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120)


def test_each_fetch_records_what_it_spent_and_the_report_sums_it_per_provider_and_day(pipeline_env, monkeypatch):
    monkeypatch.setenv("SCHOLAR_PIPELINE_OPENALEX_PAGE_SIZE", "30")
    # Two 429s, then a 503 on the third page: three retries, one of them after a refusal at the door.
    with ProviderSimulator(corpus=Corpus(seed=11, min_per_day=120, max_per_day=240),
                           faults="openalex:429@1x2,openalex:503@5") as sim:
        monkeypatch.setenv("SCHOLAR_PIPELINE_OPENALEX_BASE_URL", sim.base_url("openalex"))
        first = materialize(DAY, "openalex")
        sent = sim.requests_for("openalex")
        spent_usd, calls = sim.apis["openalex"].spent_usd, sim.apis["openalex"].calls
        again = materialize(DAY, "openalex")  # everything from the HTTP cache
        assert len(sim.requests_for("openalex")) == len(sent)
    assert first.success and again.success
    pages = query_db("SELECT pages FROM provenance WHERE provider = 'openalex' ORDER BY landed_at")[0][0]
    answered = [r for r in sent if r.status == 200]
    assert len(sent) == pages + 3 and len(answered) == pages == calls
    # The quota as the provider's headers stated it on the last answer: one call used per answered request.
    fresh, cached = _usage("openalex")
    assert fresh == {"outcome": "fetched", "requests": len(sent), "cache_hits": 0, "retries": 3, "errors": 3,
                     "throttled": 2, "cost_usd": pytest.approx(spent_usd),
                     "quota_remaining": 100_000 - len(answered), "quota_limit": 100_000,
                     "remaining_usd": pytest.approx(1 - spent_usd, abs=1e-4)}
    assert cached == {"outcome": "fetched", "requests": 0, "cache_hits": pages, "retries": 0, "errors": 0, "throttled": 0,
                      "cost_usd": 0, "quota_remaining": None, "quota_limit": None, "remaining_usd": None}
    raw = next(m for m in first.get_asset_materialization_events() if m.asset_key.path[-1] == "raw")
    metadata = raw.materialization.metadata
    assert (metadata["requests_sent"].value, metadata["retries"].value, metadata["throttled_429"].value,
            metadata["quota_remaining"].value) == (len(sent), 3, 2, 100_000 - len(answered))

    report = json.loads(_cli("--json").stdout)
    assert len(report) == 1 and report[0] | {"day": None} == {
        "day": None, "provider": "openalex", "fetches": 2, "failed": 0, "requests": len(sent), "cache_hits": pages,
        "retries": 3, "errors": 3, "throttled": 2, "cost_usd": pytest.approx(fresh["cost_usd"]),
        "quota_remaining": 100_000 - len(answered), "quota_limit": 100_000, "remaining_usd": pytest.approx(fresh["remaining_usd"])}
    text = _cli().stdout.splitlines()
    assert text[0].split()[:4] == ["day", "provider", "fetches", "failed"]
    assert text[1].split()[1:10] == ["openalex", "2", "0", str(len(sent)), str(pages), "3", "3", "2",
                                     f"{fresh['cost_usd']:.4f}"]
    assert f"{100_000 - len(answered)}/100000" in text[1]


def test_a_failed_fetch_is_recorded_with_what_it_spent(pipeline_env, simulator, monkeypatch):
    monkeypatch.setenv("SCHOLAR_PIPELINE_CROSSREF_RATE_LIMIT", "50")
    with ProviderSimulator(corpus=Corpus(seed=11, min_per_day=120, max_per_day=240), faults="crossref:500x*") as sim:
        monkeypatch.setenv("SCHOLAR_PIPELINE_CROSSREF_BASE_URL", sim.base_url("crossref"))
        monkeypatch.setenv("SCHOLAR_PIPELINE_CROSSREF_MAX_RETRY_WAIT", "0.01")
        failed = materialize(OTHER_DAY, "crossref", raise_on_error=False)
        attempts = len(sim.requests_for("crossref"))
    assert not failed.success and attempts == 6  # the client's max_attempts
    assert _usage("crossref") == [{"outcome": "failed", "requests": 6, "cache_hits": 0, "retries": 5, "errors": 6,
                                   "throttled": 0, "cost_usd": 0, "quota_remaining": None, "quota_limit": None,
                                   "remaining_usd": None}]
    assert nothing_landed()
    assert json.loads(_cli("--json").stdout)[0]["failed"] == 1


def test_nothing_fetched_yet_says_so(pipeline_env):
    result = _cli()
    assert result.returncode == 0 and result.stdout.startswith("no fetch recorded in the last 7 days in ")


def test_the_last_n_days_are_n_utc_calendar_days_today_included():
    midnight = dt.datetime.now(dt.timezone.utc).replace(hour=0, minute=0, second=1, microsecond=0)
    recorded = {"today": midnight, "yesterday": midnight - dt.timedelta(seconds=2),
                "six days ago": midnight - dt.timedelta(days=6), "seven days ago": midnight - dt.timedelta(days=6, seconds=2)}
    con = duckdb.connect()
    record_usage(con, [UsageRow(query=name, provider="openalex", partition_date=dt.date(2024, 3, 1), run_id=None,
                                outcome="fetched", usage=Usage(requests=1), recorded_at=at) for name, at in recorded.items()])
    days = {n: [row["day"] for row in usage_by_day(con, n)] for n in (1, 2, 7)}
    assert days == {1: [midnight.date()], 2: [midnight.date(), midnight.date() - dt.timedelta(days=1)],
                    7: [midnight.date(), midnight.date() - dt.timedelta(days=1), midnight.date() - dt.timedelta(days=6)]}


@pytest.mark.slow
def test_json_logs_carry_the_run_asset_and_partition_when_asked_for(production_env):
    """deploy/dagster.yaml's handler: JSON lines with SCHOLAR_PIPELINE_LOG_FORMAT=json, nothing extra without it."""
    from scholar_pipeline_tests.test_scenarios import _materialize_command

    runs = {}
    for log_format, partition in (("json", "2024-03-01|openalex"), ("text", "2024-03-02|openalex")):
        runs[log_format] = subprocess.run(_materialize_command(partition), cwd=REPO_ROOT, capture_output=True, text=True,
                                          timeout=300, env=production_env | {"SCHOLAR_PIPELINE_LOG_FORMAT": log_format})
        assert runs[log_format].returncode == 0, runs[log_format].stderr[-3000:]
    lines = [json.loads(line) for line in runs["json"].stderr.splitlines() if line.startswith("{")]
    assert {line["run_id"] for line in lines} == {lines[0]["run_id"]} and len(lines[0]["run_id"]) == 36
    assert {line["partition"] for line in lines} == {"2024-03-01|openalex"}
    landed = [line for line in lines if line["event"] == "ASSET_MATERIALIZATION"]
    assert {line["asset"] for line in landed} == {"sim_search/raw", "sim_search/works"}
    said = [line for line in lines if line["event"] is None and line["level"] == "INFO"]
    assert any("rows in `works`" in line["message"] and line["step"] == "sim_search__fetch_and_land" for line in said)
    assert not any(line.startswith("{") for line in runs["text"].stderr.splitlines())
