"""The check every offset-paged provider makes of a page (PLOS, Springer Nature, CORE): is it where it says it is?

Offset paging asks for records `start` to `start + size` of a result set the provider holds
while the pages are fetched. A page before the end holds a full `size`; a page that is
empty or short before the reported total means the result set changed or was lost while
paging, and taking it as the end would drop the rest of the day silently. A page reaching
past the total contradicts itself. Either is refused as a MalformedPage, which keeps it
out of the HTTP cache, so a rerun asks again.
"""

from __future__ import annotations

from scholar_pipeline.providers.base import MalformedPage


def offset_page_end(provider: str, position: str, first: int, records: int, size: int, total_name: str, total: int) -> int:
    """How many records of the result set have come once this page is read; MalformedPage for a page out of place.

    `first` is the 0-based place of the page's first record, `position` how the request
    named it (`start=40`, `s=41`, `offset 40`) and `total_name` what the provider calls its
    total, so the message quotes the provider's own words.
    """
    reached = first + records
    if reached > total:
        raise MalformedPage(f"{provider} reports {total_name}={total} on a page holding records {first + 1} to {reached}")
    if reached < total and records == 0:
        raise MalformedPage(f"{provider} sent an empty page at {position} although it reports {total_name}={total}; the result "
                            "set changed or was lost while paging, and taking it as the end would drop the rest of the day")
    if reached < total and records < size:
        raise MalformedPage(f"{provider} sent {records} of {size} records at {position} although it reports {total_name}={total}; "
                            "taking the short page as the end would drop the rest of the day")
    return reached
