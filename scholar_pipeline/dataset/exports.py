"""The dataset's exports: Parquet, CSV, RIS and BibTeX files under `$SCHOLAR_PIPELINE_HOME/exports/`, and a
`manifest.json` that lets a review cite an export and anyone verify it.

Layout (`EXPORT_LAYOUT`):
    parquet/works/query=<search>/publication_year=<year>/data_0.parquet
    parquet/unique_works/query=<search>/publication_year=<year>/data_0.parquet
    csv/works.csv, csv/unique_works.csv
    unique_works.ris, unique_works.bib
    manifest.json      files (path, table, format, rows, bytes, sha256), table row counts, saved searches covered,
                       generated_at, code and schema versions

Parquet: every file holds all of its columns (the partition columns too), so read it with hive partitioning off
(`read_parquet('exports/parquet/works/**/*.parquet', hive_partitioning=false)`, `pyarrow.dataset.dataset(path)`):
the folder names are for browsing and pruning only, and a path's `NULL` (no publication date) is no type's value.
`publication_year` is an added column, `year(publication_date)`. A unique work belongs to every saved search that
found it, so `parquet/unique_works` holds one row per (saved search, work), its `query` column being the folder's
search: the folder of one search is that search's whole set; `SELECT DISTINCT * EXCLUDE (query, publication_year)`
over all of them gives the table back.

CSV (RFC 4180, UTF-8, header row): nested columns (`authors`, `queries`, `sources`) are JSON text, which DuckDB casts
back (`CAST(CAST(authors AS JSON) AS STRUCT(...)[])`); timestamps are ISO 8601 in UTC (`...Z`); NULL is an empty
cell and an empty string `""`, which `read_csv(..., allow_quoted_nulls=false)` tells apart.

RIS and BibTeX hold `unique_works` for reference managers, one record per work in `work_id` order. Both are
line-based in practice, so a line break inside a value becomes one space; a RIS `UR` writes a URL's `;` as `%3B`
(readers split `UR` on `;`). Authors carry only a display name in
reading order: a person's is split into family and given names (`Ludwig van Beethoven` -> `van Beethoven, Ludwig`,
a trailing `Jr.` kept apart); one with a comma or a word of an organisation is kept whole (`{...}` in BibTeX).
BibTeX values are LaTeX (`{ } % & $ # _ \\ ~ ^ < >` escaped, other characters kept as UTF-8); `doi` and `url` are
verbatim fields (biblatex), where only `{ } \\` are percent-encoded. The entry key is `work_id` itself when it is
made of key-safe characters, else its safe characters and a hash of it: it stays the same across exports.

Every byte is a function of the tables alone, except `generated_at` in the manifest: rows are written in a total
order and DuckDB writes single-threaded (with more threads its Parquet files differ run to run), so two exports of
equal tables have equal file hashes. An export is written in a staging folder beside `exports/` and swapped in
whole: a reader never sees half of one, and a failure leaves the previous export as it was.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb
import filelock
import pyarrow.parquet as pq

from scholar_pipeline.sql import sql_string
from scholar_pipeline.text import NOT_A_PERSONS_NAME

EXPORT_LAYOUT = "exports-v1"  # bump when the layout or a file's flat form changes; recorded in the manifest
MANIFEST = "manifest.json"
# Sort keys first, then every other column: a total order, so equal tables give equal bytes.
WORKS_KEYS = ("query", "provider", "partition_date", "provider_id")
UNIQUE_WORKS_KEYS = ("work_id",)
BATCH_ROWS = 10_000  # rows of unique_works in memory at a time while writing RIS and BibTeX


@dataclass(frozen=True)
class ExportedFile:
    path: str  # relative to the exports folder, with `/`
    table: str
    format: str  # parquet, csv, ris, bibtex
    rows: int
    bytes: int
    sha256: str


@dataclass(frozen=True)
class ProviderCoverage:
    provider: str
    first_partition_date: str
    last_partition_date: str
    rows: int  # rows of `works`


@dataclass(frozen=True)
class SearchCoverage:
    """What an export holds of one saved search: the partition dates its `works` rows span (a day with no
    records has no rows, so the range does not show gaps) and how many unique works it found."""

    query: str
    first_partition_date: str | None
    last_partition_date: str | None
    works_rows: int
    unique_works: int
    providers: list[ProviderCoverage] = field(default_factory=list)


@dataclass(frozen=True)
class ExportManifest:
    layout: str
    generated_at: str
    code_version: str
    schema_version: str
    tables: dict[str, int]  # rows per table
    saved_searches: list[SearchCoverage]
    files: list[ExportedFile]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ExportManifest:
        data = json.loads(text)
        data["saved_searches"] = [
            SearchCoverage(**{**s, "providers": [ProviderCoverage(**p) for p in s["providers"]]}) for s in data["saved_searches"]
        ]
        data["files"] = [ExportedFile(**f) for f in data["files"]]
        return cls(**data)


def write_exports(
    con: duckdb.DuckDBPyConnection, exports_dir: Path, *, code_version: str, schema_version: str,
    generated_at: dt.datetime | None = None,
) -> ExportManifest:
    """Export tables `works` and `unique_works` of `con` to `exports_dir`, replacing the export there at once."""
    if generated_at is not None and generated_at.tzinfo is None:
        raise ValueError("generated_at must carry a time zone (UTC is what the manifest records)")
    generated = (generated_at or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc)
    exports_dir = Path(exports_dir)
    exports_dir.parent.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(exports_dir.parent / f".{exports_dir.name}.lock"):
        _clean_up_after_a_crash(exports_dir)
        staging = Path(tempfile.mkdtemp(prefix=f".{exports_dir.name}-staging-", dir=exports_dir.parent))
        try:
            with _one_snapshot(con), _single_threaded(con):
                manifest = ExportManifest(
                    layout=EXPORT_LAYOUT, generated_at=generated.isoformat(), code_version=code_version,
                    schema_version=schema_version,
                    tables={t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("works", "unique_works")},
                    saved_searches=_coverage(con), files=sorted(_write_files(con, staging), key=lambda f: f.path),
                )
            (staging / MANIFEST).write_text(manifest.to_json(), encoding="utf-8")
            _swap_in(staging, exports_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return manifest


def verify_exports(exports_dir: Path) -> list[str]:
    """What does not match the manifest: a file missing, unlisted, of another size, hash or row count. Empty when
    the export is exactly what was written."""
    exports_dir = Path(exports_dir)
    try:
        manifest = ExportManifest.from_json((exports_dir / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return [f"{exports_dir / MANIFEST} is missing: not an export, or one still being written"]
    except (ValueError, TypeError, KeyError) as error:
        return [f"{exports_dir / MANIFEST} is not a manifest this code reads ({error})"]
    problems = []
    for entry in manifest.files:
        path = exports_dir / entry.path
        if not path.is_file():
            problems.append(f"{entry.path}: missing")
            continue
        size, sha256 = path.stat().st_size, _sha256_file(path)
        if size != entry.bytes:
            problems.append(f"{entry.path}: {size} bytes, the manifest says {entry.bytes}")
        if sha256 != entry.sha256:
            problems.append(f"{entry.path}: sha256 {sha256}, the manifest says {entry.sha256}")
            continue  # a damaged file's row count means nothing (and may not be readable)
        rows = _count_rows(path, entry.format)
        if rows != entry.rows:
            problems.append(f"{entry.path}: {rows} rows, the manifest says {entry.rows}")
    listed = {entry.path for entry in manifest.files} | {MANIFEST}
    problems += [f"{path}: not in the manifest" for path in sorted(_relative_files(exports_dir)) if path not in listed]
    return problems


# --- writing -------------------------------------------------------------------------------------------------


def _write_files(con: duckdb.DuckDBPyConnection, folder: Path) -> list[ExportedFile]:
    works, unique = _columns(con, "works"), _columns(con, "unique_works")
    works_order, unique_order = _order_by(WORKS_KEYS, works), _order_by(UNIQUE_WORKS_KEYS, unique)
    # One row per (saved search, work); a work no search claims still gets a row, in folder query=NULL.
    searches = "list_distinct(queries)"
    per_search = (f"SELECT *, unnest(CASE WHEN len({searches}) > 0 THEN {searches} ELSE [NULL::VARCHAR] END) AS query "
                  "FROM unique_works")
    written = [  # (table, format, the file or folder written)
        ("works", "parquet", _copy_parquet(
            con, f"SELECT *, year(publication_date) AS publication_year FROM works ORDER BY {works_order}",
            folder / "parquet" / "works")),
        ("unique_works", "parquet", _copy_parquet(
            con, f"SELECT *, year(publication_date) AS publication_year FROM ({per_search}) "
                 f"ORDER BY {_order_by(('query',) + UNIQUE_WORKS_KEYS, {'query': 'VARCHAR', **unique})}",
            folder / "parquet" / "unique_works")),
        ("works", "csv", _copy_csv(con, "works", works, works_order, folder / "csv" / "works.csv")),
        ("unique_works", "csv", _copy_csv(con, "unique_works", unique, unique_order, folder / "csv" / "unique_works.csv")),
        *_write_references(con, unique_order, folder / "unique_works.ris", folder / "unique_works.bib"),
    ]
    files = []
    for table, file_format, target in written:
        for path in sorted(target.rglob("*.parquet")) if target.is_dir() else [target]:
            files.append(ExportedFile(path=path.relative_to(folder).as_posix(), table=table, format=file_format,
                                      rows=_count_rows(path, file_format), bytes=path.stat().st_size,
                                      sha256=_sha256_file(path)))
    return files


def _copy_parquet(con: duckdb.DuckDBPyConnection, select: str, folder: Path) -> Path:
    folder.parent.mkdir(parents=True, exist_ok=True)
    con.execute(f"COPY ({select}) TO {sql_string(folder)} (FORMAT parquet, COMPRESSION zstd, "
                "PARTITION_BY (query, publication_year), WRITE_PARTITION_COLUMNS true)")
    return folder


def _copy_csv(con: duckdb.DuckDBPyConnection, table: str, columns: dict[str, str], order: str, path: Path) -> Path:
    """Nested values as JSON text and timestamps in UTC: a cell means the same whatever the session's time zone."""
    cells = []
    for name, type_ in columns.items():
        column = _identifier(name)
        if _is_nested(type_):
            cells.append(f"to_json({column}) AS {column}")
        elif type_ == "TIMESTAMP WITH TIME ZONE":
            cells.append(f"strftime(timezone('UTC', {column}), '%Y-%m-%dT%H:%M:%S.%fZ') AS {column}")
        else:
            cells.append(column)
    path.parent.mkdir(parents=True, exist_ok=True)
    con.execute(f"COPY (SELECT {', '.join(cells)} FROM {table} ORDER BY {order}) TO {sql_string(path)} "
                "(FORMAT csv, HEADER true)")
    return path


def _write_references(con: duckdb.DuckDBPyConnection, order: str, ris: Path, bibtex: Path) -> list[tuple[str, str, Path]]:
    """RIS and BibTeX in one pass over `unique_works`, a batch of rows in memory at a time."""
    reader = con.execute(f"SELECT * FROM unique_works ORDER BY {order}").fetch_record_batch(BATCH_ROWS)
    with ris.open("w", encoding="utf-8", newline="\n") as ris_out, bibtex.open("w", encoding="utf-8", newline="\n") as bib_out:
        for batch in reader:
            for work in batch.to_pylist():
                ris_out.write(ris_record(work) + "\n")
                bib_out.write(bibtex_entry(work) + "\n")
    return [("unique_works", "ris", ris), ("unique_works", "bibtex", bibtex)]


def _coverage(con: duckdb.DuckDBPyConnection) -> list[SearchCoverage]:
    providers: dict[str, list[ProviderCoverage]] = {}
    for query, provider, first, last, rows in con.execute(
        "SELECT query, provider, min(partition_date), max(partition_date), count(*) FROM works "
        "GROUP BY query, provider ORDER BY query, provider"
    ).fetchall():
        providers.setdefault(query, []).append(ProviderCoverage(provider, str(first), str(last), rows))
    found = dict(con.execute(
        "SELECT query, count(DISTINCT work_id) FROM (SELECT work_id, unnest(queries) AS query FROM unique_works) "
        "GROUP BY query"
    ).fetchall())
    return [
        SearchCoverage(
            query=query,
            first_partition_date=min((p.first_partition_date for p in providers.get(query, [])), default=None),
            last_partition_date=max((p.last_partition_date for p in providers.get(query, [])), default=None),
            works_rows=sum(p.rows for p in providers.get(query, [])), unique_works=found.get(query, 0),
            providers=providers.get(query, []),
        )
        for query in sorted(set(providers) | set(found), key=str)
    ]


def _swap_in(staging: Path, exports_dir: Path) -> None:
    """Two renames: between them `exports/` is briefly absent (never half there); a crash between them leaves the
    previous export at `.<name>-previous`, which the next write puts back first."""
    previous = exports_dir.parent / f".{exports_dir.name}-previous"
    if exports_dir.exists():
        exports_dir.rename(previous)
    staging.rename(exports_dir)
    shutil.rmtree(previous, ignore_errors=True)


def _clean_up_after_a_crash(exports_dir: Path) -> None:
    """Runs under the lock, so no other writer owns what it removes."""
    previous = exports_dir.parent / f".{exports_dir.name}-previous"
    if previous.exists():
        if exports_dir.exists():
            shutil.rmtree(previous)
        else:
            previous.rename(exports_dir)
    for staging in exports_dir.parent.glob(f".{exports_dir.name}-staging-*"):
        shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def _one_snapshot(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Every file and count of an export from one snapshot of the tables, also while partitions land meanwhile."""
    try:
        con.execute("BEGIN TRANSACTION")
    except duckdb.TransactionException:  # the caller's open transaction is that snapshot
        yield
        return
    try:
        yield
    finally:
        con.execute("ROLLBACK")  # nothing was changed


@contextmanager
def _single_threaded(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """DuckDB's Parquet bytes depend on how many threads wrote them; the caller's setting comes back after."""
    threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
    con.execute("SET threads = 1")
    try:
        yield
    finally:
        con.execute(f"SET threads = {int(threads)}")


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    """The table's columns as it is now (columns come and go between schema versions), name to DuckDB type."""
    return {name: type_ for name, type_, *_ in con.execute(f"DESCRIBE {table}").fetchall()}


def _order_by(keys: Iterable[str], columns: dict[str, str]) -> str:
    keys = [key for key in keys if key in columns]
    return ", ".join(_identifier(name) for name in keys + [name for name in columns if name not in keys])


def _is_nested(type_: str) -> bool:
    return type_.endswith("]") or type_.startswith(("STRUCT", "MAP", "UNION"))


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# --- reading back --------------------------------------------------------------------------------------------


def _relative_files(folder: Path) -> list[str]:
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as data:
        for chunk in iter(lambda: data.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _count_rows(path: Path, format: str) -> int:
    """Records in one exported file, read the way a consumer reads it (RIS and BibTeX records never span a
    line break inside a value, so their first/last lines count them)."""
    if format == "parquet":
        return pq.read_metadata(path).num_rows
    with path.open(encoding="utf-8", newline="") as text:
        if format == "csv":
            return sum(1 for _ in csv.reader(text)) - 1
        if format == "ris":
            return sum(1 for line in text if line.startswith("ER  -"))
        return sum(1 for line in text if _BIBTEX_ENTRY.match(line))


# --- RIS and BibTeX ------------------------------------------------------------------------------------------

# work_type as providers write it (lower case, spaces as hyphens) to the RIS type and the BibTeX entry type.
WORK_TYPES = {
    **dict.fromkeys(["article", "journal-article", "research-article", "review", "review-article", "editorial",
                     "letter", "erratum", "retraction", "comment"], ("JOUR", "article")),
    **dict.fromkeys(["book-chapter", "chapter", "reference-entry"], ("CHAP", "incollection")),
    **dict.fromkeys(["book", "monograph"], ("BOOK", "book")),
    "edited-book": ("EDBOOK", "book"),
    **dict.fromkeys(["proceedings-article", "conference-paper"], ("CPAPER", "inproceedings")),
    **dict.fromkeys(["dissertation", "thesis"], ("THES", "phdthesis")),
    "report": ("RPRT", "techreport"),
    "dataset": ("DATA", "misc"),
    **dict.fromkeys(["preprint", "posted-content"], ("UNPB", "misc")),
    "standard": ("STAND", "misc"),
}
OTHER_WORK_TYPE = ("GEN", "misc")
# Where the venue goes per entry type; a thesis's or report's venue (a repository, mostly) has no field.
_VENUE_FIELD = {"article": "journal", "incollection": "booktitle", "inproceedings": "booktitle", "book": "series",
                "misc": "howpublished"}
_PUBLISHER_FIELD = {"phdthesis": "school", "techreport": "institution"}
_LINE_BREAKS = re.compile(r"\s*[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]+\s*")  # what str.splitlines splits on
_SUFFIXES = frozenset({"jr", "sr", "ii", "iii", "iv"})
_ORGANISATION_WORDS = (NOT_A_PERSONS_NAME - _SUFFIXES - {"phd", "md", "msc", "dr", "prof"}) | {
    "organization", "organisation", "council", "agency", "ministry", "investigators", "initiative", "registry"}
_LATEX = str.maketrans({
    "\\": r"\textbackslash{}", "{": r"\textbraceleft{}", "}": r"\textbraceright{}", "%": r"\%", "&": r"\&",
    "$": r"\$", "#": r"\#", "_": r"\_", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "<": r"\textless{}", ">": r"\textgreater{}",
})
_VERBATIM = str.maketrans({"{": "%7B", "}": "%7D", "\\": "%5C"})
_KEY_SAFE = re.compile(r"[A-Za-z0-9_:./-]+")
_BIBTEX_ENTRY = re.compile(r"@[A-Za-z]+\{")
_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]


def work_types(work_type: str | None) -> tuple[str, str]:
    """The RIS type and BibTeX entry type of a provider's work_type (`Journal Article`, `book-chapter`...)."""
    return WORK_TYPES.get("-".join((work_type or "").lower().split()), OTHER_WORK_TYPE)


def ris_record(work: dict) -> str:
    """One unique work as a RIS record (`TY` first, `ER` last), the tags every reference manager reads."""
    date, precision = work["publication_date"], work["publication_date_precision"]
    urls = [url.replace(";", "%3B") for url in dict.fromkeys(u for u in (work["url"], work["oa_url"]) if u)]
    tags = [("TY", work_types(work["work_type"])[0]), ("ID", work["work_id"]), ("TI", work["title"])]
    tags += [("AU", _ris_author(a["name"])) for a in work["authors"] or [] if _one_line(a["name"])]
    if date is not None:
        parts = [f"{date.year:04d}", f"{date.month:02d}" if precision in ("month", "day") else "",
                 f"{date.day:02d}" if precision == "day" else ""]
        tags += [("PY", f"{date.year:04d}"), ("DA", "/".join(parts) + "/")]
    tags += [("T2", work["venue"]), ("PB", work["publisher"]), ("DO", work["doi"])]
    tags += [("UR", url) for url in urls]  # `;` separates URLs in one UR line for some readers
    tags += [("LA", work["language"]), ("AB", work["abstract"])]
    lines = [f"{tag}  - {value}" for tag, value in ((t, _one_line(v)) for t, v in tags) if value]
    return "\n".join(lines + ["ER  - ", ""])


def bibtex_entry(work: dict) -> str:
    """One unique work as a BibTeX entry; biblatex reads its `date`, `eprint` and verbatim `doi`/`url` too."""
    entry_type = work_types(work["work_type"])[1]
    date, precision = work["publication_date"], work["publication_date_precision"]
    authors = [_bibtex_author(a["name"]) for a in work["authors"] or [] if _one_line(a["name"])]
    fields: list[tuple[str | None, str | None]] = [
        ("author", " and ".join(authors) or None),
        ("title", _latex(work["title"])),
        (_VENUE_FIELD.get(entry_type), _latex(work["venue"])),
        (_PUBLISHER_FIELD.get(entry_type, "publisher"), _latex(work["publisher"])),
    ]
    if date is not None:
        fields.append(("year", f"{date.year:04d}"))
        if precision in ("month", "day"):
            fields.append(("month", _MONTHS[date.month - 1]))  # the standard macro, written bare
        fields.append(("date", date.isoformat()[: {"year": 4, "month": 7}.get(precision, 10)]))
    fields += [("doi", _verbatim(work["doi"])), ("url", _verbatim(work["url"] or work["oa_url"])),
               ("language", _latex(work["language"])), ("pmid", _latex(work["pmid"])), ("pmcid", _latex(work["pmcid"]))]
    if work["arxiv_id"]:
        fields += [("eprint", _verbatim(work["arxiv_id"])), ("archiveprefix", "arXiv")]
    fields.append(("abstract", _latex(work["abstract"])))
    body = ",\n".join(f"  {name} = {value}" if name == "month" else f"  {name} = {{{value}}}"
                      for name, value in fields if name and value)
    return f"@{entry_type}{{{bibtex_key(work['work_id'])},\n{body}\n}}\n"


def bibtex_key(work_id: str) -> str:
    """`work_id` when it is a valid key as it is, else its key-safe characters and a hash of all of it."""
    if _KEY_SAFE.fullmatch(work_id):
        return work_id
    safe = "-".join(_KEY_SAFE.findall(work_id))
    return f"{safe}-{hashlib.sha256(work_id.encode()).hexdigest()[:10]}".lstrip("-")


def split_name(name: str) -> tuple[str, str, str] | None:
    """(family with its particles, given, suffix) of a person's display name in reading order, or None for a name
    to keep whole: one word (`中文`), an organisation, or one with a comma (written family-first or not a person's,
    see `text.name_in_reading_order`)."""
    words = name.split()
    if "," in name or len(words) < 2 or {w.strip(".").lower() for w in words} & _ORGANISATION_WORDS:
        return None
    suffix = words.pop() if words[-1].strip(".").lower() in _SUFFIXES and len(words) > 2 else ""
    # The family name starts at its first lower-case particle (`van`, `de la`), else it is the last word.
    start = next((i for i in range(1, len(words) - 1) if words[i][0].islower()), len(words) - 1)
    return " ".join(words[start:]), " ".join(words[:start]), suffix


def _ris_author(name: str) -> str:
    """`Family, Given, Suffix` (the RIS order), or the name as written when it is kept whole."""
    name = _one_line(name)
    parts = split_name(name)
    if parts is None:
        return name
    family, given, suffix = parts
    return ", ".join(part for part in (family, given, suffix) if part)


def _bibtex_author(name: str) -> str:
    """`Family, Jr, Given` (BibTeX's order); a name kept whole is braced, so that BibTeX reads it as one family name."""
    name = _one_line(name)
    parts = split_name(name)
    if parts is None:
        return "{" + _latex(name) + "}" if len(name.split()) > 1 or "," in name else _latex(name)
    family, given, suffix = (_latex(part) for part in parts)
    return ", ".join(part for part in (family, suffix, given) if part)


def _one_line(value: str | None) -> str | None:
    return None if value is None else _LINE_BREAKS.sub(" ", value).strip()


def _latex(value: str | None) -> str | None:
    value = _one_line(value)
    return value.translate(_LATEX) if value else None


def _verbatim(value: str | None) -> str | None:
    value = _one_line(value)
    return value.translate(_VERBATIM) if value else None
