"""Saved-search alerts: digests of new unique works, sent once per work and channel to real servers on loopback
(an HTTP receiver standing in for Slack and for a JSON webhook, an SMTP server with STARTTLS and login)."""

from __future__ import annotations

import contextlib
import datetime as dt
import html.parser
import logging
import os
import secrets
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from click.testing import CliRunner

from scholar_pipeline.alerts.digest import Digest, DigestWork, ReviewCounts
from scholar_pipeline.alerts import dispatch
from scholar_pipeline.alerts.dispatch import send_due_digests
from scholar_pipeline.alerts.ledger import (
    BASELINE, DIGEST, deliveries, ensure_ledger, known_at_setup, pending_works, record_delivery, record_intent,
)
from scholar_pipeline.alerts.render import SLACK_HEADER, SLACK_SECTION, email_html, email_text, slack_escape, slack_message
from scholar_pipeline.cli import main as cli
from scholar_pipeline.dataset.unique_works import build_unique_works
from scholar_pipeline.defs.alerts import AlertsNotDelivered, build_alerts_sensor
from scholar_pipeline.defs.resources import warehouse_from_env
from scholar_pipeline.warehouse_backends import Warehouse, warehouse_from_env as warehouse_in
from scholar_pipeline.providers import PROVIDER_NAMES
from scholar_pipeline.queries import SavedSearch, SavedSearchError, load_saved_searches
from scholar_pipeline_tests.helpers import SEARCH, home, materialize_range
from scholar_pipeline_tests.receivers import HttpReceiver, SmtpReceiver
from scholar_pipeline_tests.test_ducklake import _use_lake

SMTP_USER = "alerts@example.org"
BIN = Path(sys.executable).parent
REPO_ROOT = Path(__file__).resolve().parent.parent
LATER = dt.timedelta(hours=1)  # past the quiet period of every test search


def search_with_alerts(smtp_port: int, quiet_minutes: float = 0, top: int = 5) -> SavedSearch:
    return SavedSearch.model_validate({
        **SEARCH.model_dump(exclude={"alerts"}),
        "description": "Evaluation of large language models",
        "alerts": {"quiet_minutes": quiet_minutes, "top": top, "channels": [
            {"type": "slack", "webhook_url_env": "ALERTS_SLACK_WEBHOOK"},
            {"type": "webhook", "url_env": "ALERTS_WEBHOOK_URL"},
            {"type": "email", "host": "127.0.0.1", "port": smtp_port, "user": SMTP_USER, "password_env": "ALERTS_SMTP_PASSWORD",
             "from": SMTP_USER, "to": ["team@example.org", "lead@example.org"]},
        ]},
    })


@pytest.fixture
def channels(tmp_path, monkeypatch, pipeline_env):
    """The three receivers, the variables naming their secrets (each webhook's path holds a token), the search."""
    token = secrets.token_hex(16)
    password = secrets.token_hex(12)
    with HttpReceiver() as slack, HttpReceiver() as webhook, SmtpReceiver(tmp_path, SMTP_USER, password) as smtp:
        monkeypatch.setenv("ALERTS_WEBHOOK_TOKEN", token)  # scanned for on its own, as the secret part of both URLs
        monkeypatch.setenv("ALERTS_SLACK_WEBHOOK", f"{slack.url}/services/T0/B0/{token}")
        monkeypatch.setenv("ALERTS_WEBHOOK_URL", f"{webhook.url}/hooks/{token}")
        monkeypatch.setenv("ALERTS_SMTP_PASSWORD", password)
        monkeypatch.setenv("SSL_CERT_FILE", str(smtp.cert_path))
        yield search_with_alerts(smtp.port), slack, webhook, smtp, token


def warehouse() -> Warehouse:
    """The warehouse the environment names (the DuckDB file under the test's home, or DuckLake)."""
    return warehouse_in(home())


def query(sql: str, params=None) -> list[tuple]:
    with warehouse().read_connection() as con:
        return con.execute(sql, params or []).fetchall()


def land_and_match(first: str, last: str, instance) -> None:
    materialize_range(first, last, instance=instance)
    with warehouse().write_connection() as con:
        build_unique_works(con)


def works_without_records_before(day: str) -> int:
    """Counted independently of the alerts: works of the search none of whose sources is from before `day`."""
    return query("SELECT count(*) FROM unique_works u WHERE list_contains(u.queries, ?) AND "
                    "NOT list_bool_or([s.partition_date < ?::DATE FOR s IN u.sources])", [SEARCH.name, day])[0][0]


def test_each_new_work_is_announced_once_to_every_channel(channels):
    search, slack, webhook, smtp, token = channels
    with dg.instance_for_test() as instance:
        land_and_match("2024-03-01", "2024-03-01", instance)
        first = send_due_digests(warehouse(), [search], now=dt.datetime.now(dt.timezone.utc) + LATER)
        assert first.sent == [] and not slack.requests and not webhook.requests and not smtp.messages  # the baseline
        land_and_match("2024-03-02", "2024-03-03", instance)
        second = send_due_digests(warehouse(), [search], now=dt.datetime.now(dt.timezone.utc) + LATER)
        third = send_due_digests(warehouse(), [search], now=dt.datetime.now(dt.timezone.utc) + 2 * LATER)
    new = works_without_records_before("2024-03-02")
    assert new > 20 and len(second.sent) == 3 and third.sent == [] and not second.failed

    [hook] = webhook.requests
    assert hook.path.endswith(token) and hook.headers["Idempotency-Key"] == hook.body["digest_id"]  # no token shown
    assert hook.body["new_works"] == new and len(hook.body["works"]) == 5 and hook.body["more"] == new - 5
    shown = {w["work_id"] for w in hook.body["works"]}
    titles = dict(query("SELECT work_id, title FROM unique_works WHERE work_id IN (SELECT unnest(?::VARCHAR[]))", [list(shown)]))
    assert {w["work_id"]: w["title"] for w in hook.body["works"]} == titles
    assert all(w["link"] == f"https://doi.org/{w['doi']}" for w in hook.body["works"] if w["doi"])
    counts = hook.body["review_counts"]
    (identified,) = query("SELECT records_identified FROM (SELECT provider, sum(records_fetched) records_identified "
                             "FROM (SELECT * FROM provenance QUALIFY row_number() OVER (PARTITION BY query, provider, "
                             "partition_date ORDER BY landed_at DESC) = 1) GROUP BY 1) WHERE provider = 'openalex'")[0]
    assert counts["records_identified"]["openalex"] == identified
    assert counts["unique_records"] == query("SELECT count(*) FROM unique_works")[0][0]

    [message] = slack.bodies(f"/services/T0/B0/{token}")
    assert message["text"] == f"{new} new works in saved search {SEARCH.name}"
    sections = [b for b in message["blocks"] if b["type"] == "section"][1:]
    assert [s["text"]["text"].split("|", 1)[0] for s in sections] == [f"*<{w['link']}" for w in hook.body["works"]]

    [mail] = smtp.messages
    assert smtp.logins == [SMTP_USER] and smtp.envelopes == [(SMTP_USER, ["team@example.org", "lead@example.org"])]
    recorded = {d["channel"]: d for d in deliveries_now() if d["kind"] == "digest"}
    assert sorted(recorded) == ["email", "slack", "webhook"] and all(d["works"] == new for d in recorded.values())
    assert mail["Subject"] == message["text"] and mail["X-Scholar-Pipeline-Digest"] == recorded["email"]["digest_id"]
    assert hook.body["digest_id"] == recorded["webhook"]["digest_id"]
    plain, rich = mail.get_body(("plain",)), mail.get_body(("html",))
    assert all(w["title"][:60] in plain.get_content() for w in hook.body["works"])
    assert f"... and {new - 5} more" in plain.get_content() and "<ol><li>" in rich.get_content()

    status = CliRunner().invoke(cli, ["alerts", "status"]).output.splitlines()
    assert len(status) == 6 and all(line.endswith(f"{new} works, digest {recorded[line.split()[5].rstrip(':')]['digest_id']}")
                                    for line in status[3:])


def deliveries_now() -> list[dict]:
    with warehouse().read_connection() as con:
        return deliveries(con)


def test_a_failed_send_fails_the_tick_and_goes_out_on_the_next(channels):
    search, slack, webhook, smtp, token = channels
    webhook.statuses = [500, 503]
    sensor = build_alerts_sensor([search])
    with dg.instance_for_test() as instance:
        known_then_new(search, instance, "2024-03-02")
        tick = lambda: sensor(dg.build_sensor_context(instance=instance, resources={"warehouse": warehouse_from_env()}))  # noqa: E731
        for _ in range(2):
            with pytest.raises(AlertsNotDelivered) as failed:
                tick()
            assert "saved search sim_search, channel webhook: the webhook answered 5" in str(failed.value)
            assert token not in str(failed.value) and "/hooks/" not in str(failed.value)
        assert "new works sent to webhook http://127.0.0.1/… (from $ALERTS_WEBHOOK_URL)" in tick().skip_message
        assert tick().skip_message == "nothing new to announce"
    # Slack and mail went out on the first tick, once; the webhook got the same digest three times, the last taken.
    assert len(slack.requests) == 1 and len(smtp.messages) == 1 and len(webhook.requests) == 3
    assert len({r.body["digest_id"] for r in webhook.requests}) == 1
    assert sorted(d["channel"] for d in deliveries_now() if d["kind"] == "digest") == ["email", "slack", "webhook"]


def webhook_only(search: SavedSearch, **settings) -> SavedSearch:
    return search.model_copy(update={"alerts": search.alerts.model_copy(
        update={**settings, "channels": search.alerts.channels[1:2]})})


def in_minutes(minutes: float) -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=minutes)


def known_then_new(search: SavedSearch, instance, day: str) -> None:
    """2024-03-01 landed and taken as known (the channels' baseline), then `day` landed."""
    land_and_match("2024-03-01", "2024-03-01", instance)
    send_due_digests(warehouse(), [search])
    land_and_match(day, day, instance)


def test_a_digest_waits_for_the_quiet_period_and_batches_what_lands_meanwhile(channels):
    search, slack, webhook, smtp, token = channels
    search = webhook_only(search, quiet_minutes=30)
    with dg.instance_for_test() as instance:
        known_then_new(search, instance, "2024-03-02")
        waiting = send_due_digests(warehouse(), [search], now=in_minutes(10))
        land_and_match("2024-03-03", "2024-03-03", instance)
        sent = send_due_digests(warehouse(), [search], now=in_minutes(31))
    assert waiting.sent == [] and "sent once the search has had no landing for 30 min" in waiting.waiting[0]
    [one] = webhook.bodies()
    assert one["new_works"] == works_without_records_before("2024-03-02") and len(sent.sent) == 1


def test_new_works_are_not_held_past_max_wait_from_when_they_were_first_seen(channels):
    search, slack, webhook, smtp, token = channels
    search = webhook_only(search, quiet_minutes=600, max_wait_hours=1)
    with dg.instance_for_test() as instance:
        known_then_new(search, instance, "2024-03-02")
        seen = send_due_digests(warehouse(), [search], now=in_minutes(0))
        early = send_due_digests(warehouse(), [search], now=in_minutes(50))
        late = send_due_digests(warehouse(), [search], now=in_minutes(70))
    assert seen.sent == early.sent == [] and len(late.sent) == 1 and len(webhook.requests) == 1


def test_a_refetch_neither_restarts_the_max_wait_nor_sends_before_the_quiet_period(channels):
    """The daily schedule fetches the last 30 days again every day. Works the sensor first saw pending two hours ago are
    due after one hour's max wait, however recently their partitions were landed again; works found now by a refetch,
    long after the channel's last digest, wait for the quiet period."""
    search, slack, webhook, smtp, token = channels
    search = webhook_only(search, quiet_minutes=30, max_wait_hours=1)
    with dg.instance_for_test() as instance:
        known_then_new(search, instance, "2024-03-02")
        first_seen = send_due_digests(warehouse(), [search])
        with warehouse().write_connection() as con:  # all of that happened two hours ago
            con.execute("UPDATE provenance SET landed_at = landed_at - INTERVAL 2 HOUR")
            con.execute("UPDATE alert_deliveries SET sent_at = sent_at - INTERVAL 2 HOUR")
        land_and_match("2024-03-02", "2024-03-02", instance)  # fetched again now, the same records
        sent = send_due_digests(warehouse(), [search])
        with warehouse().write_connection() as con:  # the digest went out two days ago
            con.execute("UPDATE alert_deliveries SET sent_at = sent_at - INTERVAL 2 DAY")
        land_and_match("2024-03-03", "2024-03-03", instance)  # a day the refetch finds new works in
        quiet = send_due_digests(warehouse(), [search])
    assert first_seen.sent == [] and len(sent.sent) == 1
    assert webhook.bodies()[0]["new_works"] == works_without_records_before("2024-03-02") - works_without_records_before("2024-03-03")
    assert quiet.sent == [] and "sent once the search has had no landing for 30 min" in quiet.waiting[0]


def test_alerts_met_before_the_dataset_is_built_take_the_landed_records_as_known(channels):
    search, slack, webhook, smtp, token = channels
    search = webhook_only(search)
    with dg.instance_for_test() as instance:
        materialize_range("2024-03-01", "2024-03-01", instance=instance)  # landed; unique_works not built yet
        first = send_due_digests(warehouse(), [search], now=in_minutes(60))
        land_and_match("2024-03-02", "2024-03-02", instance)
        send_due_digests(warehouse(), [search], now=in_minutes(120))
    assert first.waiting == ["dataset/unique_works has not been built yet"] and len(webhook.requests) == 1
    assert webhook.bodies()[0]["new_works"] == works_without_records_before("2024-03-02")


def alerting_queries(path: Path, smtp_port: int, extra_channel: str = "") -> Path:
    """A saved-search file whose one search has the three channels of the `channels` fixture."""
    path.write_text(textwrap.dedent(f"""\
        queries:
          - name: sim_search
            text: {SEARCH.text}
            providers: [openalex, crossref]
            start_date: 2024-01-01
            alerts:
              quiet_minutes: 0
              channels:
                - {{type: slack, webhook_url_env: ALERTS_SLACK_WEBHOOK}}
                - {{type: webhook, url_env: ALERTS_WEBHOOK_URL}}
                - {{type: email, host: 127.0.0.1, port: {smtp_port}, user: {SMTP_USER}, password_env: ALERTS_SMTP_PASSWORD,
                   from: {SMTP_USER}, to: [team@example.org]}}
    """) + extra_channel)
    return path


def test_alerts_test_sends_a_sample_and_records_nothing(channels, tmp_path, monkeypatch):
    search, slack, webhook, smtp, token = channels
    queries = alerting_queries(tmp_path / "alerting.yaml", smtp.port,
                               "        - {type: webhook, name: broken, url_env: ALERTS_UNSET_WEBHOOK}\n")
    monkeypatch.setenv("SCHOLAR_PIPELINE_QUERIES", str(queries))
    before = CliRunner().invoke(cli, ["alerts", "test", "sim_search"])  # nothing landed: a made-up work
    assert before.exit_code == 1 and slack.bodies()[0]["text"] == "[test] 1 new work in saved search sim_search"
    with dg.instance_for_test() as instance:
        land_and_match("2024-03-01", "2024-03-01", instance)
    result = CliRunner().invoke(cli, ["alerts", "test", "sim_search"])
    assert result.exit_code == 1, result.output
    assert "ok    slack: sent to Slack webhook http://127.0.0.1/… (from $ALERTS_SLACK_WEBHOOK)" in result.output
    assert "FAIL  broken: saved search sim_search, channel broken: environment variable ALERTS_UNSET_WEBHOOK is not set" \
        in result.output
    assert token not in result.output
    message = slack.bodies()[1]
    assert message["text"] == "[test] 10 new works in saved search sim_search"
    assert smtp.messages[1]["Subject"] == "[test] 10 new works in saved search sim_search"
    titles = {title for (title,) in query("SELECT title FROM unique_works")}
    shown = [b["text"]["text"] for b in message["blocks"] if b["type"] == "section"][1:]
    assert len(shown) == 10 and all(any(slack_escape(t) in text for t in titles) for text in shown)
    assert deliveries_now() == [] and CliRunner().invoke(cli, ["alerts", "status"]).output == "no alert sent yet\n"


def test_titles_and_links_with_markup_characters_render_as_text():
    title = "Rates <5% & the R&D of <i>E. coli</i> > expected"
    sici = "10.1002/(sici)1097-4571(199806)49:8<693::aid-asi4>3.0.co;2-0"
    work = DigestWork(work_id="w1", title=title, year=1998, venue="JASIS & T", doi=sici, url=None, providers=["crossref"])
    digest = Digest(digest_id="d1", search="s", description="A <b>bold</b> search", channel="slack", new_works=1,
                    top=[work], counts=ReviewCounts({"crossref": 3}, 1, 0, 2))
    blocks = slack_message(digest)["blocks"]
    section = blocks[3]["text"]["text"]
    link = "https://doi.org/10.1002/%28sici%291097-4571%28199806%2949%3A8%3C693%3A%3Aaid-asi4%3E3.0.co%3B2-0"
    assert section.startswith(f"*<{link}|Rates &lt;5% &amp; the R&amp;D of &lt;i&gt;E. coli&lt;/i&gt; &gt; expected>*")
    assert "JASIS &amp; T" in section and blocks[1]["text"]["text"] == "A &lt;b&gt;bold&lt;/b&gt; search"

    class Text(html.parser.HTMLParser):
        def __init__(self):
            super().__init__(convert_charrefs=True)
            self.text, self.hrefs = [], []

        def handle_starttag(self, tag, attrs):
            self.hrefs += [value for name, value in attrs if name == "href"]

        def handle_data(self, data):
            self.text.append(data)

    parsed = Text()
    parsed.feed(email_html(digest))
    assert title in parsed.text and parsed.hrefs == [link] and "A <b>bold</b> search" in parsed.text
    assert f"1. {title}\n" in email_text(digest)


@pytest.mark.parametrize("channel, problem", [
    ("{type: slack, webhook_url: 'https://hooks.slack.com/services/T/B/x'}",
     "`webhook_url` would write a secret into the saved-search file; put it in an environment variable and write "
     "`webhook_url_env: <VARIABLE>`"),
    ("{type: email, host: smtp.example.org, user: me, password: hunter22, from: a@b.org, to: [c@d.org]}",
     "`password` would write a secret"),
    ("{type: email, host: smtp.example.org, security: none, user: me, password_env: P, from: a@b.org, to: [c@d.org]}",
     "a login over `security: none` would send the password in clear"),
    ("{type: teams, url_env: X}", "alerts.channels.0: Input tag 'teams' found using 'type' does not match"),
])
def test_a_secret_or_a_mistake_in_the_alerts_stops_the_load_naming_it(tmp_path, channel, problem):
    queries = tmp_path / "queries.yaml"
    queries.write_text(f"queries:\n  - name: s\n    text: t\n    providers: [openalex]\n    start_date: 2024-01-01\n"
                       f"    alerts:\n      channels:\n        - {channel}\n")
    with pytest.raises(SavedSearchError) as error:
        load_saved_searches(queries)
    assert problem in str(error.value) and "hunter22" not in str(error.value) and "T/B/x" not in str(error.value)


def _daemon(env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen([str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"], cwd=REPO_ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(daemon: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(daemon.pid, signal.SIGKILL)  # the daemon and its code server, with no chance to tidy up
    daemon.wait(timeout=30)


def _until(condition, what: str, daemon: subprocess.Popen, log: Path, seconds: float = 150) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert daemon.poll() is None, f"the daemon exited: {log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {log.read_text()[-3000:]}"
        time.sleep(0.5)


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_the_daemon_sends_each_digest_once_across_a_kill_and_restart(channels, tmp_path, pipeline_env):
    search, slack, webhook, smtp, token = channels
    queries = alerting_queries(Path(pipeline_env["SCHOLAR_PIPELINE_QUERIES"]), smtp.port)
    [search] = load_saved_searches(queries)
    with dg.instance_for_test() as instance:
        known_then_new(search, instance, "2024-03-02")
    env = {**os.environ, "SCHOLAR_PIPELINE_ALERTS_INTERVAL_SECONDS": "1", "SCHOLAR_PIPELINE_DATASET_AUTOMATION": "off"}
    first_log, second_log = tmp_path / "daemon-1.log", tmp_path / "daemon-2.log"
    daemon = _daemon(env, first_log)
    try:
        _until(lambda: webhook.requests and slack.requests and smtp.messages, "the first digests", daemon, first_log)
        _until(lambda: len([d for d in deliveries_now() if d["kind"] == "digest"]) == 3, "the deliveries' record",
               daemon, first_log)
    finally:
        _stop(daemon)
    daemon = _daemon(env, second_log)
    try:
        ticks = lambda: second_log.read_text().count("Checking for new runs for sensor: saved_search_alerts")  # noqa: E731
        _until(lambda: ticks() >= 3, "three ticks of the restarted daemon", daemon, second_log)
    finally:
        _stop(daemon)
    assert len(slack.requests) == len(webhook.requests) == len(smtp.messages) == 1
    assert webhook.requests[0].body["new_works"] == works_without_records_before("2024-03-02")


def test_deliveries_are_recorded_in_ducklake_too(channels, lake_database, tmp_path, monkeypatch):
    search, slack, webhook, smtp, token = channels
    search = webhook_only(search)
    _use_lake(lake_database, str(tmp_path / "lake_files"), monkeypatch)
    with dg.instance_for_test() as instance:
        known_then_new(search, instance, "2024-03-02")
        sent = send_due_digests(warehouse(), [search], now=in_minutes(60))
        again = send_due_digests(warehouse(), [search], now=in_minutes(120))
    assert len(sent.sent) == 1 and again.sent == [] and len(webhook.requests) == 1
    assert webhook.requests[0].body["new_works"] == works_without_records_before("2024-03-02")
    assert [d["kind"] for d in deliveries_now()] == ["baseline", "digest"]


def test_a_record_that_meets_another_commit_is_tried_again_and_nothing_is_sent_twice(channels, monkeypatch):
    """DuckLake refuses a commit that touches files another commit changed: recording what was sent tries again."""
    search, slack, webhook, smtp, token = channels
    search = webhook_only(search)
    settle, conflicts = dispatch.settle_intent, []

    def conflicting_once(con, **kwargs):
        if not conflicts:
            conflicts.append(kwargs["digest_id"])
            raise duckdb.TransactionException("Transaction conflict: another transaction changed the same file")
        return settle(con, **kwargs)

    with dg.instance_for_test() as instance:
        known_then_new(search, instance, "2024-03-02")
        monkeypatch.setattr(dispatch, "settle_intent", conflicting_once)
        said: list[str] = []
        sent = send_due_digests(warehouse(), [search], now=in_minutes(60), log=said.append)
        again = send_due_digests(warehouse(), [search], now=in_minutes(120))
    assert len(conflicts) == 1 and len(sent.sent) == 1 and again.sent == [] and len(webhook.requests) == 1
    assert [line for line in said if line.startswith("the alerts ledger: the commit met another transaction")]
    assert [(d["kind"], d["digest_id"]) for d in deliveries_now()][-1] == (DIGEST, conflicts[0])


def test_a_recipient_the_server_refuses_is_reported_and_the_others_get_the_digest_once(channels, tmp_path, monkeypatch):
    search, slack, webhook, smtp, token = channels
    (tmp_path / "refusing").mkdir()
    with SmtpReceiver(tmp_path / "refusing", SMTP_USER, os.environ["ALERTS_SMTP_PASSWORD"],
                      refuse=frozenset({"gone@example.org"})) as refusing:
        monkeypatch.setenv("SSL_CERT_FILE", str(refusing.cert_path))
        mail = search.alerts.channels[2].model_copy(update={"port": refusing.port, "to": ["team@example.org", "gone@example.org"]})
        search = search.model_copy(update={"alerts": search.alerts.model_copy(update={"channels": [mail]})})
        with dg.instance_for_test() as instance:
            known_then_new(search, instance, "2024-03-02")
            first = send_due_digests(warehouse(), [search], now=in_minutes(60))
            second = send_due_digests(warehouse(), [search], now=in_minutes(120))
    assert refusing.envelopes == [(SMTP_USER, ["team@example.org"])]
    assert "sent to team@example.org via 127.0.0.1" in first.sent[0] and "the server refused gone@example.org" in first.sent[0]
    assert second.sent == [] and not first.failed


def _works_table(con: duckdb.DuckDBPyConnection, works: dict[str, list[tuple[str, str]]]) -> None:
    """`unique_works` as the ledger reads it: each work's (provider, provider_id) records, all of search `q` on one day."""
    con.execute("CREATE OR REPLACE TABLE unique_works (work_id VARCHAR, sources STRUCT(query VARCHAR, provider VARCHAR, "
                "provider_id VARCHAR, partition_date DATE, record_hash VARCHAR)[])")
    for work_id, records in works.items():
        con.execute("INSERT INTO unique_works VALUES (?, ?)", [work_id, [
            {"query": "q", "provider": p, "provider_id": i, "partition_date": dt.date(2024, 3, 1), "record_hash": "h"}
            for p, i in records]])


def test_a_work_announced_stays_announced_when_it_gains_a_record_and_another_id():
    con = duckdb.connect()
    con.execute("CREATE TABLE provenance AS SELECT 'q' query, unnest(['arxiv', 'crossref']) provider, "
                "DATE '2024-03-01' partition_date, now() landed_at")
    ensure_ledger(con)
    _works_table(con, {"arxiv:2401.00001": [("arxiv", "2401.00001")], "doi:10.1/a": [("crossref", "10.1/a")]})
    first = pending_works(con, "q", "slack")
    assert first.work_ids == ["arxiv:2401.00001", "doi:10.1/a"]
    record_delivery(con, digest_id="d1", query="q", channel="slack", kind=DIGEST, pending=first, sent_at=in_minutes(0))
    # The preprint's journal version lands: the work takes its DOI as id and gains a record; another work is new.
    _works_table(con, {"doi:10.1/journal": [("arxiv", "2401.00001"), ("crossref", "10.1/journal")],
                       "doi:10.1/a": [("crossref", "10.1/a")], "doi:10.1/b": [("crossref", "10.1/b")]})
    second = pending_works(con, "q", "slack")
    assert second.work_ids == ["doi:10.1/b"] and second.records == [{"provider": "crossref", "provider_id": "10.1/b"}]
    assert pending_works(con, "q", "email").work_ids == ["doi:10.1/a", "doi:10.1/b", "doi:10.1/journal"]  # per channel
    # A digest about to go out (not yet confirmed) does not count as announced.
    record_intent(con, digest_id="d2", query="q", channel="slack", pending=second, at=in_minutes(0))
    assert pending_works(con, "q", "slack").work_ids == ["doi:10.1/b"]


def test_an_arxiv_e_print_announced_stays_announced_when_its_new_version_replaces_it():
    """The daily re-fetch replaces `v1` by `v2` in `works` when the authors revise the e-print: the same work."""
    con = duckdb.connect()
    ensure_ledger(con)
    _works_table(con, {"arxiv:2403.00001": [("arxiv", "2403.00001v1")]})
    record_delivery(con, digest_id="d1", query="q", channel="slack", kind=DIGEST, pending=pending_works(con, "q", "slack"),
                    sent_at=in_minutes(0))
    _works_table(con, {"arxiv:2403.00001": [("arxiv", "2403.00001v2")], "arxiv:2403.00002": [("arxiv", "2403.00002v1")]})
    assert pending_works(con, "q", "slack").work_ids == ["arxiv:2403.00002"]


def test_a_channel_met_after_the_dataset_was_built_knows_what_landed_since_too():
    """The baseline is every record the search holds: one landed after unique_works' last build is no news later."""
    con = duckdb.connect()
    ensure_ledger(con)
    con.execute("CREATE TABLE works AS SELECT 'q' query, 'openalex' provider, unnest(['W1', 'W2']) provider_id")
    _works_table(con, {"openalex:W1": [("openalex", "W1")]})  # built before W2 landed
    known = known_at_setup(con, "q", "slack", built=True)
    assert known.work_ids == ["openalex:W1"] and [r["provider_id"] for r in known.records] == ["W1", "W2"]
    record_delivery(con, digest_id="b", query="q", channel="slack", kind=BASELINE, pending=known, sent_at=in_minutes(0))
    _works_table(con, {"openalex:W1": [("openalex", "W1")], "openalex:W2": [("openalex", "W2")]})
    assert pending_works(con, "q", "slack").work_ids == []


def test_a_crash_between_the_send_and_its_record_sends_the_same_digest_again_and_says_so(channels, monkeypatch):
    search, slack, webhook, smtp, token = channels
    search = webhook_only(search)
    logged = []
    with dg.instance_for_test() as instance:
        known_then_new(search, instance, "2024-03-02")
        with monkeypatch.context() as broken:
            broken.setattr(dispatch, "settle_intent", lambda *a, **k: (_ for _ in ()).throw(OSError("No space left on device")))
            with pytest.raises(RuntimeError) as unrecorded:
                send_due_digests(warehouse(), [search], now=in_minutes(60))
        again = send_due_digests(warehouse(), [search], now=in_minutes(61), log=logged.append)
        last = send_due_digests(warehouse(), [search], now=in_minutes(62))
    first_id = webhook.requests[0].body["digest_id"]
    assert f"sim_search → webhook ({first_id})" in str(unrecorded.value) and "make the warehouse writable" in str(unrecorded.value)
    assert [r.body["digest_id"] for r in webhook.requests] == [first_id, first_id] and last.sent == [] and len(again.sent) == 1
    assert any(f"digest {first_id} was being sent when a pass ended without recording how (a crash?); sending it again "
               "under the same id" in line for line in logged)
    assert [d["kind"] for d in deliveries_now()] == ["baseline", "digest"]


def test_a_second_pass_steps_aside_while_one_runs(channels):
    search, slack, webhook, smtp, token = channels
    search = webhook_only(search)
    with dg.instance_for_test() as instance:
        known_then_new(search, instance, "2024-03-02")
        with warehouse().exclusive("alerts") as first:
            aside = send_due_digests(warehouse(), [search], now=in_minutes(60))
        after = send_due_digests(warehouse(), [search], now=in_minutes(61))
    assert first and aside.sent == [] and "another pass of the alerts is still running" in aside.waiting[0]
    assert len(after.sent) == 1 and len(webhook.requests) == 1


def test_an_error_page_echoing_the_webhook_path_or_a_quoted_url_never_shows_the_token(channels, monkeypatch, capfd):
    search, slack, webhook, smtp, token = channels
    with HttpReceiver(statuses=[404], echo_path=True) as echoing:
        monkeypatch.setenv("ALERTS_WEBHOOK_URL", f"{echoing.url}/hooks/{token}")
        monkeypatch.setenv("ALERTS_SLACK_WEBHOOK", f'"{slack.url}/services/T0/B0/{token}"')  # quoted in an env file
        outcome = send_due_digests_once_new(search)
    failures = "\n".join(outcome.failed)
    assert "channel webhook: the webhook answered 404 'Cannot POST ***' at http://127.0.0.1/… (from $ALERTS_WEBHOOK_URL)" in failures
    assert "channel slack: $ALERTS_SLACK_WEBHOOK does not hold a webhook URL" in failures
    assert token not in failures and token not in "".join(capfd.readouterr()) and not slack.requests


@pytest.mark.parametrize("malformed", ["http://[fe80::1/hooks/{token}", "https://hooks.example:99999/{token}",
                                       "https://hooks.example:port/{token}"])
def test_a_url_that_does_not_parse_fails_its_channel_alone(channels, monkeypatch, malformed):
    search, slack, webhook, smtp, token = channels
    monkeypatch.setenv("ALERTS_SLACK_WEBHOOK", malformed.format(token=token))
    outcome = send_due_digests_once_new(search)
    failures = "\n".join(outcome.failed)
    assert "channel slack: $ALERTS_SLACK_WEBHOOK does not hold a webhook URL" in failures and token not in failures
    assert len(webhook.requests) == 1 and len(smtp.messages) == 1 and not slack.requests


def send_due_digests_once_new(search: SavedSearch):
    with dg.instance_for_test() as instance:
        known_then_new(search, instance, "2024-03-02")
        return send_due_digests(warehouse(), [search], now=in_minutes(60))


def test_a_digest_of_long_texts_stays_within_slacks_limits():
    amp = "&" * 1000  # five characters each once escaped
    works = [DigestWork(work_id=f"w{n}", title=f"{amp} {n}\nsecond line", year=2024, venue=amp * 2,
                        doi="10.1/" + "x" * (479 if n % 2 else 480), url=None, providers=sorted(PROVIDER_NAMES))
             for n in range(40)]  # the even ones' DOI links are one character too long to be shown
    digest = Digest(digest_id="d", search="s" * 64, description=amp * 5, channel="slack", new_works=5000, top=works,
                    counts=ReviewCounts({"openalex": 10**6}, 1, 2, 3))
    blocks = slack_message(digest)["blocks"]
    texts = [b["text"]["text"] for b in blocks if b["type"] == "section"]
    assert len(blocks) <= 50 and len(blocks[0]["text"]["text"]) <= SLACK_HEADER and len(texts) == 41
    assert all(len(text) <= SLACK_SECTION for text in texts)
    assert [text.startswith("*<https://doi.org/10.1/x") for text in texts[1:5]] == [False, True, False, True]
    assert all("\n" not in text.split("*")[1] for text in texts[1:])  # a title's line break does not split its link
    assert "1. " + "&" * 279 in email_text(digest).replace("\n", " ")


def test_no_log_record_carries_a_secret_even_at_debug(channels, caplog):
    """slack-sdk logs the webhook URL at DEBUG to a logger that allows it; httpx logs every URL at INFO."""
    search, slack, webhook, smtp, token = channels
    caplog.set_level(logging.DEBUG)
    outcome = send_due_digests_once_new(search)
    assert len(outcome.sent) == 3 and caplog.records
    assert token not in caplog.text and os.environ["ALERTS_SMTP_PASSWORD"] not in caplog.text
