"""Schema drift: the fields of a partition's raw records against a baseline recorded from the provider's real answers.

Parsing survives drift on its own (unknown fields are ignored, a missing one is NULL, a
value of another type is NULL and reported: normalize.py); this module says that the
format moved, so a person looks before a field the parser reads goes the same way.

The shape of a set of raw records (`Shape`, each provider's `raw_records`: JSON objects,
XML elements as the provider reads them into dicts): for every field path, the JSON types
seen (null, bool, number, string, list, object) and how many records hold it. A path
names object keys joined by `.` and list elements as `[]`, as the provider names them
(`authorships[].author.orcid`, `MedlineCitation.Article.ELocationID[].@EIdType`). It
stops at a provider's `drift_opaque_fields`, objects whose keys are data (OpenAlex's
`abstract_inverted_index` is keyed by words), and `MAX_DEPTH` levels down: such a value
is described by its type alone.

A report (`compare`) lists, for a partition against its provider's baseline:
- new fields: paths the baseline never saw;
- missing fields: paths every baseline record holds, and none of the partition's records,
  when it has at least MIN_RECORDS_FOR_MISSING of them.
  Optional fields come and go from record to record (a Crossref abstract, an OpenAlex
  `grants` list), so a record without one says nothing; a field that every recorded
  answer carries and a whole partition lacks has vanished from the format;
- retyped fields: a type the baseline never saw at that path. Null is no type here: it
  is how providers write "no value", as an absent key is, and a baseline of a few hundred
  records cannot have seen every optional field empty; a value of another type where the
  baseline saw only nulls is reported. Types are all it compares: a date element that
  holds a word is text still (`values_well_typed` reports a value its field cannot take).
A field under one reported is part of that report and not listed again (the keys of a
new object, the children of a vanished one).

Baselines live in `providers/baselines/<provider>.json`, recorded from the pages under
`scholar_pipeline_tests/data/real_responses/<provider>` and `documented_shapes/<provider>`
(Springer and CORE, for which no recorded answer exists; documented fields that no
recorded page happens to show, such as PubMed's `CollectiveName`). Record them again after a parser
change or a new recorded page (a test fails until then):

    python -m scholar_pipeline.drift --record

and without `--record` it says which stored baselines differ from what the pages give.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from scholar_pipeline.providers import PROVIDERS
from scholar_pipeline.providers.base import MalformedPage
from scholar_pipeline.settings import PROJECT_ROOT

# A field is missing from a partition only when this many of its records lack it: a baseline of a few dozen records
# makes some optional fields look constant (every recorded arXiv entry has a comment), and a small day would say so.
MIN_RECORDS_FOR_MISSING = 20
MAX_DEPTH = 12  # levels of objects and lists below a record; PubMed's deepest field read is 9
TYPES = ("null", "bool", "number", "string", "list", "object")  # in the order reports show them
_TYPE_OF = {type(None): "null", bool: "bool", int: "number", float: "number", str: "string", list: "list", dict: "object"}
_VALUES = frozenset(TYPES[:4])  # null, bool, number, string
NEW, MISSING, RETYPED = "new", "missing", "retyped"

BASELINES = Path(__file__).parent / "providers" / "baselines"
TEST_DATA = PROJECT_ROOT / "scholar_pipeline_tests" / "data"
# Recorded pages that answer another question than the pipeline asks, with why they are not in a baseline.
NOT_IN_BASELINE = {"real_responses/plos/fulltext_search_ecology_rows200_ids.json": "asked for the `id` field alone (fl=id)"}


@dataclass
class FieldSeen:
    records: int  # records holding the path at least once
    types: set[str]


@dataclass
class Shape:
    """What fields a set of raw records holds, with their types and how many records hold each."""

    records: int = 0
    fields: dict[str, FieldSeen] = field(default_factory=dict)

    def add(self, raw_records: Iterable[Any], opaque: frozenset[str] = frozenset()) -> None:
        for record in raw_records:
            present: set[str] = set()
            if isinstance(record, dict):  # anything else cannot be a row, and its page fails
                for key, value in record.items():
                    _walk(value, key, 1, opaque, self.fields, present)
            self.records += 1
            for path in present:
                self.fields[path].records += 1

    def to_json(self) -> dict[str, Any]:
        return {"records": self.records,
                "fields": {path: {"records": f.records, "types": _ordered(f.types)} for path, f in sorted(self.fields.items())}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Shape:
        return cls(data["records"], {path: FieldSeen(f["records"], set(f["types"])) for path, f in data["fields"].items()})


def _walk(value: Any, path: str, depth: int, opaque: frozenset[str], fields: dict[str, FieldSeen], present: set[str]) -> None:
    """Add `value` at `path` and what it holds to `fields`, and their paths to the record's `present`."""
    kind = _TYPE_OF.get(type(value)) or type(value).__name__
    _seen(fields, present, path, {kind})
    if depth >= MAX_DEPTH or path in opaque:
        return
    if kind == "object":
        for key, item in value.items():
            _walk(item, f"{path}.{key}", depth + 1, opaque, fields, present)
    elif kind == "list" and value:
        element = path + "[]"
        kinds = {_TYPE_OF.get(type(item)) or type(item).__name__ for item in value}
        if kinds <= _VALUES:  # a list of values, the common case: no walk
            _seen(fields, present, element, kinds)
        else:
            for item in value:
                _walk(item, element, depth + 1, opaque, fields, present)


def _seen(fields: dict[str, FieldSeen], present: set[str], path: str, kinds: set[str]) -> None:
    present.add(path)
    known = fields.get(path)
    if known is None:
        fields[path] = FieldSeen(0, kinds)
    else:
        known.types |= kinds


def _ordered(types: Iterable[str]) -> list[str]:
    return sorted(types, key=lambda t: (TYPES.index(t) if t in TYPES else len(TYPES), t))


@dataclass(frozen=True)
class FieldDrift:
    path: str
    change: str  # NEW, MISSING or RETYPED
    baseline_types: tuple[str, ...]
    seen_types: tuple[str, ...]
    records: int  # records of the partition holding the field


def compare(baseline: Shape, seen: Shape, min_records_for_missing: int = MIN_RECORDS_FOR_MISSING) -> list[FieldDrift]:
    """The fields of `seen` that are retyped, missing or new against `baseline` (the rules are in the module docstring),
    in that order (what the parser may read as NULL now first, an unknown field last), each kind by path."""
    if not seen.records:
        return []
    drifts = []
    for path, now in seen.fields.items():
        before = baseline.fields.get(path)
        if before is None:
            drifts.append(FieldDrift(path, NEW, (), tuple(_ordered(now.types)), now.records))
        elif now.types - before.types - {"null"}:
            drifts.append(FieldDrift(path, RETYPED, tuple(_ordered(before.types)), tuple(_ordered(now.types)), now.records))
    for path, before in baseline.fields.items():
        if seen.records >= min_records_for_missing and before.records == baseline.records and path not in seen.fields:
            drifts.append(FieldDrift(path, MISSING, tuple(_ordered(before.types)), (), 0))
    reported = {d.path for d in drifts}
    order = (RETYPED, MISSING, NEW)
    return sorted((d for d in drifts if not any(a in reported for a in _ancestors(d.path))), key=lambda d: (order.index(d.change), d.path))


def _ancestors(path: str) -> Iterable[str]:
    """`a.b[].c` -> `a`, `a.b`, `a.b[]`."""
    for index, character in enumerate(path):
        if character == "." or path.startswith("[]", index):
            yield path[:index]


@cache
def baseline(provider: str) -> Shape:
    """The shape recorded for `provider`'s records (see the module docstring)."""
    return Shape.from_json(json.loads((BASELINES / f"{provider}.json").read_text()))


def recorded_pages(provider: str) -> list[Path]:
    """The answers a baseline is made from: the provider's real responses and its documented shapes (written from the
    provider's documentation where no recorded answer shows a field, see documented_shapes/README.md)."""
    pages = [p for folder in ("real_responses", "documented_shapes") for p in sorted((TEST_DATA / folder / provider).glob("*"))
             if p.suffix in (".json", ".xml") and p.relative_to(TEST_DATA).as_posix() not in NOT_IN_BASELINE]
    if not pages:
        raise FileNotFoundError(f"no recorded answer of {provider} under {TEST_DATA}")
    return pages


def baseline_json(provider: str) -> str:
    """The baseline file's text for `provider`, from its recorded pages: the pages read, then the shape.

    A page that holds no records (PubMed's esearch answers) is left out. Records of a
    provider whose request names the fields it wants (`requested_fields`, PLOS's `fl`)
    keep only those: the recorded pages were asked for others.
    """
    parser = PROVIDERS[provider]
    shape, pages = Shape(), []
    for page in recorded_pages(provider):
        try:
            records = parser.raw_records(page.read_bytes())
        except MalformedPage:
            continue
        if parser.requested_fields is not None:
            records = [{k: v for k, v in r.items() if k in parser.requested_fields} for r in records]
        shape.add(records, parser.drift_opaque_fields)
        pages.append(page.relative_to(TEST_DATA).as_posix())
    data = {"provider": provider, "pages": pages, **shape.to_json()}
    # One field a line, so that a changed baseline reads as a short diff.
    head = json.dumps({k: v for k, v in data.items() if k != "fields"}, indent=1, ensure_ascii=False)[:-2]
    lines = [f"  {json.dumps(path, ensure_ascii=False)}: {json.dumps(seen, ensure_ascii=False)}" for path, seen in data["fields"].items()]
    return head + ',\n "fields": {\n' + ",\n".join(lines) + "\n }\n}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scholar_pipeline.drift", description=__doc__.split("\n\n")[0])
    parser.add_argument("--record", action="store_true", help="write every provider's baseline from its recorded pages")
    record = parser.parse_args(argv).record
    stale = []
    for provider in PROVIDERS:
        path, text = BASELINES / f"{provider}.json", baseline_json(provider)
        if record:
            path.write_text(text)
            print(f"{path}: {json.loads(text)['records']} records")
        elif not path.exists() or path.read_text() != text:
            stale.append(provider)
    if stale:
        print(f"baselines that differ from their recorded pages: {', '.join(stale)}; run with --record", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
