"""Suite-wide secret scan: no key a test used may be anywhere the tests left data.

A pytest plugin (`SecretScan`, registered by conftest.py) that, over the whole session,
- collects the keys: every value in a secret environment variable while a test's setup, call or teardown runs
  (so `monkeypatch.setenv` values are seen before they are undone), plus fixed keys such as the simulator's
  placeholders; values shorter than `MIN_KEY_LENGTH` are ignored (and counted), since they would match by chance;
- scans every test report as it comes: captured stdout, stderr and log sections and the failure text;
- at session end scans every file under this session's base temp directory, which holds every test's home,
  DAGSTER_HOME (event log, run and schedule storage), landing zone, HTTP cache and DuckDB file. It reads what is
  stored, decompressed: gzip decompressed, SQLite value by value (hishel's body chunks joined per entry), DuckDB
  and Parquet column by column through duckdb (DuckDB compresses strings), any other file as bytes;
- fails the session on a finding, printing where, whose key and in which form, never the key itself.

Under pytest-xdist each worker collects its tests' keys and exclusions and scans its own reports, then hands all
that to the controller (`workeroutput`), whose base temp directory holds every worker's: the controller scans the
files once, for every worker's keys.

A key is looked for as is, URL-encoded (`masking.secret_forms`), JSON-escaped and base64-encoded at any alignment
(so it is found inside `base64("user:" + key)` too).
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import os
import re
import sqlite3
import stat
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from urllib.parse import quote, quote_plus

import duckdb
import pyarrow as pa
import pytest

from scholar_pipeline.client.masking import secret_forms

MIN_KEY_LENGTH = 8  # a shorter value would match ordinary bytes by chance
MARKER = "writes_secret_on_purpose"
SQLITE_MAGIC = b"SQLite format 3\x00"
GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"
NEWLINE = b"\n"
HELD_BATCH = 2000  # report texts per RE2 pass on an xdist controller
REGEX_FORMS = 1000  # needle forms per regular expression: 4,000 keys' forms in one pass past RE2's memory budget
# DuckDB column types whose values can hold text; the others (numbers, dates, booleans, UUIDs) cannot hold a key.
_TEXT_TYPES = ("VARCHAR", "JSON", "BLOB", "BIT", "ENUM", "MAP", "UNION")


# --- what is looked for ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Needle:
    form: bytes
    owner: str  # the environment variable(s) the key was in, e.g. "OPENALEX_API_KEY"
    encoding: str  # "plain", "URL-encoded", "base64", ...

    def __repr__(self) -> str:  # never the key itself
        return f"Needle({self.owner}, {self.encoding})"


def _base64_cores(value: bytes) -> set[bytes]:
    """The base64 characters that encode `value` alone, at each of the three alignments it can have in a longer
    encoded string (characters that also encode a neighbouring byte are left off)."""
    cores = set()
    for shift in range(3):
        encoded = base64.b64encode(b"\x00" * shift + value)
        cores.add(encoded[-(-8 * shift // 6): 8 * (shift + len(value)) // 6])
    return cores | {core.translate(bytes.maketrans(b"+/", b"-_")) for core in cores}


def key_forms(key: str) -> dict[bytes, str]:
    """Every form of `key` the scan looks for, each with the name of its encoding."""
    names: dict[str, str] = {}
    for form, encoding in ((key, "plain"), (quote(key, safe=""), "URL-encoded"), (quote_plus(key), "URL-encoded (quote_plus)")):
        names.setdefault(form, encoding)
    forms: dict[bytes, str] = {}
    for form in sorted(secret_forms(key), key=lambda f: f != key):
        forms.setdefault(form.encode(), names.get(form, "quoted"))
    forms.setdefault(json.dumps(key)[1:-1].encode(), "JSON-escaped")
    for core in sorted(_base64_cores(key.encode())):
        forms.setdefault(core, "base64")
    return forms


class Needles:
    """The forms of a set of keys; `find` says which occur in a buffer and how often."""

    def __init__(self, keys: Mapping[str, Iterable[str]]):
        """`keys`: key value to the names of the variables it was in."""
        self.keys = len(keys)
        self.needles = [Needle(form, ", ".join(sorted(owners)), encoding)
                        for key, owners in keys.items() for form, encoding in key_forms(key).items()]

    def __bool__(self) -> bool:
        return bool(self.needles)

    def find(self, data: bytes) -> list[tuple[Needle, int, int]]:
        """(needle, occurrences, offset of the first) for each needle in `data`."""
        hits = []
        for needle in self.needles:
            first = data.find(needle.form)
            if first >= 0:
                hits.append((needle, data.count(needle.form), first))
        return hits


# --- what is found -----------------------------------------------------------------------------------------------

@dataclass(frozen=True, order=True)
class Finding:
    where: str  # a file and a place in it, or a test report and its section
    owner: str  # whose key: the environment variable(s) it was in
    encoding: str  # in which form
    count: int = 1

    def __str__(self) -> str:
        times = f", {self.count} times" if self.count > 1 else ""
        return f"{self.where}: the key of {self.owner} ({self.encoding}{times})"


@dataclass
class TreeScan:
    findings: list[Finding] = field(default_factory=list)
    files: int = 0
    databases: int = 0  # SQLite, DuckDB and Parquet files read value by value
    decompressed: int = 0  # gzip files read decompressed
    problems: list[str] = field(default_factory=list)  # files that could not be read as what they are (read as bytes)


def scan_bytes(data: bytes, where: str, needles: Needles, lines: bool = True) -> list[Finding]:
    findings = []
    for needle, count, first in needles.find(data):
        place = f"{where} line {data.count(NEWLINE, 0, first) + 1}" if lines else where
        findings.append(Finding(place, needle.owner, needle.encoding, count))
    return findings


def scan_text(text: str | bytes, where: str, needles: Needles) -> list[Finding]:
    """A test report's section, an error message: text held in memory."""
    data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
    return scan_bytes(data, where, needles)


def gunzip(data: bytes) -> bytes:
    """As much of a gzip stream (or of several concatenated) as can be decompressed: a damaged or truncated file
    still gives up what it holds up to the damage."""
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error):
        out, rest = [], data
        while rest.startswith(GZIP_MAGIC):
            stream = zlib.decompressobj(16 + zlib.MAX_WBITS)
            try:
                out.append(stream.decompress(rest))
            except zlib.error:
                break
            rest = stream.unused_data
        return b"".join(out)


def decoded(data: bytes) -> bytes | None:
    """`data` decompressed, when it is a gzip or zlib stream."""
    if data.startswith(GZIP_MAGIC):
        return gunzip(data)
    if len(data) > 2 and data[0] == 0x78 and (data[0] << 8 | data[1]) % 31 == 0:
        with contextlib.suppress(zlib.error):
            return zlib.decompress(data)
    return None


def scan_file(path: Path, needles: Needles, name: str | None = None) -> tuple[list[Finding], str]:
    """The findings in one file, read as what it is, and what it was read as ("sqlite", "duckdb", "parquet",
    "gzip", "bytes"). `name` is how findings name the file (default: its path)."""
    name = name or str(path)
    data = path.read_bytes()
    if data.startswith(SQLITE_MAGIC):
        return scan_bytes(data, f"{name} (raw bytes)", needles, lines=False) + scan_sqlite(path, name, needles), "sqlite"
    if data[8:12] == b"DUCK":
        return scan_bytes(data, f"{name} (raw bytes)", needles, lines=False) + scan_duckdb(path, name, needles), "duckdb"
    if data.startswith(PARQUET_MAGIC) and data.endswith(PARQUET_MAGIC):
        return scan_bytes(data, f"{name} (raw bytes)", needles, lines=False) + scan_parquet(path, name, needles), "parquet"
    findings = scan_bytes(data, name, needles)
    if data.startswith(GZIP_MAGIC):
        return findings + scan_bytes(gunzip(data), f"{name} (decompressed)", needles), "gzip"
    return findings, "bytes"


class UnreadableDatabase(Exception):
    """A database file that could not be opened or read as one; it has been scanned as bytes."""


def scan_sqlite(path: Path, name: str, needles: Needles) -> list[Finding]:
    """Every text and blob value of every table, each also decompressed when it is gzip or zlib; hishel's response
    bodies (table `streams`, split in chunks) joined per cache entry. Values of one column are looked at together
    first, and row by row only where something was found."""
    findings: list[Finding] = []
    try:
        with contextlib.closing(sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True)) as con:
            tables = {t: [row[1] for row in con.execute(f"PRAGMA table_info({_sql_name(t)})")]
                      for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()}
            con.text_factory = bytes  # values as stored, also text that is not valid UTF-8
            for table, columns in tables.items():
                for column in columns:
                    findings += _scan_sqlite_column(con, name, table, column, needles)
                if table == "streams" and {"entry_id", "chunk_number", "chunk_data"} <= set(columns):
                    findings += _scan_hishel_bodies(con, name, needles)
    except sqlite3.Error as error:
        raise UnreadableDatabase(f"{name}: not readable as SQLite ({error})") from error
    return findings


def _sql_name(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _scan_sqlite_column(con: sqlite3.Connection, name: str, table: str, column: str, needles: Needles) -> list[Finding]:
    t, c = _sql_name(table), _sql_name(column)
    row_id = "rowid" if _has_rowid(con, table) else "NULL"  # a WITHOUT ROWID table: rows are numbered as read
    rows = con.execute(f"SELECT {row_id}, {c} FROM {t} WHERE typeof({c}) IN ('text', 'blob')").fetchall()
    readable = [(i if rowid is None else rowid, form) for i, (rowid, value) in enumerate(rows)
                for form in (bytes(value), decoded(bytes(value))) if form]
    if not needles.find(b"\x00".join(form for _, form in readable)):
        return []
    places: dict[Needle, list[tuple[int, int]]] = {}
    for rowid, form in readable:
        for needle, count, _ in needles.find(form):
            places.setdefault(needle, []).append((rowid, count))
    findings = []
    for needle, found in places.items():
        more = f" (and {len(found) - 1} more rows)" if len(found) > 1 else ""
        findings.append(Finding(f"{name}: table {table}, column {column}, row {found[0][0]}{more}", needle.owner,
                                needle.encoding, sum(count for _, count in found)))
    return findings


def _has_rowid(con: sqlite3.Connection, table: str) -> bool:
    try:
        con.execute(f"SELECT rowid FROM {_sql_name(table)} LIMIT 1")
        return True
    except sqlite3.OperationalError:
        return False


def _scan_hishel_bodies(con: sqlite3.Connection, name: str, needles: Needles) -> list[Finding]:
    bodies: dict[bytes, list[bytes]] = {}
    for entry, chunk in con.execute("SELECT entry_id, chunk_data FROM streams ORDER BY entry_id, chunk_number"):
        bodies.setdefault(bytes(entry), []).append(bytes(chunk))
    findings = []
    for entry, chunks in bodies.items():
        body = b"".join(chunks)
        where = f"{name}: table streams, entry {entry.hex()} (body chunks joined)"
        findings += scan_bytes(body, where, needles, lines=False)
        if (plain := decoded(body)) is not None:
            findings += scan_bytes(plain, f"{where}, decompressed", needles, lines=False)
    return findings


def scan_duckdb(path: Path, name: str, needles: Needles) -> list[Finding]:
    """Every column of every table that can hold text, read through duckdb (read-only), as VARCHAR."""
    try:
        with duckdb.connect(str(path), read_only=True) as con:
            columns = con.execute(
                "SELECT c.table_catalog, c.table_schema, c.table_name, c.column_name, c.data_type "
                "FROM information_schema.columns c JOIN information_schema.tables t USING (table_catalog, table_schema, table_name) "
                "WHERE t.table_type = 'BASE TABLE' AND c.table_catalog NOT IN ('system', 'temp') ORDER BY ALL").fetchall()
            tables: dict[tuple[str, str, str], list[tuple[str, str]]] = {}
            for catalog, schema, table, column, data_type in columns:
                tables.setdefault((catalog, schema, table), []).append((column, data_type))
            return [finding for (catalog, schema, table), table_columns in tables.items()
                    for finding in _scan_relation(con, f"{_sql_name(catalog)}.{_sql_name(schema)}.{_sql_name(table)}",
                                                  table_columns, f"{name}: table {schema}.{table}", needles)]
    except duckdb.Error as error:
        raise UnreadableDatabase(f"{name}: not readable as DuckDB ({error})") from error


def scan_parquet(path: Path, name: str, needles: Needles) -> list[Finding]:
    try:
        with duckdb.connect() as con:
            relation = f"read_parquet('{str(path).replace(chr(39), chr(39) * 2)}')"
            columns = [(column, data_type) for column, data_type, *_ in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()]
            return _scan_relation(con, relation, columns, name, needles)
    except duckdb.Error as error:
        raise UnreadableDatabase(f"{name}: not readable as Parquet ({error})") from error


def _scan_relation(con, relation: str, columns: list[tuple[str, str]], where: str, needles: Needles) -> list[Finding]:
    """The columns of a table that can hold text: all of a row together first (one query), then, where a key was
    found, column by column, so that a clean table costs one scan."""
    text_columns = [_sql_name(column) for column, data_type in columns if any(t in data_type.upper() for t in _TEXT_TYPES)]
    if not needles or not text_columns:
        return []
    row = ", ".join(f"coalesce(CAST({c} AS VARCHAR), '')" for c in text_columns)
    if not _any_row_holds(con, f"SELECT concat_ws(chr(0), {row}) AS v FROM {relation}", needles):
        return []
    findings = []
    for (column, _), c in zip([(n, t) for n, t in columns if _sql_name(n) in text_columns], text_columns):
        counts = _rows_holding(con, f"SELECT CAST({c} AS VARCHAR) AS v FROM {relation}", needles)
        findings += [Finding(f"{where}, column {column}" + (f" ({rows} rows)" if rows > 1 else ""), needle.owner, needle.encoding, rows)
                     for needle, rows in zip(needles.needles, counts) if rows]
    return findings


def _any_row_holds(con, select: str, needles: Needles) -> bool:
    """Whether any row of `select` holds any needle: one pass of one regular expression (RE2 matches an alternation of
    literals in linear time), where counting each needle apart would test every row once per needle."""
    return any(con.execute(f"SELECT count(*) FROM ({select}) WHERE regexp_matches(v, $1)", [p]).fetchone()[0]
               for p in _patterns(needles))


def _patterns(needles: Needles) -> list[str]:
    """Every needle form in alternations for RE2, each within its memory budget."""
    forms = [re.escape(n.form.decode("utf-8", "replace")) for n in needles.needles]
    return ["|".join(forms[i:i + REGEX_FORMS]) for i in range(0, len(forms), REGEX_FORMS)]


def _rows_holding(con, select: str, needles: Needles) -> tuple[int, ...]:
    """For each needle, how many rows of `select` (one VARCHAR column `v`) hold it."""
    forms = [n.form.decode("utf-8", "replace") for n in needles.needles]
    counts = ", ".join(f"count(*) FILTER (WHERE strpos(v, ${i + 1}) > 0)" for i in range(len(forms)))
    return con.execute(f"SELECT {counts} FROM ({select})", forms).fetchone()


def regular_files(root: Path) -> Iterator[Path]:
    """Every regular file under `root`; symbolic links (which point out of it) and sockets are left out."""
    for directory, _, names in os.walk(root):
        for name in sorted(names):
            path = Path(directory, name)
            with contextlib.suppress(OSError):
                if stat.S_ISREG(path.lstat().st_mode):
                    yield path


def scan_tree(root: Path, needles: Needles, excluded=lambda path: False) -> TreeScan:
    """Every file under `root` not `excluded`, each read as what it is; findings name files relative to `root`."""
    result = TreeScan()
    for path in regular_files(root):
        if excluded(path):
            continue
        name = str(path.relative_to(root))
        result.files += 1
        try:
            findings, kind = scan_file(path, needles, name)
        except UnreadableDatabase as error:
            result.problems.append(str(error))
            findings, kind = scan_bytes(path.read_bytes(), f"{name} (raw bytes)", needles, lines=False), "bytes"
        except OSError as error:
            result.problems.append(f"{name}: {error}")
            continue
        result.findings += findings
        result.databases += kind in ("sqlite", "duckdb", "parquet")
        result.decompressed += kind == "gzip"
    return result


# --- the plugin --------------------------------------------------------------------------------------------------

class SecretScan:
    """The session-wide scan as a pytest plugin; see the module docstring.

    `secret_env`: the variables whose values are keys; `fixed_keys`: keys known up front (variable to value).
    A test marked `@pytest.mark.writes_secret_on_purpose("glob", ...)` has the files under its `tmp_path` matching
    a glob (all of them without one) left out of the scan; with `output=True` its reports too. Its keys are still
    looked for everywhere else.
    """

    def __init__(self, config: pytest.Config, secret_env: Iterable[str], fixed_keys: Mapping[str, str] = {}):
        self.config = config
        self.secret_env = tuple(secret_env)
        self.keys: dict[str, set[str]] = {}
        self.short: set[str] = set()
        self._needles: tuple[int, Needles] | None = None
        for variable, value in fixed_keys.items():
            self._add(value, variable)
        self._see_environment()  # what the session starts with (a developer's own key, passed on to subprocesses)
        self.excluded_files: list[tuple[Path, tuple[str, ...]]] = []  # a test's tmp_path and globs under it
        self.silent_nodeids: set[str] = set()  # tests whose reports are not scanned
        self.report_findings: list[Finding] = []
        self._held: dict[tuple[str, str], bytes] = {}  # an xdist controller's reports: (test, place) to zlib'd text
        self._workers: set[str] = set()  # an xdist controller's workers, and those that handed over what they saw
        self._handed: set[str] = set()
        self.reports = 0
        self.tree: TreeScan | None = None
        self.root: Path | None = None
        self.seconds = 0.0

    def _add(self, value: str | None, variable: str) -> None:
        if not value:
            return
        if len(value) < MIN_KEY_LENGTH:
            self.short.add(value)
        else:
            self.keys.setdefault(value, set()).add(variable)

    def _see_environment(self) -> None:
        for variable in self.secret_env:
            self._add(os.environ.get(variable), variable)

    def needles(self) -> Needles:
        """The forms of every key seen so far (built again only when a key was added)."""
        seen = sum(len(owners) for owners in self.keys.values())
        if self._needles is None or self._needles[0] != seen:
            self._needles = (seen, Needles(self.keys))
        return self._needles[1]

    # Keys: read before and after each phase, so that values set and undone within it are seen.
    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_setup(self, item):
        self._see_environment()
        try:
            return (yield)
        finally:
            self._see_environment()
            self._note_exclusion(item)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item):
        self._see_environment()
        try:
            return (yield)
        finally:
            self._see_environment()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_teardown(self, item):
        self._see_environment()
        try:
            return (yield)
        finally:
            self._see_environment()

    def _note_exclusion(self, item) -> None:
        marker = item.get_closest_marker(MARKER)
        if marker is None:
            return
        globs = tuple(marker.args)
        tmp_path = getattr(item, "funcargs", {}).get("tmp_path")
        if tmp_path is not None:
            self.excluded_files.append((Path(tmp_path), globs))
        if marker is not None and marker.kwargs.get("output"):
            self.silent_nodeids.add(item.nodeid)

    def excluded(self, path: Path) -> bool:
        for directory, globs in self.excluded_files:
            if path.is_relative_to(directory):
                relative = str(path.relative_to(directory))
                if not globs or any(fnmatch(relative, g) for g in globs):
                    return True
        return False

    # Reports: captured output and failure text, scanned as they come; on an xdist controller, held and scanned at
    # the end, once every worker's keys are known (a worker scans its own reports for its own keys only).
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.nodeid not in self.silent_nodeids:
            self._report(report, report.nodeid, report.when)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        self._report(report, report.nodeid or "the session", "collect")

    def _report(self, report, nodeid: str, when: str) -> None:
        """Sections carry their phase in their title ("Captured log call") and recur in the reports of the later
        phases, so findings in them are named by title only, and counted once."""
        self.reports += 1
        texts = [(f"test report {nodeid}: {title}", content) for title, content in report.sections]
        if report.failed:
            texts.append((f"test report {nodeid}: failure text ({when})", report.longreprtext))
        self._texts(nodeid, texts)

    def pytest_warning_recorded(self, warning_message, when, nodeid, location) -> None:
        self._texts(nodeid, [(f"warning in {nodeid or when}", str(warning_message.message))])

    def _texts(self, nodeid: str, texts: list[tuple[str, str]]) -> None:
        if self._controls_workers():
            for place, text in texts:  # compressed: a suite's captured logs are hundreds of MB
                self._held[(nodeid, place)] = zlib.compress(text.encode("utf-8", "surrogateescape"), 1)
            return
        needles = self.needles()
        for place, text in texts:
            self.report_findings += scan_text(text, place, needles)

    def _scan_held(self) -> None:
        """The controller's scan of the reports and warnings the workers sent, for all their keys: one RE2 pass per
        batch finds the few texts that hold any key form, which are then searched key by key."""
        held = [(place, text) for (nodeid, place), text in self._held.items() if nodeid not in self.silent_nodeids]
        needles = self.needles()
        if not needles:
            return
        con = duckdb.connect()
        for start in range(0, len(held), HELD_BATCH):
            batch = [(place, zlib.decompress(text)) for place, text in held[start:start + HELD_BATCH]]
            con.register("held", pa.table({"i": range(len(batch)), "v": [text.decode("utf-8", "replace") for _, text in batch]}))
            hits = {i for pattern in _patterns(needles)
                    for (i,) in con.execute("SELECT i FROM held WHERE regexp_matches(v, $1)", [pattern]).fetchall()}
            for i in sorted(hits):
                self.report_findings += scan_text(batch[i][1], batch[i][0], needles)
            con.unregister("held")

    # pytest-xdist: workers hand over what they saw; the controller scans the reports and the files.
    def _controls_workers(self) -> bool:
        return self.config.pluginmanager.has_plugin("dsession")

    def _handover(self) -> dict:
        """What a worker saw, in the plain types execnet carries."""
        return {"keys": {key: sorted(owners) for key, owners in self.keys.items()}, "short": sorted(self.short),
                "excluded": [(str(directory), list(globs)) for directory, globs in self.excluded_files],
                "silent": sorted(self.silent_nodeids),
                "findings": [(f.where, f.owner, f.encoding, f.count) for f in set(self.report_findings)]}

    @pytest.hookimpl(optionalhook=True)  # an xdist hook, called on the controller as each worker starts
    def pytest_testnodeready(self, node) -> None:
        self._workers.add(node.gateway.id)

    @pytest.hookimpl(optionalhook=True)  # an xdist hook, called on the controller as each worker ends
    def pytest_testnodedown(self, node, error) -> None:
        handed = getattr(node, "workeroutput", {}).get("secret_scan")
        if handed is None:  # a crashed worker: said at the end
            return
        self._handed.add(node.gateway.id)
        for key, owners in handed["keys"].items():
            for owner in owners:
                self._add(key, owner)
        self.short.update(handed["short"])
        self.excluded_files += [(Path(directory), tuple(globs)) for directory, globs in handed["excluded"]]
        self.silent_nodeids.update(handed["silent"])
        self.report_findings += [Finding(*finding) for finding in handed["findings"]]

    def _finish_workers(self) -> None:
        """Wait for every worker to exit (one closing a database at exit would change a file being read), and say
        which ended without handing over its keys: the files cannot then be said clean."""
        nodes = getattr(self.config.pluginmanager.get_plugin("dsession"), "nodemanager", None)
        if nodes is not None:
            nodes.teardown_nodes()
        for worker in sorted(self._workers - self._handed):
            self.report_findings.append(Finding(f"worker {worker} (ended without handing over its keys)", "?", "?"))

    # Files: everything under this session's base temp directory, at the end.
    @pytest.hookimpl(tryfirst=True)  # before the tmpdir plugin removes anything
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if hasattr(self.config, "workerinput"):  # an xdist worker: the controller scans its files
            self.config.workeroutput["secret_scan"] = self._handover()
            return
        started = time.monotonic()
        if self._controls_workers():
            self._finish_workers()
            self._scan_held()
        factory = getattr(self.config, "_tmp_path_factory", None)
        self.root = getattr(factory, "_basetemp", None)  # None: no test asked for a temp directory
        if self.root is not None and self.root.is_dir():
            try:
                self.tree = scan_tree(self.root, self.needles(), self.excluded)
            except Exception as error:  # a scan that did not finish must not pass for a clean one
                self.tree = TreeScan(findings=[Finding(f"{self.root} (scan stopped: {type(error).__name__}: {error})", "?", "?")])
        self.seconds = time.monotonic() - started
        if self.findings() and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def findings(self) -> list[Finding]:
        return sorted(set(self.report_findings)) + (self.tree.findings if self.tree else [])

    def summary(self) -> str:
        tree = self.tree or TreeScan()
        where = (f"under {self.root}" if self.root and self.root.is_dir() else
                 f"(base temp directory {self.root} gone)" if self.root else "(no base temp directory this session)")
        short = f"; {len(self.short)} value(s) shorter than {MIN_KEY_LENGTH} characters not looked for" if self.short else ""
        return (f"secret scan: {len(self.keys)} keys (plain, URL-encoded, JSON-escaped, base64) in {tree.files} files "
                f"({tree.databases} databases, {tree.decompressed} gzip) {where} and {self.reports} test reports{short}; {len(self.findings())} found, {self.seconds:.1f} s")

    def pytest_terminal_summary(self, terminalreporter) -> None:
        findings = self.findings()
        if findings:
            terminalreporter.write_sep("=", f"secret scan: {len(findings)} finding(s), keys where none may be", red=True)
            for finding in findings:
                terminalreporter.write_line(str(finding))
        for problem in self.tree.problems if self.tree else []:
            terminalreporter.write_line(f"secret scan: {problem}; scanned as bytes", yellow=True)
        terminalreporter.write_line(self.summary(), red=bool(findings))
