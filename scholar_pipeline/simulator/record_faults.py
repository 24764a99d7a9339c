"""Faults in the records of a page that otherwise answers correctly (faults.RECORD_FAULTS).

Each simulated API says where its records sit (`JsonRecords`, `XmlRecords`); the fault
is carried out on the body its route produced, so every other byte stays the API's own:
- `empty-page`: the page holds no records, its totals and cursor unchanged;
- `missing-fields`: every record loses its abstract, an optional field;
- `wrong-types`: every record carries a field of another type (a number for a title, a
  word for a date);
- `new-fields`: every record gains a field no baseline knows (schema drift).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

NEW_FIELD, NEW_FIELD_VALUE = "x_provider_new_field", {"added_in": "v2", "values": [1, 2]}


@dataclass(frozen=True)
class JsonRecords:
    path: tuple[str, ...]  # keys from the body's root to its list of records
    abstract: str
    retyped: str  # a text field, given a number by `wrong-types`

    def alter(self, body: bytes, fault: str) -> bytes:
        page = json.loads(body)
        holder = page
        for key in self.path[:-1]:
            holder = holder[key]
        records: list[dict[str, Any]] = holder[self.path[-1]]
        if fault == "empty-page":
            holder[self.path[-1]] = []
        for record in records:
            if fault == "missing-fields":
                record.pop(self.abstract, None)
            elif fault == "wrong-types":
                record[self.retyped] = 456
            elif fault == "new-fields":
                record[NEW_FIELD] = NEW_FIELD_VALUE
        return json.dumps(page, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass(frozen=True)
class XmlRecords:
    record: str  # the element of one record
    abstract: str
    retyped: str  # an element holding a date, given a word by `wrong-types`

    def alter(self, body: bytes, fault: str) -> bytes:
        if fault == "empty-page":
            return _elements(self.record).sub(b"", body)
        if fault == "missing-fields":
            return _elements(self.abstract).sub(b"", body)
        if fault == "wrong-types":
            return _elements(self.retyped).sub(f"<{self.retyped}>sometime</{self.retyped}>".encode(), body)
        opening = re.compile(rb"(<%s(?:\s[^>]*)?>)" % self.record.encode())
        return opening.sub(rb"\1<%s>added in v2</%s>" % (NEW_FIELD.encode(), NEW_FIELD.encode()), body)


def _elements(tag: str) -> re.Pattern[bytes]:
    return re.compile(rb"<%s(?:\s[^>]*)?>.*?</%s>\s*" % (tag.encode(), tag.encode()), re.S)
