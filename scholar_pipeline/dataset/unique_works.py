"""`unique_works`: the rows of `works` grouped into real-world works, across providers and saved searches.

Which rows are one work. A provider record (provider, provider_id) is one work wherever it
was found. Records are then joined, in this order, by a shared:
1. `doi`;
2. `pmid`, 3. `pmcid`, 4. `arxiv_id` (bare and without version, so arXiv versions collapse;
   a journal record that names its preprint's arXiv id joins the preprint);
   no id joins two groups that hold different PMIDs, PMCIDs or arXiv ids (`ONE_PER_WORK`);
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
- the DOI and the bibliographic fields (title, authors, venue, publisher, type, language,
  license, url, the publication date): the first source that has one, published versions
  before preprints (arXiv, an arXiv DOI, type `preprint` or `posted-content`), then in
  `PROVIDER_PRECEDENCE` (registries first, preprint servers last);
- the smallest PMID, PMCID and arXiv id;
- the abstract: the longest;
- `cited_by_count`: OpenAlex's (its largest), else the largest of any source;
- `is_oa`: true when any source says so, false when some say false and none true;
  `oa_url`: OpenAlex's first, then by precedence.
Ties are broken by (provider, provider_id, partition_date, query), so the same `works`
gives the same table, byte for byte, whatever order its rows are in.

`work_id` is a hash of the work's anchor: its smallest DOI, else PMID, PMCID, arXiv id,
else its smallest provider record (with that record added when another work has the
same anchor: a DOI two works hold). It stays the same across rebuilds of the same
`works`. It changes when data arriving later gives the work another anchor: a preprint known
by its arXiv id alone takes its journal version's DOI once that record lands.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from scholar_pipeline.identifiers import ARXIV_DOI_PREFIX
from scholar_pipeline.schema import IDENTIFIERS, UNIQUE_WORKS_SCHEMA
from scholar_pipeline.warehouse import transaction

RULES = ["doi", "pmid", "pmcid", "arxiv_id", "title_year_author"]  # in the order they are applied
SAME_RECORD, SINGLE = "provider_id", "none"
PROVIDER_PRECEDENCE = ["crossref", "pubmed", "openalex", "springer", "plos", "core", "arxiv"]
MIN_TITLE_WORDS = 3
# A work has one of each of these; a DOI shared by two records with different ones (a proceedings DOI that two arXiv
# preprints name, a DOI on a PubMed record and on its erratum) does not make them one work. A work may have two DOIs
# (a preprint's and the journal's), so DOIs never refuse a join by another id.
ONE_PER_WORK = ["pmid", "pmcid", "arxiv_id"]
NAME_SUFFIXES = frozenset({"jr", "sr", "ii", "iii", "iv"})

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
    if not title.isascii():  # most titles are ASCII, which NFKD leaves alone: a third of the time
        decomposed = unicodedata.normalize("NFKD", title)
        title = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(_NOT_WORD.sub(" ", title.casefold()).split()) or None


def family_name(name: str | None) -> str | None:
    """The family name of a display name in reading order ("Émilie Färber" -> "farber", "John Smith Jr." -> "smith"):
    its last word but a suffix, normalized."""
    words = [word for word in (normalized_title(name) or "").split() if word not in NAME_SUFFIXES]
    return words[-1] if words else None


def match_records(con: duckdb.DuckDBPyConnection) -> Matched:
    """Group every provider record of `works` into works by the rules above."""
    groups = _Groups()
    title_keys: dict[int, tuple[str, int, str]] = {}
    for provider, provider_id, *ids, title, year, first_author, rows in _record_lines(con):
        record = groups.add((provider, provider_id), dict(zip(IDENTIFIERS, ids)), rows)
        if record not in title_keys and year is not None and first_author and title:
            key = (normalized_title(title), year, family_name(first_author))
            if all(key) and key[0].count(" ") + 1 >= MIN_TITLE_WORDS:
                title_keys[record] = key
    for rule in IDENTIFIERS:
        first_with: dict[str, int] = {}
        for record in range(len(groups)):
            for value in sorted(groups.identifiers(record).get(rule, ())):
                if value in first_with:
                    if not groups.contradict(first_with[value], record, ONE_PER_WORK):
                        groups.join(first_with[value], record, rule)
                else:
                    first_with[value] = record
    by_title: dict[tuple[str, int, str], list[int]] = defaultdict(list)
    for record, key in sorted(title_keys.items()):
        by_title[key].append(record)
    for same_title in by_title.values():
        for position, record in enumerate(same_title[1:], start=1):
            for earlier in same_title[:position]:
                if not groups.contradict(earlier, record, IDENTIFIERS):
                    groups.join(earlier, record, "title_year_author")
                    break
    return groups.matched()


def _record_lines(con: duckdb.DuckDBPyConnection, batch_rows: int = 100_000):
    """One line per provider record and set of values (a record found by several searches or on several days is one
    line, with its count of rows), in record order, a batch at a time: the lines of a large `works` are never all in
    Python's memory at once."""
    reader = con.execute(
        f"SELECT provider, provider_id, {', '.join(IDENTIFIERS)}, title, year(publication_date), authors[1].name, "
        "count(*) FROM works GROUP BY ALL ORDER BY ALL"
    ).fetch_record_batch(batch_rows)
    for batch in reader:
        yield from zip(*(column.to_pylist() for column in batch.columns))


class _Groups:
    """Union-find over provider records (numbered in the order they are added), remembering each group's identifiers,
    rows and the rules that joined it."""

    def __init__(self) -> None:
        self._records: list[Record] = []
        self._number: dict[Record, int] = {}
        self._parent: list[int] = []
        self._rows: list[int] = []
        self._ids: dict[int, dict[str, set[str]]] = {}  # of a group's root, when it has any: only the kinds it has
        self._rules: dict[int, set[str]] = {}  # of a group's root, once a rule joined it

    def __len__(self) -> int:
        return len(self._records)

    def add(self, record: Record, ids: dict[str, str | None], rows: int) -> int:
        number = self._number.get(record)
        if number is None:
            number = self._number[record] = len(self._records)
            self._records.append(record)
            self._parent.append(number)
            self._rows.append(0)
        root = self._root(number)
        self._rows[root] += rows
        for name, value in ids.items():
            if value:
                self._ids.setdefault(root, {}).setdefault(name, set()).add(value)
        return number

    def identifiers(self, record: int) -> dict[str, set[str]]:
        return self._ids.get(self._root(record), {})

    def contradict(self, a: int, b: int, kinds: list[str]) -> bool:
        """Two groups that name different ids of one of these kinds are different works."""
        ids_a, ids_b = self.identifiers(a), self.identifiers(b)
        return any(name in ids_a and name in ids_b and not ids_a[name] & ids_b[name] for name in kinds)

    def join(self, a: int, b: int, rule: str) -> None:
        root_a, root_b = self._root(a), self._root(b)
        if root_a == root_b:
            return
        keep, gone = min(root_a, root_b), max(root_a, root_b)
        self._parent[gone] = keep
        for name, values in self._ids.pop(gone, {}).items():
            self._ids.setdefault(keep, {}).setdefault(name, set()).update(values)
        self._rules[keep] = self._rules.get(keep, set()) | self._rules.pop(gone, set()) | {rule}
        self._rows[keep] += self._rows[gone]

    def matched(self) -> Matched:
        members: dict[int, list[Record]] = defaultdict(list)
        for number, record in enumerate(self._records):
            members[self._root(number)].append(record)
        anchors = {root: _anchor(self._ids.get(root, {}), records) for root, records in members.items()}
        shared = {anchor for anchor, count in Counter(anchors.values()).items() if count > 1}
        work_of, rule_of = {}, {}
        for root, records in members.items():
            # An id two works both hold (a DOI whose join an id of one per work refused) anchors neither alone.
            anchor = anchors[root] + (" {}:{}".format(*min(records)) if anchors[root] in shared else "")
            work_id = "W" + hashlib.sha256(anchor.encode()).hexdigest()[:24]
            rules = self._rules.get(root)
            rule_of[work_id] = (max(rules, key=RULES.index) if rules
                                else SAME_RECORD if self._rows[root] > 1 else SINGLE)
            for record in records:
                work_of[record] = work_id
        return Matched(work_of, rule_of)

    def _root(self, number: int) -> int:
        parent = self._parent
        while parent[number] != number:
            parent[number] = parent[parent[number]]  # path halving
            number = parent[number]
        return number


def _anchor(ids: dict[str, set[str]], records: list[Record]) -> str:
    return next((f"{name}:{min(ids[name])}" for name in IDENTIFIERS if name in ids), "record:{}:{}".format(*min(records)))


PREPRINT_TYPES = ("preprint", "posted-content")  # OpenAlex's and Crossref's names for a preprint
TIE_BREAK = "w.provider, w.provider_id, w.partition_date, w.query"
# Lower is first: a published version before a preprint, then the providers in PROVIDER_PRECEDENCE.
PRECEDENCE = (
    f"CASE WHEN works.provider = 'arxiv' OR works.work_type IN {PREPRINT_TYPES} "
    f"OR starts_with(works.doi, '{ARXIV_DOI_PREFIX}') THEN {len(PROVIDER_PRECEDENCE) + 1} ELSE 0 END + "
    f"CASE works.provider {' '.join(f'WHEN {p!r} THEN {rank}' for rank, p in enumerate(PROVIDER_PRECEDENCE))} "
    f"ELSE {len(PROVIDER_PRECEDENCE)} END"
)


def _first(column: str, before: str = "") -> str:
    """The first non-null value of `column` by `before` (if given), then precedence; ties broken by the row's key."""
    return f"first(w.{column} ORDER BY {before}precedence, {TIE_BREAK}) FILTER (WHERE w.{column} IS NOT NULL)"


UNIQUE_WORKS_SELECT = f"""
WITH w AS (
    SELECT works.*, m.work_id, m.match_rule, {PRECEDENCE} AS precedence
    FROM works JOIN matched m USING (provider, provider_id)
)
SELECT
    w.work_id,
    {_first('doi')} AS doi,
    min(w.pmid) AS pmid, min(w.pmcid) AS pmcid, min(w.arxiv_id) AS arxiv_id,
    {_first('title')} AS title,
    {_first('abstract', 'length(w.abstract) DESC, ')} AS abstract,
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
    """Replace table `unique_works` with the works `works` holds now, in one transaction, whose snapshot the matching
    reads too (DuckLake lands partitions meanwhile); returns its rows."""
    con.register("empty_unique_works", UNIQUE_WORKS_SCHEMA.empty_table())
    try:
        with transaction(con):
            con.register("matched", match_records(con).as_table())
            con.execute("CREATE OR REPLACE TABLE unique_works AS SELECT * FROM empty_unique_works")
            con.execute(f"INSERT INTO unique_works BY NAME {UNIQUE_WORKS_SELECT}")
            return con.execute("SELECT count(*) FROM unique_works").fetchone()[0]
    finally:
        con.unregister("matched")
        con.unregister("empty_unique_works")
