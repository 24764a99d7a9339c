"""The secret scan itself: a key planted where tests leave data is found, in every form it may take there."""

import base64
import gzip
import logging
import os
import re
import sqlite3
import subprocess
import sys
from types import SimpleNamespace
from urllib.parse import quote

import duckdb
import pytest

from scholar_pipeline_tests.conftest import REPO_ROOT
from scholar_pipeline_tests.secret_scan import MIN_KEY_LENGTH, Needles, SecretScan, scan_text, scan_tree

KEY = "sk-planted/key+0123456789"  # '/' and '+' so that its URL-encoded forms differ from it
NEEDLES = Needles({KEY: {"OPENALEX_API_KEY"}})


def found(tmp_path) -> list[tuple[str, str, str]]:
    return [(f.where, f.owner, f.encoding) for f in scan_tree(tmp_path, NEEDLES).findings]


def test_a_file_without_keys_passes(tmp_path):
    (tmp_path / "notes.txt").write_text("api_key=*** and nothing else\n")
    (tmp_path / "page.json.gz").write_bytes(gzip.compress(b'{"meta": {"request": "/works?api_key=***"}}'))
    result = scan_tree(tmp_path, NEEDLES)
    assert result.findings == [] and result.files == 2 and result.decompressed == 1


def test_a_key_in_a_gzip_file_is_found_decompressed(tmp_path):
    (tmp_path / "landing").mkdir()
    (tmp_path / "landing" / "ab12.gz").write_bytes(gzip.compress(b"{}\n" + f'{{"request": "/works?api_key={KEY}"}}'.encode()))
    assert found(tmp_path) == [("landing/ab12.gz (decompressed) line 2", "OPENALEX_API_KEY", "plain")]


def test_a_key_in_a_truncated_gzip_file_is_found_up_to_the_damage(tmp_path):
    whole = gzip.compress(f"api_key={KEY}\n".encode() + bytes(range(256)) * 400)
    (tmp_path / "damaged.gz").write_bytes(whole[: len(whole) // 2])
    assert ("damaged.gz (decompressed) line 1", "OPENALEX_API_KEY", "plain") in found(tmp_path)


def test_a_key_url_encoded_in_a_text_file_is_found(tmp_path):
    (tmp_path / "compute.err").write_text(f"first line\nGET /works?api_key={quote(KEY, safe='')}&page=2 failed\n")
    assert found(tmp_path) == [("compute.err line 2", "OPENALEX_API_KEY", "URL-encoded")]


def test_a_key_inside_base64_is_found_at_any_alignment(tmp_path):
    for prefix in ("", "u:", "us:", "user:"):
        (tmp_path / f"auth{len(prefix)}.txt").write_bytes(b"Authorization: Basic " + base64.b64encode(f"{prefix}{KEY}".encode()))
    assert {(where, encoding) for where, _, encoding in found(tmp_path)} == {(f"auth{n}.txt line 1", "base64") for n in (0, 2, 3, 5)}


def test_a_key_in_a_sqlite_row_is_found(tmp_path):
    with sqlite3.connect(tmp_path / "index.db") as con:  # as Dagster's event log stores an event: JSON text
        con.execute("CREATE TABLE event_logs (id INTEGER PRIMARY KEY, event TEXT)")
        con.executemany("INSERT INTO event_logs (event) VALUES (?)", [('{"message": "ok"}',), (f'{{"message": "GET /works?api_key={KEY}"}}',)])
    con.close()
    assert ("index.db: table event_logs, column event, row 2", "OPENALEX_API_KEY", "plain") in found(tmp_path)


def test_a_key_in_a_gzip_blob_or_split_across_hishel_chunks_is_found(tmp_path):
    with sqlite3.connect(tmp_path / "responses.sqlite") as con:
        con.execute("CREATE TABLE blobs (data BLOB)")
        con.execute("INSERT INTO blobs VALUES (?)", [gzip.compress(f"echo {KEY}".encode())])
        con.execute("CREATE TABLE streams (entry_id BLOB, chunk_number INTEGER, chunk_data BLOB)")
        body = f"...api_key={KEY}...".encode()
        con.executemany("INSERT INTO streams VALUES (?, ?, ?)", [(b"\x01", 0, body[:12]), (b"\x01", 1, body[12:])])
    con.close()
    places = [where for where, _, _ in found(tmp_path)]
    assert "responses.sqlite: table blobs, column data, row 1" in places
    assert "responses.sqlite: table streams, entry 01 (body chunks joined)" in places


def test_a_key_in_a_duckdb_table_is_found_through_duckdb(tmp_path):
    with duckdb.connect(str(tmp_path / "scholar.duckdb")) as con:
        con.execute("CREATE TABLE provenance (run_id VARCHAR, request_urls VARCHAR[], pages INTEGER)")
        con.execute("INSERT INTO provenance SELECT 'run-' || i, ['http://sim/works?page=' || i], i FROM range(5000) t(i)")
        con.execute("INSERT INTO provenance VALUES ('run-x', ['http://sim/works?api_key=' || ?], 1)", [KEY])
    assert ("scholar.duckdb: table main.provenance, column request_urls", "OPENALEX_API_KEY", "plain") in found(tmp_path)


def test_a_key_in_a_parquet_export_is_found_through_duckdb(tmp_path):
    with duckdb.connect() as con:  # Parquet compresses strings too
        con.execute(f"COPY (SELECT 'http://sim/works?api_key=' || ? AS url FROM range(3)) TO '{tmp_path / 'works.parquet'}' (COMPRESSION zstd)", [KEY])
    assert ("works.parquet, column url (3 rows)", "OPENALEX_API_KEY", "plain") in found(tmp_path)


def test_an_unreadable_database_is_scanned_as_bytes_and_said(tmp_path):
    (tmp_path / "broken.db").write_bytes(b"SQLite format 3\x00" + b"\x00" * 80 + f"api_key={KEY}".encode())
    result = scan_tree(tmp_path, NEEDLES)
    assert [(f.where, f.encoding) for f in result.findings] == [("broken.db (raw bytes)", "plain")]
    assert len(result.problems) == 1 and "broken.db" in result.problems[0] and KEY not in result.problems[0]
    (tmp_path / "broken.db").unlink()  # else the session's own scan says it could not read it


def test_a_key_in_a_captured_log_line_is_found(caplog):
    logging.getLogger("scholar_pipeline").warning("retrying %s", f"http://sim/works?api_key={quote(KEY, safe='')}")
    [finding] = scan_text("first line\n" + caplog.text, "test report x: Captured log call", NEEDLES)
    assert (finding.where, finding.owner, finding.encoding) == ("test report x: Captured log call line 2", "OPENALEX_API_KEY", "URL-encoded")
    assert KEY not in str(finding) and KEY not in repr(finding)


def test_the_plugin_collects_keys_set_during_a_test_ignores_short_ones_and_scans_reports(pytestconfig, monkeypatch):
    # The session's own scan sees this key too (it is in OPENALEX_API_KEY during this test), so no file may hold it.
    key = "sk-set-by-a-test-0123456789"
    plugin = SecretScan(pytestconfig, ["OPENALEX_API_KEY", "CORE_API_KEY"], {"SPRINGER_NATURE_API_KEY": "placeholder-springer-key"})
    monkeypatch.setenv("OPENALEX_API_KEY", key)
    monkeypatch.delenv("CORE_API_KEY", raising=False)
    plugin._see_environment()
    plugin._add("x" * (MIN_KEY_LENGTH - 1), "CORE_API_KEY")  # not through the environment, which the session's scan reads too
    assert plugin.keys == {key: {"OPENALEX_API_KEY"}, "placeholder-springer-key": {"SPRINGER_NATURE_API_KEY"}}
    assert plugin.short == {"x" * (MIN_KEY_LENGTH - 1)}

    report = pytest.TestReport("t.py::test_x", ("t.py", 1, "test_x"), {}, "passed", None, "call",
                               sections=[("Captured stdout call", f"GET /works?api_key={key}\n"), ("Captured stderr call", "ok\n")])
    plugin.pytest_runtest_logreport(report)
    plugin.pytest_runtest_logreport(report)  # the sections recur in the next phase's report: counted once
    assert [str(f) for f in plugin.findings()] == ["test report t.py::test_x: Captured stdout call line 1: the key of OPENALEX_API_KEY (plain)"]


@pytest.mark.parametrize("planted", [b"placeholder-springer-key", b""])
def test_a_finding_fails_the_session_and_the_summary_says_what_was_scanned(pytestconfig, tmp_path, planted):
    plugin = SecretScan(pytestconfig, [], {"SPRINGER_NATURE_API_KEY": "placeholder-springer-key"})
    (tmp_path / "out.txt").write_bytes(b"key: " + planted)

    class Session:
        exitstatus = pytest.ExitCode.OK

    class Factory:
        _basetemp = tmp_path

    plugin.config = type("Config", (), {"_tmp_path_factory": Factory, "pluginmanager": pytestconfig.pluginmanager})()
    plugin.pytest_sessionfinish(Session)
    lines = []
    plugin.pytest_terminal_summary(type("Reporter", (), {"write_line": lambda self, line, **_: lines.append(line),
                                                          "write_sep": lambda self, sep, title, **_: lines.append(title)})())
    assert Session.exitstatus == (pytest.ExitCode.TESTS_FAILED if planted else pytest.ExitCode.OK)
    assert lines[-1].startswith("secret scan: 1 keys (plain, URL-encoded, JSON-escaped, base64) in 1 files (0 databases, 0 gzip) under ") and "test reports" in lines[-1]
    assert f"; {1 if planted else 0} found" in lines[-1]
    if planted:
        assert lines[1] == "out.txt line 1: the key of SPRINGER_NATURE_API_KEY (plain)"
    assert not any("placeholder-springer-key" in line for line in lines)


@pytest.mark.writes_secret_on_purpose("planted/*")
def test_files_a_marked_test_names_are_left_out_and_only_those(pytestconfig, request, tmp_path, monkeypatch):
    # The session's own scan must leave planted/ out too: this key is in OPENALEX_API_KEY during this test.
    key = "sk-written-on-purpose-0123456789"
    monkeypatch.setenv("OPENALEX_API_KEY", key)
    (tmp_path / "planted").mkdir()
    (tmp_path / "planted" / "key.txt").write_text(key)
    (tmp_path / "other.txt").write_text("no key here")
    plugin = SecretScan(pytestconfig, ["OPENALEX_API_KEY"])
    plugin._note_exclusion(request.node)
    assert plugin.excluded(tmp_path / "planted" / "key.txt") and not plugin.excluded(tmp_path / "other.txt")
    result = scan_tree(tmp_path, plugin.needles(), plugin.excluded)
    assert result.files == 1 and result.findings == []


def test_a_key_of_regular_expression_characters_is_found_in_a_table_as_it_is_written(tmp_path):
    """A table is first passed over with one regular expression of every form: each is matched as written."""
    key = r"k3y.*with(regex)[chars]?|\d+$^end"
    with duckdb.connect(str(tmp_path / "scholar.duckdb")) as con:
        con.execute("CREATE TABLE u AS SELECT ? AS v", [f"said {key} here"])
    hits = [(f.where, f.encoding) for f in scan_tree(tmp_path, Needles({key: {"SOME_KEY"}})).findings]
    assert ("scholar.duckdb: table main.u, column v", "plain") in hits


INNER_CONFTEST = """
from scholar_pipeline_tests.secret_scan import SecretScan

def pytest_configure(config):
    config.pluginmanager.register(SecretScan(config, ["OPENALEX_API_KEY"]), "secret_scan")
"""
INNER_TESTS = """
import os
import pytest

@pytest.mark.parametrize("n", range(6))
def test_each_gets_a_key_of_its_own_one_writes_it_one_prints_it(tmp_path, monkeypatch, n):
    monkeypatch.setenv("OPENALEX_API_KEY", f"sk-handed-over-by-a-worker-{n}-0123")
    if n == WRITER:
        (tmp_path / "out.txt").write_text("token=" + os.environ["OPENALEX_API_KEY"])
    if n == PRINTER:
        print("token=" + os.environ["OPENALEX_API_KEY"])
"""


@pytest.mark.slow
@pytest.mark.parametrize("writer, printer", [(3, 4), (-1, -1)])
def test_under_xdist_the_controller_scans_every_workers_files_for_every_workers_keys(tmp_path, writer, printer):
    """Keys set by tests on two workers: a key written to a file or printed is found, and said at the controller."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "conftest.py").write_text(INNER_CONFTEST)
    (project / "test_inner.py").write_text(INNER_TESTS.replace("WRITER", str(writer)).replace("PRINTER", str(printer)))
    env = {name: value for name, value in os.environ.items() if name != "OPENALEX_API_KEY"}
    env["PYTHONPATH"] = str(REPO_ROOT)
    result = subprocess.run([sys.executable, "-m", "pytest", "-n", "2", "-p", "no:cacheprovider", "-q",
                             f"--basetemp={tmp_path / 'inner'}", str(project)], cwd=project, env=env,
                            capture_output=True, text=True, timeout=240)
    summary = [line for line in result.stdout.splitlines() if line.startswith("secret scan: 6 keys")]  # every worker's
    reports = re.search(r" and (\d+) test reports", summary[0] if summary else "")
    assert reports and int(reports[1]) >= 18, result.stdout[-3000:]  # each worker's: 6 tests x 3 phases at least
    if writer >= 0:
        assert result.returncode == 1 and "; 2 found," in summary[0], result.stdout[-3000:]
        assert re.search(r"^popen-gw[01]/test_each_gets_a_key_of_its_ow[^/]*/out\.txt line 1: the key of OPENALEX_API_KEY "
                         r"\(plain\)$", result.stdout, re.M), result.stdout[-3000:]
        assert re.search(r"^test report \S+test_each_gets_a_key_of_its_own_one_writes_it_one_prints_it\[4\]: Captured stdout "
                         r"call line 1: the key of OPENALEX_API_KEY \(plain\)$", result.stdout, re.M), result.stdout[-3000:]
    else:
        assert result.returncode == 0 and "; 0 found," in summary[0], result.stdout[-3000:]
    assert "sk-handed-over-by-a-worker" not in result.stdout + result.stderr


def _worker(worker_id: str, keys: dict | None, silent: tuple[str, ...] = ()) -> SimpleNamespace:
    output = {} if keys is None else {"secret_scan": {"keys": keys, "short": [], "excluded": [], "silent": list(silent),
                                                      "findings": []}}
    return SimpleNamespace(gateway=SimpleNamespace(id=worker_id), workeroutput=output)


def test_an_xdist_controller_scans_held_reports_for_keys_a_worker_handed_over_later(pytestconfig, monkeypatch):
    """A report reaches the controller before the key its test used (workers hand their keys over as they end): the
    controller holds the reports and scans them once every worker's keys are in; a silent test's are left out, and a
    worker that never handed over is a finding."""
    key = "sk-seen-by-another-worker-0123456789"
    plugin = SecretScan(pytestconfig, [])
    monkeypatch.setattr(plugin, "_controls_workers", lambda: True)
    for nodeid in ("t.py::test_loud", "t.py::test_silent"):
        plugin.pytest_runtest_logreport(pytest.TestReport(nodeid, ("t.py", 1, nodeid), {}, "passed", None, "call",
                                                          sections=[("Captured stdout call", f"ok\nGET /?api_key={key}\n")]))
    assert plugin.findings() == [] and plugin.reports == 2  # held, not yet scanned
    for worker in ("gw0", "gw1", "gw2"):
        plugin.pytest_testnodeready(_worker(worker, None))
    plugin.pytest_testnodedown(_worker("gw0", {key: ["OPENALEX_API_KEY"]}, silent=("t.py::test_silent",)), None)
    plugin.pytest_testnodedown(_worker("gw1", {}), None)
    plugin.pytest_testnodedown(_worker("gw2", None), "crashed")
    plugin._finish_workers()
    plugin._scan_held()
    assert [str(f) for f in plugin.findings()] == [
        "test report t.py::test_loud: Captured stdout call line 2: the key of OPENALEX_API_KEY (plain)",
        "worker gw2 (ended without handing over its keys): the key of ? (?)"]
