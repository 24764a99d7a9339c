"""`unique_works`: the rows of `works` grouped into real-world works, across providers and saved searches.

Which rows are one work. A provider record (provider, provider_id) is one work wherever it
was found. Records are then joined, in this order, by a shared:
1. `doi`;
2. `pmid`, 3. `pmcid`, 4. `arxiv_id` (bare and without version, so arXiv versions collapse;
   a journal record that names its preprint's arXiv id joins the preprint);
5. `title_year_author`: the same normalized title (Unicode compatibility form, accents,
   case, punctuation and spacing removed), publication year and first author's family name,
   between works that do not contradict each other (no two different DOIs, PMIDs, PMCIDs or
   arXiv ids) and only for titles of `MIN_TITLE_WORDS` words or more ("Editorial" by the
   same author in the same year is not one work). The title must be equal after
   normalization, not similar: "Part I" and "Part II" stay apart.
`match_rule` names the weakest link of the work: the last of these rules, in the order above,
that was needed to join its provider records (a preprint joined to its journal version by
the arXiv id, whose journal records share a DOI, says `arxiv_id`; a work that needed the title
rule says so); `provider_id` when its rows are one provider record found by several searches
or on several days; `none` for a single row.

Which values a work shows (documented in the README):
- identifiers: the journal DOI before an arXiv one (10.48550/...), then the smallest; the
  smallest PMID, PMCID and arXiv id;
- bibliographic fields (title, authors, venue, publisher, type, language, license, url, the
  publication date): the first source that has one, in `PROVIDER_PRECEDENCE` (registries of
  the published version first, preprint servers last);
- the abstract: the longest;
- `cited_by_count`: OpenAlex's (its largest), else the largest of any source;
- `is_oa`: true when any source says so, false when some say false and none true;
  `oa_url`: OpenAlex's first, then by precedence.
Ties are broken by (provider, provider_id, partition_date, query), so the same `works`
gives the same table, byte for byte, whatever order its rows are in.

`work_id` is a hash of the work's anchor: its smallest DOI, else PMID, PMCID, arXiv id,
else its smallest provider record. It stays the same across rebuilds, and while the
work keeps its anchor as data arrives.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from scholar_pipeline.schema import IDENTIFIERS, UNIQUE_WORKS_SCHEMA

RULES = ["doi", "pmid", "pmcid", "arxiv_id", "title_year_author"]  # in the order they are applied
SAME_RECORD, SINGLE = "provider_id", "none"
PROVIDER_PRECEDENCE = ["crossref", "pubmed", "openalex", "springer", "plos", "core", "arxiv"]
MIN_TITLE_WORDS = 3
ARXIV_DOI_PREFIX = "10.48550/"

_NOT_WORD = re.compile(r"[\W_]+")

Record = tuple[str, str]  # (provider, provider_id)


@dataclass(frozen=True)
class Matched:
    """Each provider record's work: its `work_id` and the `match_rule` of that work."""

    work_of: dict[Record, str]
    rule_of: dict[str, str]

    def as_table(self) -> pa.Table:
        records = sorted(self.work_of)
        return pa.table({
            "provider": [r[0] for r in records], "provider_id": [r[1] for r in records],
            "work_id": [self.work_of[r] for r in records],
            "match_rule": [self.rule_of[self.work_of[r]] for r in records],
        })


def normalized_title(title: str | None) -> str | None:
    """A title as the title rule compares it: compatibility form, no accents, case folded, words joined by one space."""
    if not title:
        return None
    decomposed = unicodedata.normalize("NFKD", title)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(_NOT_WORD.sub(" ", bare.casefold()).split()) or None


def family_name(name: str | None) -> str | None:
    """The family name of a display name in reading order ("Émilie Färber" -> "farber"): its last word, normalized."""
    words = (normalized_title(name) or "").split()
    return words[-1] if words else None


def match_records(con: duckdb.DuckDBPyConnection) -> Matched:
    """Group every provider record of `works` into works by the rules above."""
    groups = _Groups()
    rows = con.execute(
        f"SELECT provider, provider_id, {', '.join(IDENTIFIERS)}, title, year(publication_date), authors[1].name "
        "FROM works ORDER BY provider, provider_id, partition_date, query"
    ).fetchall()
    title_keys: dict[Record, tuple[str, int, str]] = {}
    for provider, provider_id, *ids, title, year, first_author in rows:
        record = (provider, provider_id)
        groups.add(record, dict(zip(IDENTIFIERS, ids)))
        key = (normalized_title(title), year, family_name(first_author))
        if record not in title_keys and all(key) and len(key[0].split()) >= MIN_TITLE_WORDS:
            title_keys[record] = key
    for rule in IDENTIFIERS:
        first_with: dict[str, Record] = {}
        for record in groups.records():
            for value in sorted(groups.identifiers(record)[rule]):
                if value in first_with:
                    groups.join(first_with[value], record, rule)
                else:
                    first_with[value] = record
    by_title: dict[tuple[str, int, str], list[Record]] = defaultdict(list)
    for record, key in sorted(title_keys.items()):
        by_title[key].append(record)
    for records in by_title.values():
        for record in records[1:]:
            for earlier in records[: records.index(record)]:
                if not groups.contradict(earlier, record):
                    groups.join(earlier, record, "title_year_author")
                    break
    return groups.matched()


class _Groups:
    """Union-find over provider records, remembering each group's identifiers and the rules that joined it."""

    def __init__(self) -> None:
        self._parent: dict[Record, Record] = {}
        self._ids: dict[Record, dict[str, set[str]]] = {}
        self._rules: dict[Record, set[str]] = {}
        self._rows: dict[Record, int] = {}

    def add(self, record: Record, ids: dict[str, str | None]) -> None:
        if record not in self._parent:
            self._parent[record] = record
            self._ids[record] = {name: set() for name in IDENTIFIERS}
            self._rules[record] = set()
            self._rows[record] = 0
        root = self._root(record)
        self._rows[root] += 1
        for name, value in ids.items():
            if value:
                self._ids[root][name].add(value)

    def records(self) -> list[Record]:
        return sorted(self._parent)

    def identifiers(self, record: Record) -> dict[str, set[str]]:
        return self._ids[self._root(record)]

    def contradict(self, a: Record, b: Record) -> bool:
        """Two groups that name different ids of one kind are different works."""
        ids_a, ids_b = self.identifiers(a), self.identifiers(b)
        return any(ids_a[name] and ids_b[name] and not ids_a[name] & ids_b[name] for name in IDENTIFIERS)

    def join(self, a: Record, b: Record, rule: str) -> None:
        root_a, root_b = self._root(a), self._root(b)
        if root_a == root_b:
            return
        keep, gone = min(root_a, root_b), max(root_a, root_b)
        self._parent[gone] = keep
        for name in IDENTIFIERS:
            self._ids[keep][name] |= self._ids[gone][name]
        self._rules[keep] |= self._rules.pop(gone) | {rule}
        self._rows[keep] += self._rows.pop(gone)
        del self._ids[gone]

    def matched(self) -> Matched:
        members: dict[Record, list[Record]] = defaultdict(list)
        for record in self._parent:
            members[self._root(record)].append(record)
        work_of, rule_of = {}, {}
        for root, records in members.items():
            work_id = _work_id(self._ids[root], records)
            rules = self._rules[root]
            rule_of[work_id] = (max(rules, key=RULES.index) if rules
                                else SAME_RECORD if self._rows[root] > 1 else SINGLE)
            for record in records:
                work_of[record] = work_id
        return Matched(work_of, rule_of)

    def _root(self, record: Record) -> Record:
        parent = self._parent[record]
        while parent != self._parent[parent]:
            self._parent[parent] = self._parent[self._parent[parent]]  # path halving
            parent = self._parent[parent]
        return parent


def _work_id(ids: dict[str, set[str]], records: list[Record]) -> str:
    anchor = next((f"{name}:{min(ids[name])}" for name in IDENTIFIERS if ids[name]),
                  "record:{}:{}".format(*min(records)))
    return "W" + hashlib.sha256(anchor.encode()).hexdigest()[:24]


def _precedence_sql() -> str:
    whens = " ".join(f"WHEN '{p}' THEN {rank}" for rank, p in enumerate(PROVIDER_PRECEDENCE))
    return f"CASE w.provider {whens} ELSE {len(PROVIDER_PRECEDENCE)} END"


def _first(column: str, order: str = "") -> str:
    """The first non-null value of `column` by precedence (and `order` before it), ties broken by the row's key."""
    return (f"first(w.{column} ORDER BY {order}{'precedence, ' if 'precedence' not in order else ''}{TIE_BREAK}) "
            f"FILTER (WHERE w.{column} IS NOT NULL)")


TIE_BREAK = "w.provider, w.provider_id, w.partition_date, w.query"

UNIQUE_WORKS_SELECT = f"""
WITH w AS (
    SELECT works.*, m.work_id, m.match_rule, {_precedence_sql().replace('w.provider', 'works.provider')} AS precedence
    FROM works JOIN matched m USING (provider, provider_id)
)
SELECT
    w.work_id,
    first(w.doi ORDER BY starts_with(w.doi, '{ARXIV_DOI_PREFIX}'), w.doi) FILTER (WHERE w.doi IS NOT NULL) AS doi,
    min(w.pmid) AS pmid, min(w.pmcid) AS pmcid, min(w.arxiv_id) AS arxiv_id,
    {_first('title')} AS title,
    first(w.abstract ORDER BY length(w.abstract) DESC, precedence, {TIE_BREAK}) FILTER (WHERE w.abstract IS NOT NULL) AS abstract,
    first(w.authors ORDER BY precedence, {TIE_BREAK}) FILTER (WHERE len(w.authors) > 0) AS authors,
    {_first('publication_date')} AS publication_date,
    first(w.publication_date_precision ORDER BY precedence, {TIE_BREAK})
        FILTER (WHERE w.publication_date IS NOT NULL) AS publication_date_precision,
    {_first('venue')} AS venue, {_first('publisher')} AS publisher, {_first('work_type')} AS work_type,
    {_first('language')} AS language,
    bool_or(w.is_oa) AS is_oa,
    {_first('oa_url', "w.provider <> 'openalex', ")} AS oa_url,
    {_first('license')} AS license,
    coalesce(max(w.cited_by_count) FILTER (WHERE w.provider = 'openalex'), max(w.cited_by_count)) AS cited_by_count,
    {_first('url')} AS url,
    list_sort(list_distinct(list(w.query))) AS queries,
    any_value(w.match_rule) AS match_rule,
    list({{'query': w.query, 'provider': w.provider, 'provider_id': w.provider_id,
           'partition_date': w.partition_date, 'record_hash': w.record_hash}}
         ORDER BY w.query, w.provider, w.provider_id, w.partition_date) AS sources
FROM w
GROUP BY w.work_id
ORDER BY w.work_id
"""


def build_unique_works(con: duckdb.DuckDBPyConnection) -> int:
    """Replace table `unique_works` with the works `works` holds now, in one transaction; returns its rows."""
    con.register("matched", match_records(con).as_table())
    con.register("empty_unique_works", UNIQUE_WORKS_SCHEMA.empty_table())
    try:
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute("CREATE OR REPLACE TABLE unique_works AS SELECT * FROM empty_unique_works")
            con.execute(f"INSERT INTO unique_works BY NAME {UNIQUE_WORKS_SELECT}")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    finally:
        con.unregister("matched")
        con.unregister("empty_unique_works")
    return con.execute("SELECT count(*) FROM unique_works").fetchone()[0]
