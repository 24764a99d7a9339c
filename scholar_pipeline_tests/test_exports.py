"""The dataset's exports: Parquet and CSV read back equal to the tables, RIS and BibTeX parse with real parsers to
the works' values, the manifest's hashes verify, and an export is all-or-nothing and byte-stable."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json

import bibtexparser
import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import rispy
from bibtexparser import middlewares
from pylatexenc.latex2text import LatexNodes2Text, MacroTextSpec, get_default_latex_context_db

from scholar_pipeline.dataset import exports
from scholar_pipeline.dataset.exports import ExportManifest, verify_exports, write_exports
from scholar_pipeline.schema import UNIQUE_WORKS_SCHEMA, WORKS_SCHEMA

UTC = dt.timezone.utc
SICI_DOI = "10.1002/(sici)1097-4636(199706)35:4<415::aid-jbm1>3.0.co;2-o"  # a real DOI: `<`, `>`, `;`, `(`
AWKWARD_TITLE = r"Na<sup>+</sup> & K: {braces} at 50% in C:\temp_dir #1 ~x^2 $5"
AWKWARD_ABSTRACT = "First line & <b>bold</b>\nTI  - not a tag\r\n\n  third line"
AUTHORS = [
    {"name": "Émilie Färber", "orcid": "0000-0002-1825-0097", "affiliations": ["Université de Genève"]},
    {"name": "中文", "orcid": None, "affiliations": []},
    {"name": "Ludwig van Beethoven", "orcid": None, "affiliations": None},
    {"name": "World Health Organization", "orcid": None, "affiliations": []},
    {"name": "Martin Luther King Jr.", "orcid": None, "affiliations": []},
    {"name": "Smith, John, Jr.", "orcid": None, "affiliations": []},  # kept as written by name_in_reading_order
]
RETRIEVED = dt.datetime(2024, 3, 3, 4, 5, 6, 123456, tzinfo=UTC)
GENERATED = dt.datetime(2024, 3, 4, 12, 0, tzinfo=UTC)


def _work(**values) -> dict:
    return {"doi": None, "title": None, "abstract": None, "authors": None, "publication_date": None,
            "publication_date_precision": None, "venue": None, "publisher": None, "work_type": None, "language": None,
            "is_oa": None, "oa_url": None, "license": None, "cited_by_count": None, "url": None} | values


def _landed(query, provider, day, provider_id, **values) -> dict:
    return _work(query=query, provider=provider, partition_date=day, provider_id=provider_id,
                 record_hash=hashlib.sha256(f"{provider}{provider_id}".encode()).hexdigest(),
                 raw_page_sha256="ab" * 32, retrieved_at=RETRIEVED, **values)


AWKWARD = dict(doi=SICI_DOI, title=AWKWARD_TITLE, abstract=AWKWARD_ABSTRACT, authors=AUTHORS,
               publication_date=dt.date(2024, 3, 5), publication_date_precision="day", venue="J. Biomed. Mater. Res.",
               publisher="Wiley & Sons", work_type="Journal Article", language="en", is_oa=True,
               oa_url="https://example.org/a.pdf", license="cc-by", cited_by_count=7, url=f"https://doi.org/{SICI_DOI}")
CHAPTER = dict(title="Chapter", publication_date=dt.date(2024, 2, 1), publication_date_precision="month",
               venue="Handbook of {Things}", work_type="book-chapter", language="fr")
THESIS = dict(title="Thesis", publication_date=dt.date(2023, 1, 1), publication_date_precision="year",
              venue="Repository", publisher="Univ. of Somewhere", work_type="dissertation")
PREPRINT = dict(title="A title with % and \\ and “quotes”", authors=[], work_type="preprint",
                url="https://arxiv.org/abs/2401.01234", oa_url="https://arxiv.org/abs/2401.01234")

WORKS = [
    _landed("ai_review", "openalex", dt.date(2024, 3, 1), "W1", **AWKWARD),
    _landed("ai_review", "openalex", dt.date(2024, 3, 1), "W3", **CHAPTER),
    _landed("ai_review", "crossref", dt.date(2024, 3, 2), SICI_DOI, **(AWKWARD | dict(
        title="", abstract=None, publication_date=None, publication_date_precision=None))),  # "" is not NULL
    _landed("ai_review", "pubmed", dt.date(2023, 12, 31), "123", **THESIS),
    _landed("ml_data", "arxiv", dt.date(2024, 2, 10), "2401.01234", **PREPRINT),
    _landed("ml_data", "openalex", dt.date(2024, 1, 15), "W1", **AWKWARD),
]


def _source(query, provider, provider_id, day) -> dict:
    return {"query": query, "provider": provider, "provider_id": provider_id, "partition_date": day,
            "record_hash": hashlib.sha256(f"{provider}{provider_id}".encode()).hexdigest()}


AWKWARD_ID = f"doi:{SICI_DOI}"
UNIQUE_WORKS = [
    _work(work_id=AWKWARD_ID, pmid="9135175", pmcid="PMC1234567", arxiv_id=None, queries=["ai_review", "ml_data"],
          match_rule="doi", sources=[_source("ai_review", "openalex", "W1", dt.date(2024, 3, 1)),
                                     _source("ai_review", "crossref", SICI_DOI, dt.date(2024, 3, 2)),
                                     _source("ml_data", "openalex", "W1", dt.date(2024, 1, 15))], **AWKWARD),
    _work(work_id="openalex:W2", pmid=None, pmcid=None, arxiv_id="2401.01234", queries=["ml_data"], match_rule="arxiv",
          sources=[_source("ml_data", "arxiv", "2401.01234", dt.date(2024, 2, 10))], **PREPRINT),
    _work(work_id="openalex:W3", pmid=None, pmcid=None, arxiv_id=None, queries=["ai_review"], match_rule="single",
          sources=[_source("ai_review", "openalex", "W3", dt.date(2024, 3, 1))], **CHAPTER),
    # No saved search claims it (it should not happen): it is still exported, in folder query=NULL.
    _work(work_id="pubmed:123", pmid="123", pmcid=None, arxiv_id=None, queries=[], match_rule="single",
          sources=[], **THESIS),
]


def _works_schema(identifier_columns: bool) -> pa.Schema:
    """`works` as it is, or as a works-v1 table without the identifier columns (exports read the columns a table has)."""
    if identifier_columns:
        return WORKS_SCHEMA
    return pa.schema([f for f in WORKS_SCHEMA if f.name not in ("pmid", "pmcid", "arxiv_id")])


def _create(con: duckdb.DuckDBPyConnection, table: str, schema: pa.Schema, rows: list[dict]) -> None:
    empty = schema.empty_table()  # noqa: F841 (read by DuckDB's replacement scan)
    con.execute(f"CREATE TABLE {table} AS SELECT * FROM empty")
    filled = pa.Table.from_pylist([{name: row.get(name) for name in schema.names} for row in rows], schema)  # noqa: F841
    con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM filled")


def _connection(identifier_columns: bool) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    _create(con, "works", _works_schema(identifier_columns), [
        w | {"pmid": None, "pmcid": "PMC1234567" if w["provider_id"] == "W1" else None, "arxiv_id": None} for w in WORKS])
    _create(con, "unique_works", UNIQUE_WORKS_SCHEMA, UNIQUE_WORKS)
    return con


@pytest.fixture(params=[False, True], ids=["works_v1", "works"])
def con(request):
    with _connection(request.param) as con:
        yield con


@pytest.fixture
def exported(con, tmp_path):
    manifest = write_exports(con, tmp_path / "exports", code_version="exports-test", schema_version="works-v1",
                             generated_at=GENERATED)
    return tmp_path / "exports", manifest


def _table(con, sql: str) -> list[tuple]:
    return sorted(con.execute(sql).fetchall(), key=repr)


def test_parquet_reads_back_equal_to_the_tables(con, exported):
    folder, _ = exported
    works = con.execute("SELECT * FROM works").fetch_arrow_table()
    back = ds.dataset(folder / "parquet" / "works", format="parquet").to_table()
    assert back.column("publication_year").to_pylist() == [d and d.year for d in back.column("publication_date").to_pylist()]
    back = back.drop_columns(["publication_year"]).cast(works.schema)
    keys = [(name, "ascending") for name in ("query", "provider", "partition_date", "provider_id")]
    assert back.sort_by(keys).equals(works.sort_by(keys))
    parquet = f"read_parquet('{folder}/parquet/works/**/*.parquet', hive_partitioning=false)"
    assert _table(con, f"SELECT * EXCLUDE (publication_year) FROM {parquet}") == _table(con, "SELECT * FROM works")
    unique = f"read_parquet('{folder}/parquet/unique_works/**/*.parquet', hive_partitioning=false)"
    assert (_table(con, f"SELECT DISTINCT * EXCLUDE (query, publication_year) FROM {unique}")
            == _table(con, "SELECT * FROM unique_works"))
    # One row per (saved search, work): a search's folder is its whole set.
    assert _table(con, f"SELECT query, publication_year, work_id FROM {unique}") == sorted([
        ("ai_review", 2024, AWKWARD_ID), ("ml_data", 2024, AWKWARD_ID), ("ml_data", None, "openalex:W2"),
        ("ai_review", 2024, "openalex:W3"), (None, 2023, "pubmed:123")], key=repr)
    assert sorted(str(p.parent.relative_to(folder / "parquet")) for p in (folder / "parquet").rglob("*.parquet")) == [
        "unique_works/query=NULL/publication_year=2023", "unique_works/query=ai_review/publication_year=2024",
        "unique_works/query=ml_data/publication_year=2024", "unique_works/query=ml_data/publication_year=NULL",
        "works/query=ai_review/publication_year=2023", "works/query=ai_review/publication_year=2024",
        "works/query=ai_review/publication_year=NULL", "works/query=ml_data/publication_year=2024",
        "works/query=ml_data/publication_year=NULL"]


def _read_csv(con, path, table: str) -> str:
    """The CSV cast back to the table's types: JSON text to nested values, empty cells to NULL, `""` to ''."""
    casts = []
    for name, type_, *_ in con.execute(f"DESCRIBE {table}").fetchall():
        text = f"CAST(\"{name}\" AS JSON)" if type_.endswith("]") or type_.startswith("STRUCT") else f'"{name}"'
        casts.append(f'CAST({text} AS {type_}) AS "{name}"')
    return f"SELECT {', '.join(casts)} FROM read_csv('{path}', header=true, all_varchar=true, allow_quoted_nulls=false)"


def test_csv_reads_back_equal_to_the_tables(con, exported):
    folder, _ = exported
    for table in ("works", "unique_works"):
        assert _table(con, _read_csv(con, folder / "csv" / f"{table}.csv", table)) == _table(con, f"SELECT * FROM {table}")
    with (folder / "csv" / "works.csv").open(encoding="utf-8", newline="") as text:
        rows = list(csv.DictReader(text))
    assert [(r["provider"], r["title"], r["abstract"], r["retrieved_at"]) for r in rows if r["provider_id"] in ("W1", SICI_DOI)] == [
        ("crossref", "", "", "2024-03-03T04:05:06.123456Z"),
        ("openalex", AWKWARD_TITLE, AWKWARD_ABSTRACT, "2024-03-03T04:05:06.123456Z"),
        ("openalex", AWKWARD_TITLE, AWKWARD_ABSTRACT, "2024-03-03T04:05:06.123456Z"),
    ]
    assert json.loads(rows[0]["authors"])[0] == {"name": "Émilie Färber", "orcid": "0000-0002-1825-0097",
                                                 "affiliations": ["Université de Genève"]}


def test_ris_parses_to_the_works_values(exported):
    folder, _ = exported
    records = rispy.loads((folder / "unique_works.ris").read_text(encoding="utf-8"))
    assert records == [
        {"type_of_reference": "JOUR", "id": AWKWARD_ID, "title": AWKWARD_TITLE,
         "authors": ["Färber, Émilie", "中文", "van Beethoven, Ludwig", "World Health Organization",
                     "King, Martin Luther, Jr.", "Smith, John, Jr."],
         "year": "2024", "date": "2024/03/05/", "secondary_title": "J. Biomed. Mater. Res.", "publisher": "Wiley & Sons",
         "doi": SICI_DOI, "urls": [f"https://doi.org/{SICI_DOI.replace(';', '%3B')}", "https://example.org/a.pdf"],
         "language": "en", "abstract": "First line & <b>bold</b> TI  - not a tag third line"},
        {"type_of_reference": "UNPB", "id": "openalex:W2", "title": PREPRINT["title"], "urls": [PREPRINT["url"]]},
        {"type_of_reference": "CHAP", "id": "openalex:W3", "title": "Chapter", "year": "2024", "date": "2024/02//",
         "secondary_title": "Handbook of {Things}", "language": "fr"},
        {"type_of_reference": "THES", "id": "pubmed:123", "title": "Thesis", "year": "2023", "date": "2023///",
         "secondary_title": "Repository", "publisher": "Univ. of Somewhere"},
    ]


def _latex_to_text(value: str) -> str:
    """LaTeX as the kernel prints it (pylatexenc lacks some of its text symbols and prints `\\textasciicircum` as `ˆ`)."""
    context = get_default_latex_context_db()
    context.add_context_category("kernel", prepend=True, macros=[
        MacroTextSpec("textbraceleft", "{"), MacroTextSpec("textbraceright", "}"), MacroTextSpec("textasciicircum", "^"),
        MacroTextSpec("textless", "<"), MacroTextSpec("textgreater", ">")])
    return LatexNodes2Text(latex_context=context).latex_to_text(value)


def test_bibtex_parses_to_the_works_values(exported):
    folder, _ = exported
    library = bibtexparser.parse_string((folder / "unique_works.bib").read_text(encoding="utf-8"))
    assert library.failed_blocks == [] and library.comments == []
    entries = [(e.entry_type, e.key, e.fields_dict and {f.key: f.value for f in e.fields}) for e in library.entries]
    awkward_key = ("doi:10.1002/-sici-1097-4636-199706-35:4-415::aid-jbm1-3.0.co-2-o-"
                   + hashlib.sha256(AWKWARD_ID.encode()).hexdigest()[:10])
    assert entries == [
        ("article", awkward_key, {
            "author": "Färber, Émilie and 中文 and van Beethoven, Ludwig and {World Health Organization} "
                      "and King, Jr., Martin Luther and {Smith, John, Jr.}",
            "title": r"Na\textless{}sup\textgreater{}+\textless{}/sup\textgreater{} \& K: \textbraceleft{}braces"
                     r"\textbraceright{} at 50\% in C:\textbackslash{}temp\_dir \#1 \textasciitilde{}x\textasciicircum{}2 \$5",
            "journal": "J. Biomed. Mater. Res.", "publisher": r"Wiley \& Sons", "year": "2024", "month": "mar",
            "date": "2024-03-05", "doi": SICI_DOI, "url": f"https://doi.org/{SICI_DOI}", "language": "en",
            "pmid": "9135175", "pmcid": "PMC1234567",
            "abstract": r"First line \& \textless{}b\textgreater{}bold\textless{}/b\textgreater{} TI  - not a tag third line"}),
        ("misc", "openalex:W2", {"title": r"A title with \% and \textbackslash{} and “quotes”", "url": PREPRINT["url"],
                                 "eprint": "2401.01234", "archiveprefix": "arXiv"}),
        ("incollection", "openalex:W3", {"title": "Chapter", "booktitle": r"Handbook of \textbraceleft{}Things\textbraceright{}",
                                         "year": "2024", "month": "feb", "date": "2024-02", "language": "fr"}),
        ("phdthesis", "pubmed:123", {"title": "Thesis", "school": "Univ. of Somewhere", "year": "2023", "date": "2023",
                                      "pmid": "123"}),
    ]
    # The LaTeX means the original text, and BibTeX reads the names' parts as intended.
    assert _latex_to_text(entries[0][2]["title"]) == AWKWARD_TITLE
    assert _latex_to_text(entries[1][2]["title"]) == PREPRINT["title"]
    named = bibtexparser.parse_string((folder / "unique_works.bib").read_text(encoding="utf-8"),
                                      append_middleware=[middlewares.SeparateCoAuthors(), middlewares.SplitNameParts()])
    assert [(n.last, n.von, n.first, n.jr) for n in named.entries[0]["author"]] == [
        (["Färber"], [], ["Émilie"], []), (["中文"], [], [], []), (["Beethoven"], ["van"], ["Ludwig"], []),
        (["{World Health Organization}"], [], [], []), (["King"], [], ["Martin", "Luther"], ["Jr."]),
        (["{Smith, John, Jr.}"], [], [], [])]


def test_the_manifest_describes_every_file_and_verifies(con, exported):
    folder, manifest = exported
    assert ExportManifest.from_json((folder / "manifest.json").read_text(encoding="utf-8")) == manifest
    assert manifest.generated_at == "2024-03-04T12:00:00+00:00"
    assert (manifest.layout, manifest.code_version, manifest.schema_version) == ("exports-v1", "exports-test", "works-v1")
    assert manifest.tables == {"works": 6, "unique_works": 4}
    assert [(s.query, s.first_partition_date, s.last_partition_date, s.works_rows, s.unique_works,
             [(p.provider, p.first_partition_date, p.last_partition_date, p.rows) for p in s.providers])
            for s in manifest.saved_searches] == [
        ("ai_review", "2023-12-31", "2024-03-02", 4, 2, [("crossref", "2024-03-02", "2024-03-02", 1),
                                                         ("openalex", "2024-03-01", "2024-03-01", 2),
                                                         ("pubmed", "2023-12-31", "2023-12-31", 1)]),
        ("ml_data", "2024-01-15", "2024-02-10", 2, 2, [("arxiv", "2024-02-10", "2024-02-10", 1),
                                                       ("openalex", "2024-01-15", "2024-01-15", 1)]),
    ]
    on_disk = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != "manifest.json")
    assert [f.path for f in manifest.files] == on_disk
    for entry in manifest.files:
        data = (folder / entry.path).read_bytes()
        assert (entry.bytes, entry.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    rows = {f.path: f.rows for f in manifest.files}
    assert sum(rows[f.path] for f in manifest.files if f.table == "works" and f.format == "parquet") == 6
    assert [rows[p] for p in ("csv/works.csv", "csv/unique_works.csv", "unique_works.ris", "unique_works.bib")] == [6, 4, 4, 4]
    for entry in manifest.files:
        if entry.format == "parquet":
            assert entry.rows == pq.read_metadata(folder / entry.path).num_rows
    assert verify_exports(folder) == []


def test_verify_reports_a_changed_missing_or_unlisted_file(exported):
    folder, manifest = exported
    parquet = next(f for f in manifest.files if f.format == "parquet")
    data = bytearray((folder / parquet.path).read_bytes())
    data[len(data) // 2] ^= 0x01
    (folder / parquet.path).write_bytes(bytes(data))
    (folder / "csv" / "works.csv").unlink()
    (folder / "notes.txt").write_text("added later")
    assert verify_exports(folder) == [
        "csv/works.csv: missing",
        f"{parquet.path}: sha256 {hashlib.sha256(bytes(data)).hexdigest()}, the manifest says {parquet.sha256}",
        "notes.txt: not in the manifest",
    ]
    (folder / "manifest.json").write_text(manifest.to_json().replace('"rows": 4', '"rows": 5'), encoding="utf-8")
    assert "unique_works.ris: 4 rows, the manifest says 5" in verify_exports(folder)
    (folder / "manifest.json").unlink()
    assert verify_exports(folder) == [f"{folder / 'manifest.json'} is missing: not an export, or one still being written"]


def test_a_second_export_of_equal_tables_is_byte_identical_but_for_generated_at(tmp_path):
    """With more than a row group of rows, DuckDB writes Parquet differently on 1 and 4 threads: exports are
    single-threaded whatever the caller's setting, which comes back after."""
    con = _connection(identifier_columns=True)
    con.execute("""INSERT INTO works BY NAME SELECT 'bulk' AS query, 'openalex' AS provider,
                   DATE '2024-01-01' + (i % 60)::INTEGER AS partition_date, 'W' || i AS provider_id, 'Title ' || i AS title,
                   DATE '2020-01-01' + (i % 1500)::INTEGER AS publication_date, 'day' AS publication_date_precision,
                   md5(i::VARCHAR) AS record_hash, TIMESTAMPTZ '2024-03-03 04:05:06Z' AS retrieved_at
                   FROM range(150000) AS r(i)""")
    con.execute("SET threads = 4")
    first = write_exports(con, tmp_path / "a", code_version="c", schema_version="s", generated_at=GENERATED)
    assert con.execute("SELECT current_setting('threads')").fetchone()[0] == 4
    con.execute("SET threads = 1")
    second = write_exports(con, tmp_path / "b", code_version="c", schema_version="s")
    assert second.files == first.files
    assert sum(f.rows for f in first.files if f.table == "works" and f.format == "parquet") == 150006
    one, two = ((tmp_path / name / "manifest.json").read_text().splitlines() for name in "ab")
    assert [i for i, (a, b) in enumerate(zip(one, two)) if a != b] == [one.index(f' "generated_at": "{GENERATED.isoformat()}",')]


def test_a_failure_half_way_leaves_the_previous_export_intact(con, tmp_path, monkeypatch):
    folder = tmp_path / "exports"
    before = write_exports(con, folder, code_version="c", schema_version="s", generated_at=GENERATED)
    con.execute("DELETE FROM unique_works WHERE work_id = 'openalex:W2'")  # the next export would differ

    def full_disk(work):
        raise OSError("No space left on device")

    monkeypatch.setattr(exports, "bibtex_entry", full_disk)  # after Parquet, CSV and RIS were written
    with pytest.raises(OSError, match="No space left"):
        write_exports(con, folder, code_version="c", schema_version="s")
    assert ExportManifest.from_json((folder / "manifest.json").read_text()) == before
    assert verify_exports(folder) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [".exports.lock", "exports"]  # no staging folder left


def test_a_crash_between_the_two_renames_is_undone_by_the_next_write(con, tmp_path, monkeypatch):
    folder = tmp_path / "exports"
    before = write_exports(con, folder, code_version="c", schema_version="s", generated_at=GENERATED)
    folder.rename(tmp_path / ".exports-previous")  # the first rename of a swap happened, the second did not
    monkeypatch.setattr(exports, "ris_record", lambda work: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        write_exports(con, folder, code_version="c", schema_version="s")
    assert ExportManifest.from_json((folder / "manifest.json").read_text()) == before
    assert verify_exports(folder) == []
    monkeypatch.undo()
    after = write_exports(con, folder, code_version="c", schema_version="s", generated_at=GENERATED)
    assert after == before and sorted(p.name for p in tmp_path.iterdir()) == [".exports.lock", "exports"]


def test_rows_landed_during_an_export_are_in_none_of_its_files(con, tmp_path, monkeypatch):
    """Every file and count comes from one snapshot: a partition landed by another connection half-way through
    (after the Parquet files, before the CSV) shows in the next export only."""
    copy_csv = exports._copy_csv

    def land_then_copy(con_, table, *args):
        if table == "works":
            with con.cursor() as writer:
                writer.execute("INSERT INTO works BY NAME SELECT 'ml_data' AS query, 'crossref' AS provider, "
                               "DATE '2024-03-09' AS partition_date, 'late' AS provider_id")
        return copy_csv(con_, table, *args)

    monkeypatch.setattr(exports, "_copy_csv", land_then_copy)
    manifest = write_exports(con, tmp_path / "exports", code_version="c", schema_version="s")
    rows = {(f.table, f.format): 0 for f in manifest.files}
    for f in manifest.files:
        rows[f.table, f.format] += f.rows
    assert manifest.tables["works"] == rows["works", "csv"] == rows["works", "parquet"] == 6
    assert con.execute("SELECT count(*) FROM works").fetchone()[0] == 7  # landed, and the export left no transaction open


def test_work_types_map_the_providers_spellings():
    assert [exports.work_types(t) for t in ("Journal Article", "journal-article", "Research Article", "Chapter",
                                            "proceedings-article", "posted-content", "research", None)] == [
        ("JOUR", "article"), ("JOUR", "article"), ("JOUR", "article"), ("CHAP", "incollection"),
        ("CPAPER", "inproceedings"), ("UNPB", "misc"), ("GEN", "misc"), ("GEN", "misc")]


def test_names_split_into_family_and_given_or_stay_whole():
    assert [exports.split_name(n) for n in ("Émilie Färber", "Jean de la Fontaine", "Martin Luther King Jr.", "danah boyd",
                                            "中文", "World Health Organization", "Conway, Rana E.")] == [
        ("Färber", "Émilie", ""), ("de la Fontaine", "Jean", ""), ("King", "Martin Luther", "Jr."), ("boyd", "danah", ""),
        None, None, None]


def test_an_empty_export_still_has_its_manifest(tmp_path):
    con = duckdb.connect()
    _create(con, "works", WORKS_SCHEMA, [])
    _create(con, "unique_works", UNIQUE_WORKS_SCHEMA, [])
    manifest = write_exports(con, tmp_path / "exports", code_version="c", schema_version="s", generated_at=GENERATED)
    assert manifest.tables == {"works": 0, "unique_works": 0} and manifest.saved_searches == []
    assert [(f.path, f.rows) for f in manifest.files] == [
        ("csv/unique_works.csv", 0), ("csv/works.csv", 0), ("unique_works.bib", 0), ("unique_works.ris", 0)]
    assert verify_exports(tmp_path / "exports") == []
