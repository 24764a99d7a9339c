"""Springer Nature Meta API `/meta/v2/json`: the online-date window inside `q`, `s`/`p` paging, a required key.

Request: `q` holds the search (see `search_terms`) followed by `onlinedatefrom:D
onlinedateto:D`; constraints and terms separated by spaces must all hold. The online date
is the day a work first appears, so a daily fetch sees new works as they come out; the
Basic plan's other window, `datefrom:`/`dateto:`, is the cover date, often months later
and often only a month (`year:` is a Premium feature). `s` is the 1-based number of the first record, `p` the page size: at most
25 on the Basic plan and 100 on Premium, so the default is 25 and
SCHOLAR_PIPELINE_SPRINGER_PAGE_SIZE raises it for a Premium key. Asking a Basic key for
more is answered 403 "This is a premium feature", which `explain_refusal` turns into that
advice. The key (`api_key`, from SPRINGER_NATURE_API_KEY) is required: without it a
partition fails before any request. Rate: 100 requests a minute and 500 a day on Basic
(sprynger#29, 2024); the daily budget is not enforced here, so a backfill larger than
12,500 records a day at 25 a page meets Springer's 429 and fails the partitions it reaches.

Wire format: {"apiMessage", "query", "result": [{"total", "start", "pageLength",
"recordsDisplayed"}], "records": [record, ...], "facets": [...], "nextPage"}. The counts
are strings ("1"); a number is read too. Paging: `s` moves on by the records received
while they are fewer than `total`; an empty or short page before that is refused
(`paging.offset_page_end`). Springer's order without `sort:` (a Premium feature) is not
documented as stable: a record that moved between pages would come twice and push
another out, which `matches_provider_total` cannot see.

Records (fixtures written from the documented shape: sprynger's record of a live answer,
`scholar_pipeline_tests/data/documented_shapes/springer`):
- `provider_id` and `doi` come from `identifier` (`doi:10.1007/...`; every Springer record
  has a DOI, books and chapters too).
- `abstract` is plain text: the live record quoted by sprynger holds a bare `<`
  ("P < 0.001") and section headings run into the text ("Purpose ... Methods ..."), so
  whitespace is tidied and nothing else. `title` is read as markup (a `<` that opens no
  known tag stays text), in case a title keeps the italics of a species name.
- `creators[].creator` is "Family, Given" (turned to reading order), with `ORCID`.
- `publication_date` is `onlineDate`, the date the partition selects on (the print
  `publicationDate` is often months later); `publicationDate` only when it is missing.
- `openaccess` is the string "true" or "false"; an open-access record's `oa_url` is its
  pdf link. `copyright` ("©2024 The Author(s)") names no license, so `license` stays NULL.
  There are no citation counts or affiliations in the JSON, and no PMID, PMCID or arXiv
  id (`pmid`, `pmcid`, `arxiv_id` are NULL; the DOI is the publisher's own).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from scholar_pipeline.providers.base import (
    SET_TO_NULL, Credential, MalformedPage, PageInfo, PageRequest, ParsedRecords, Provider, RecordReader, load_json, read_records,
    require,
)
from scholar_pipeline.providers.boolean_query import QueryLanguage
from scholar_pipeline.providers.paging import offset_page_end
from scholar_pipeline.settings import ProviderSettings
from scholar_pipeline.text import bare_doi, bare_orcid, markup_to_text, name_in_reading_order, plain_text, read_iso_date

BASIC_PLAN_PAGE = 25  # records a call on the Basic plan; Premium allows MAX_PAGE
MAX_PAGE = 100
# Letters and digits make a word; any other character separates (`COVID-19` is the phrase "COVID 19"),
# so no `:` (a constraint such as `title:`) or `*` reaches Springer's parser.
QUERY_LANGUAGE = QueryLanguage("springer", re.compile(r"[^\W_]+"))
_COUNT = re.compile(r"\d+")


class Springer(Provider):
    name = "springer"
    defaults = ProviderSettings(base_url="https://api.springernature.com", rate_limit=100 / 60, page_size=BASIC_PLAN_PAGE,
                                max_records=10_000)
    credential = Credential(env="SPRINGER_NATURE_API_KEY", query_param="api_key", required=True,
                            signup_url="https://dev.springernature.com")

    def first_request(self, text: str, day: dt.date, page_size: int, mailto: str | None) -> PageRequest:
        q = f"{self.search_terms(text)} onlinedatefrom:{day} onlinedateto:{day}"
        return PageRequest("/meta/v2/json", (("q", q), ("s", "1"), ("p", str(min(page_size, MAX_PAGE)))))

    def search_terms(self, text: str) -> str:
        """The text in Springer's query syntax: words and "phrases" with AND, OR, NOT and parentheses, as written.

        Adjacent terms must all occur; a word holding other characters is searched as the
        phrase of its letter-and-digit pieces. Refused (SearchTextError) as in the shared
        boolean reader (`boolean_query`): no word, an unmatched quote or parenthesis, an
        operator without a term on each side.
        """
        super().search_terms(text)
        return QUERY_LANGUAGE.write_operand(text)

    def explain_refusal(self, request: PageRequest, status: int, body: bytes) -> str | None:
        if status != 403 or b"premium" not in body.lower():
            return super().explain_refusal(request, status, body)
        if int(request.param("p") or 0) > BASIC_PLAN_PAGE:
            return (f"Springer Nature serves pages above {BASIC_PLAN_PAGE} records only on a Premium plan, and this request "
                    f"asked for p={request.param('p')}: set SCHOLAR_PIPELINE_SPRINGER_PAGE_SIZE to {BASIC_PLAN_PAGE} or less, "
                    "or use a Premium key in SPRINGER_NATURE_API_KEY.")
        return "Springer Nature serves this request only on a Premium plan; the key in SPRINGER_NATURE_API_KEY is not on one."

    def inspect(self, request: PageRequest, body: bytes) -> PageInfo:
        page = _page(body)
        records, total, start = len(page["records"]), page["total"], int(request.param("s") or 1)
        size = int(request.param("p") or BASIC_PLAN_PAGE)
        if page["start"] != start:
            raise MalformedPage(f"springer answered for s={page['start']} when asked for s={start}")
        if page["recordsDisplayed"] != records:
            raise MalformedPage(f"springer says recordsDisplayed={page['recordsDisplayed']} on a page holding {records} records")
        reached = offset_page_end("springer", f"s={start}", start - 1, records, size, "total", total)
        following = request.with_param("s", str(reached + 1)) if reached < total else None
        return PageInfo(records=records, total=total, next_request=following)

    def raw_records(self, body: bytes) -> list[Any]:
        return _page(body)["records"]

    def read_raw_records(self, raw_records: list[Any]) -> ParsedRecords:
        return read_records(self.name, "records", raw_records, _record)


def _page(body: bytes) -> dict[str, Any]:
    """The page's records and its counts as numbers; an error body (`{"status": "Fail", "message"}`) is refused."""
    page = load_json("springer", body)
    if isinstance(page, dict) and page.get("status") == "Fail":
        raise MalformedPage(f"springer answered with an error: {str(page.get('message'))[:300]}")
    require("springer", isinstance(page, dict) and isinstance(page.get("records"), list), "no `records` list", body)
    result = page.get("result")
    require("springer", isinstance(result, list) and len(result) == 1 and isinstance(result[0], dict), "no `result` object", body)
    counts = {name: _count(result[0].get(name)) for name in ("total", "start", "recordsDisplayed")}
    for name, value in counts.items():
        require("springer", value is not None, f"`result[0].{name}` is not a count", body)
    return {"records": page["records"], **counts}


def _count(value: Any) -> int | None:
    """Springer's counts are strings of digits ("25"); a number is accepted too."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value >= 0 else None
    return int(value) if isinstance(value, str) and _COUNT.fullmatch(value) else None


def _record(r: RecordReader) -> dict[str, Any]:
    doi = r.identify("identifier", bare_doi)
    online, printed = r.text("onlineDate"), r.text("publicationDate")
    shown = ("onlineDate",) if online else ("publicationDate",)
    published, precision = r.date(shown, online or printed, read_iso_date(online or printed))
    is_oa = _open_access(r)
    links = {link.text("format"): link.text("value") for link in r.objects("url") or ()}
    return {
        "provider": "springer",
        "provider_id": doi,
        "doi": doi,
        "pmid": None,
        "pmcid": None,
        "arxiv_id": None,
        "title": markup_to_text(r.text("title")),
        "abstract": plain_text(r.text("abstract")),
        "authors": [
            {"name": name_in_reading_order(c.text("creator")), "orcid": bare_orcid(c.text("ORCID")), "affiliations": []}
            for c in r.objects("creators") or ()
        ],
        "publication_date": published,
        "publication_date_precision": precision,
        "venue": plain_text(r.text("publicationName")),
        "publisher": plain_text(r.text("publisher")),
        "work_type": plain_text(r.text("contentType")),
        "language": plain_text(r.text("language")),
        "is_oa": is_oa,
        "oa_url": links.get("pdf") if is_oa else None,
        "license": None,
        "cited_by_count": None,
        "url": f"https://doi.org/{doi}",
    }


def _open_access(r: RecordReader) -> bool | None:
    value = r.value("openaccess")
    if value in ("true", "false"):
        return value == "true"
    if isinstance(value, bool):
        return value
    if value is not None:
        r.report(("openaccess",), value, SET_TO_NULL)
    return None
