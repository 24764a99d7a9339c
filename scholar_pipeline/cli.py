"""`scholar-pipeline`: offline maintenance of what the pipeline landed (reads SCHOLAR_PIPELINE_HOME like the pipeline)."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from pathlib import Path

import click

from scholar_pipeline.alerts.dispatch import send_sample
from scholar_pipeline.alerts.ledger import BASELINE, DIGEST, SENDING, deliveries
from scholar_pipeline.audit import audit
from scholar_pipeline.backup import BackupError, backup, restore
from scholar_pipeline.health import DEFAULT_TIMEOUT_SECONDS, abandoned_checks, report, run_checks
from scholar_pipeline.maintenance import maintain
from scholar_pipeline.rebuild import PartitionSelection, rebuild
from scholar_pipeline.search.embeddings import SemanticUnavailable
from scholar_pipeline.search.query import MODES, SearchIndexMissing, search
from scholar_pipeline.queries import SavedSearch, SavedSearchError, load_saved_searches
from scholar_pipeline.settings import pipeline_home, queries_file
from scholar_pipeline.usage_report import usage_by_day, usage_table
from scholar_pipeline.warehouse_backends import warehouse_from_env

DAY = click.DateTime(formats=["%Y-%m-%d"])


@click.group(help="Rebuild and audit what the pipeline landed, from the landing zone alone (no network, no HTTP cache); "
                  "search the collected works; test the saved searches' alerts; report what the fetches spent at each provider; check the deployment's health; maintain the warehouse; "
                  "back it up and restore it.")
def main() -> None:
    pass


@main.command(name="rebuild")
@click.option("--query", help="only this saved search")
@click.option("--provider", help="only this provider")
@click.option("--from", "first", type=DAY, help="first partition date (YYYY-MM-DD)")
@click.option("--to", "last", type=DAY, help="last partition date (YYYY-MM-DD)")
@click.option("--force", is_flag=True, help="replace rows that do not reproduce with what the landed pages give")
def rebuild_command(query: str | None, provider: str | None, first, last, force: bool) -> None:
    """Rebuild `works` for the selected partitions from their landed pages; print the recorded and the rebuilt output
    hash of each. Exit 1 when a partition rebuilt to other rows than recorded under the same code version."""
    if first and last and first > last:
        raise click.BadParameter(f"--from {first:%Y-%m-%d} is after --to {last:%Y-%m-%d}")
    home = pipeline_home()
    selection = PartitionSelection(query, provider, first.date() if first else None, last.date() if last else None)
    results = rebuild(home, warehouse_from_env(home), selection, log=click.echo, force=force)
    if not results:
        click.echo(f"no landed partition under {home / 'landing'} matches the selection")
    unexplained = [r for r in results if r.unexplained]
    written = sum(r.written for r in results)
    click.echo(f"{len(results)} partitions rebuilt, {written} written, {len(unexplained)} different from what was recorded")
    sys.exit(1 if unexplained else 0)


@main.command(name="audit")
def audit_command() -> None:
    """Re-hash every landed page, manifest and `works` row against what was recorded; exit 1 when anything differs."""
    home = pipeline_home()
    findings = audit(home, warehouse_from_env(home), log=click.echo)
    for finding in findings:
        click.echo(str(finding))
    click.echo(f"audit of {home}: {len(findings)} findings" if findings else f"audit of {home}: everything matches what was recorded")
    sys.exit(1 if findings else 0)


@main.command(name="search")
@click.argument("text")
@click.option("--mode", type=click.Choice(MODES), help="how works are ranked (default: hybrid with the semantic extra, "
                                                       "else bm25)")
@click.option("--limit", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--query", "saved_search", help="only works this saved search found")
@click.option("--from", "first_year", type=int, help="published in this year or later")
@click.option("--to", "last_year", type=int, help="published in this year or earlier")
@click.option("--json", "as_json", is_flag=True, help="print the hits as a JSON array")
def search_command(text: str, mode: str | None, limit: int, saved_search: str | None, first_year: int | None,
                   last_year: int | None, as_json: bool) -> None:
    """The collected works (dataset/search_index) best matching TEXT: score, year, title, DOI and the providers that
    found each. Modes: bm25 (words), semantic (meaning; the `semantic` extra), hybrid (both, fused by rank)."""
    try:
        hits = search(pipeline_home(), text, mode=mode, limit=limit, query=saved_search, first_year=first_year,
                      last_year=last_year)
    except (SearchIndexMissing, SemanticUnavailable) as error:
        raise click.ClickException(str(error)) from None
    if as_json:
        click.echo(json.dumps([hit.as_dict() for hit in hits], ensure_ascii=False, indent=2))
        return
    if not hits:
        click.echo(f"no work matches {text!r}")
    for rank, hit in enumerate(hits, start=1):
        title = (hit.title or "(no title)") if len(hit.title or "") <= 100 else hit.title[:99] + "…"
        click.echo(f"{rank:>3}. {hit.score:8.4f}  {hit.year or '----'}  {title}")
        click.echo(f"     {('https://doi.org/' + hit.doi) if hit.doi else hit.work_id}  ({', '.join(hit.providers)})")


@main.command(name="maintain")
@click.option("--keep-days", type=click.IntRange(min=0), default=7, show_default=True,
              help="DuckLake: keep the snapshots (and their files) of the last KEEP_DAYS days for time travel")
def maintain_command(keep_days: int) -> None:
    """Merge DuckLake's small files, expire its old snapshots and delete the files none needs; checkpoint a DuckDB
    file. Runs beside landings (one that meets a merge tries again); run it daily or weekly (a schedule or cron)."""
    maintain(warehouse_from_env(pipeline_home()), keep_days, log=click.echo)


@main.command(name="usage")
@click.option("--days", type=click.IntRange(min=1), default=7, show_default=True, help="how many days back to report")
@click.option("--json", "as_json", is_flag=True, help="print the rows as JSON")
def usage_command(days: int, as_json: bool) -> None:
    """What the fetches spent at each provider per day: requests, cache hits, retries, errors, rate-limit refusals, cost and the
    quota the provider last reported."""
    warehouse = warehouse_from_env(pipeline_home())
    rows = []
    if warehouse.exists():
        with warehouse.read_connection() as con:
            rows = usage_by_day(con, days)
    if as_json:
        click.echo(json.dumps(rows, default=str, indent=2))
    elif not rows:
        click.echo(f"no fetch recorded in the last {days} days in {warehouse.name}")
    else:
        for line in usage_table(rows):
            click.echo(line)


@main.command(name="health")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_TIMEOUT_SECONDS, show_default=True,
              help="seconds each check may wait for a connection or a lock")
@click.option("--require-instance", is_flag=True, help="fail, rather than skip, when DAGSTER_HOME is unset")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object instead of lines")
def health_command(timeout: float, require_instance: bool, as_json: bool) -> None:
    """Check that the code location loads, the Dagster instance, the warehouse and Redis (if configured) answer, and
    the home is writable; one line per check. Exit 0 when all pass, 1 when any fails, 2 on bad usage."""
    results = run_checks(timeout=timeout, require_instance=require_instance)
    summary = report(results)
    if as_json:
        click.echo(json.dumps(summary))
    else:
        for result in results:
            click.echo(result.line())
        failed = summary["failed"]
        click.echo(f"unhealthy: {len(failed)} of {len(results)} checks failed ({', '.join(failed)})" if failed
                   else f"healthy: {len(results)} checks ok")
    if abandoned_checks():  # one may hold a connection or a lock that interpreter shutdown would wait for
        sys.stdout.flush()
        os._exit(summary["exit_code"])
    sys.exit(summary["exit_code"])


FOLDER = click.Path(file_okay=False, path_type=Path)


def _dagster_home() -> Path | None:
    return Path(os.environ["DAGSTER_HOME"]) if os.environ.get("DAGSTER_HOME") else None


@main.command(name="backup")
@click.argument("folder", type=FOLDER)
@click.option("--previous", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="an earlier backup: landed files it holds unchanged are hard-linked from it, not copied")
def backup_command(folder: Path, previous: Path | None) -> None:
    """Back up the warehouse, the landing zone and the Dagster instance of DAGSTER_HOME (if set) into FOLDER, a new or
    empty folder, with a backup.json listing the sha256 of every file. Exit 1 on any error."""
    try:
        backup(pipeline_home(), folder, dagster_home=_dagster_home(), previous=previous, log=click.echo)
    except BackupError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)


@main.command(name="restore")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--home", type=FOLDER, help="the home to restore into (default: SCHOLAR_PIPELINE_HOME)")
@click.option("--force", is_flag=True, help="replace the warehouse, the landing zone and the instance's history that "
                                            "the home and the instance already hold")
@click.option("--no-instance", is_flag=True, help="restore the home only, not the Dagster instance of DAGSTER_HOME")
def restore_command(folder: Path, home: Path | None, force: bool, no_instance: bool) -> None:
    """Verify every file of the backup in FOLDER against backup.json, then restore it into the home and into the
    (fresh) Dagster instance of DAGSTER_HOME. Exit 1 when the backup is damaged or the target not empty."""
    try:
        restore(folder, home or pipeline_home(), dagster_home=None if no_instance else _dagster_home(), force=force,
                log=click.echo)
    except BackupError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)


@main.group(name="alerts")
def alerts_group() -> None:
    """Saved-search alerts: digests of new works sent to the channels under a search's `alerts:` in queries.yaml."""


def _saved_search(name: str) -> SavedSearch:
    try:
        searches = {search.name: search for search in load_saved_searches(queries_file())}
    except SavedSearchError as error:
        raise click.ClickException(str(error)) from None
    if name not in searches:
        raise click.ClickException(f"no saved search {name!r} in {queries_file()}; there are: {', '.join(searches)}")
    if not searches[name].alerts:
        raise click.ClickException(f"saved search {name!r} has no `alerts:` in {queries_file()}; add channels first")
    return searches[name]


@alerts_group.command(name="test")
@click.argument("saved_search")
def alerts_test_command(saved_search: str) -> None:
    """Send a sample digest, marked [test], to every channel of SAVED_SEARCH, with its top works when the warehouse has
    some; nothing is recorded. Exit 1 when any channel failed."""
    results = send_sample(warehouse_from_env(pipeline_home()), _saved_search(saved_search))
    for channel, where, error in results:
        click.echo(f"ok    {channel}: sent to {where}" if where else f"FAIL  {channel}: {error}")
    sys.exit(1 if any(error for *_, error in results) else 0)


@alerts_group.command(name="status")
@click.option("--query", "saved_search", help="only this saved search")
def alerts_status_command(saved_search: str | None) -> None:
    """The digests sent so far, oldest first: when, which search and channel, how many works, the digest id."""
    warehouse = warehouse_from_env(pipeline_home())
    rows = []
    if warehouse.exists():
        with warehouse.read_connection() as con:
            rows = deliveries(con, saved_search)
    if not rows:
        click.echo("no alert sent yet")
    shown = {BASELINE: "baseline (known when alerts started)", DIGEST: "digest",
             SENDING: "being sent, or its outcome never recorded:"}
    for row in rows:
        what = shown[row["kind"]]
        click.echo(f"{row['sent_at'].astimezone(dt.timezone.utc):%Y-%m-%d %H:%M} UTC  {row['query']} → {row['channel']}: {row['works']:,} works, "
                   f"{what} {row['digest_id']}")
