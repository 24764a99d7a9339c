"""One saved search over all seven providers, one day each, through the contract's shell command against
`python -m scholar_pipeline.simulator`: every partition lands exactly the records the simulator reported, and group
`dataset` builds from the shell."""

import datetime as dt
import os
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from scholar_pipeline.dataset.exports import verify_exports
from scholar_pipeline.providers import PROVIDERS
from scholar_pipeline.simulator import Corpus, ProviderSimulator
from scholar_pipeline_tests.conftest import REPO_ROOT, SECRET_ENV
from scholar_pipeline_tests.helpers import files_containing

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
DAY = dt.date(2024, 3, 1)
TEXT = "soil microbiome"


@pytest.fixture
def simulator_process(tmp_path):
    """The simulator as a user starts it, on a free port; the exports it prints, including the placeholder keys."""
    command = [sys.executable, "-m", "scholar_pipeline.simulator", "--port", "0", "--request-log", str(tmp_path / "requests.jsonl")]
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    exports = {}
    for line in process.stdout:
        if match := re.fullmatch(r"\s*export (\w+)=(\S+)\s*", line):
            exports[match[1]] = match[2]
        if len(exports) == len(PROVIDERS) + 2:  # a base URL for each, and the two keys
            break
    yield exports
    process.kill()
    process.wait()


def test_a_search_over_all_seven_providers_lands_each_partition_whole(tmp_path, simulator_process):
    queries = tmp_path / "queries.yaml"
    queries.write_text(f"queries:\n  - {{name: everywhere, text: {TEXT}, providers: [{', '.join(PROVIDERS)}], start_date: 2024-01-01}}\n")
    home, dagster_home = tmp_path / "home", tmp_path / "dagster_home"
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("SCHOLAR_PIPELINE_", "DAGSTER_")) and k not in SECRET_ENV}
    environ |= simulator_process | {"SCHOLAR_PIPELINE_HOME": str(home), "SCHOLAR_PIPELINE_QUERIES": str(queries),
                                    "DAGSTER_HOME": str(dagster_home)}
    assert set(simulator_process) >= {"SPRINGER_NATURE_API_KEY", "CORE_API_KEY"}
    subprocess.run([sys.executable, "-m", "scholar_pipeline.instance", str(dagster_home)], env=environ, check=True, capture_output=True)

    runs = [subprocess.Popen([str(BIN / "dagster"), "asset", "materialize", "-m", "scholar_pipeline.definitions",
                              "--select", "group:everywhere", "--partition", f"{DAY}|{provider}"],
                             cwd=REPO_ROOT, env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for provider in PROVIDERS]
    outputs = {provider: run.communicate(timeout=600)[0] for provider, run in zip(PROVIDERS, runs)}
    assert all(run.returncode == 0 for run in runs), {p: out[-2000:] for p, out in outputs.items()}

    expected = ProviderSimulator(corpus=Corpus())  # the simulator process's corpus (its defaults), not started
    with duckdb.connect(str(home / "scholar.duckdb"), read_only=True) as con:
        for provider in PROVIDERS:
            landed = sorted(r[0] for r in con.execute("SELECT provider_id FROM works WHERE provider = ?", [provider]).fetchall())
            reported = con.execute("SELECT total_reported, rows_landed FROM provenance WHERE provider = ?", [provider]).fetchall()
            assert len(landed) > 0, provider
            assert reported == [(len(landed), len(landed))], provider
            assert landed == sorted(expected.apis[provider].record_ids(DAY, DAY, TEXT)), provider
            # `<`, `&` and `>` in abstracts (the corpus puts them in some, spaced or not), sent escaped or bare as each
            # wire format has them, come out as the same signs: none lost, doubled, or left as an entity or a tag.
            near, exact = con.execute(r"""SELECT count(*) FILTER (WHERE abstract LIKE '%held at p%'),
                count(*) FILTER (WHERE regexp_matches(abstract, 'held at (p < 0\.05 & n > |p<0\.01 & n>)\d\d\.'))
                FROM works WHERE provider = ?""", [provider]).fetchone()
            assert near == exact > 0, (provider, near, exact)
        # PubMed's structured abstracts: the sentence after the last label's is kept, under that label.
        assert con.execute("SELECT count(*) FROM works WHERE provider = 'pubmed' AND abstract LIKE 'BACKGROUND: %held at p%'"
                           ).fetchone()[0] > 0
    # The dataset from the shell, as the contract gives the command.
    dataset = subprocess.run([str(BIN / "dagster"), "asset", "materialize", "-m", "scholar_pipeline.definitions",
                              "--select", "group:dataset"], cwd=REPO_ROOT, env=environ, capture_output=True, text=True, timeout=600)
    assert dataset.returncode == 0, dataset.stdout[-3000:] + dataset.stderr[-3000:]
    with duckdb.connect(str(home / "scholar.duckdb"), read_only=True) as con:
        works_rows, sources, unique = con.execute(
            "SELECT (SELECT count(*) FROM works), sum(len(sources)), count(*) FROM unique_works").fetchone()
        assert sources == works_rows and 0 < unique < works_rows  # the providers share most works
        assert con.execute("SELECT records_identified, unique_records FROM review_counts "
                           "WHERE query = 'everywhere' AND period = 'all' AND provider = '(all)'").fetchone() == (works_rows, unique)
    assert verify_exports(home / "exports") == []
    # The keys went out (the simulator refuses requests without them) and were written nowhere, its own request log included.
    for key in (simulator_process["SPRINGER_NATURE_API_KEY"], simulator_process["CORE_API_KEY"]):
        assert files_containing(tmp_path, key.encode()) == [], key
    request_log = (tmp_path / "requests.jsonl").read_text().lower()
    assert '"authorization": "***"' in request_log and '"api_key": ["***"]' in request_log
