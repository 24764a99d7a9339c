"""Hand-written works planted on one day, `PLANTED_DAY` (2024-05-14), at exactly the providers named, so that a test can
assert the exact rows a cross-provider dataset must make of them.

Every corpus holds them (`Corpus(planted=())` leaves them out), whatever its seed: they
join the day's generated works, which keep their ids. Every search text finds them, so two
saved searches both do: the same work found by two searches. Their ids cannot collide with
generated ones: serials below 10¹⁰ (CORE ids equal to them), DOIs `…/planted.…`, PMIDs in
the day's planted slots (identifiers.PLANTED_SLOTS), arXiv numbers from 90000, 7-digit PMC ids.

The cases (`PLANTED_CASES`), each with the unique works a dataset should make of it, given
as the (provider, provider_id) records that are one work:
- `doi_at_three`: one DOI at OpenAlex, Crossref (which writes it in upper case) and Springer.
- `arxiv_versions`: an e-print that arXiv's feed lists twice on the day (`…v1` and `…v2`, the
  way two fetches of it look once it was revised), arXiv only, without a DOI; and its journal
  version, under another title, at Crossref (`relation.has-preprint` names the arXiv DOI)
  and CORE (`arxivId`, and its DOI as a doi.org link). Only the arXiv id ties them.
- `pmid_without_doi`: no DOI; at PubMed (with a PMC id) and at OpenAlex, which names it by `ids.pmid`.
- `title_parts`: "… Part I" and "… Part II", same year and first author, no DOI or ids, each at
  OpenAlex and CORE: two works, which no title rule may merge.
- `title_variants`: one work, no DOI or ids, at OpenAlex and at CORE under the same title
  written differently (case, punctuation, an accent, the first author's given name as an
  initial): a title + year + first author family name rule merges them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from scholar_pipeline.simulator.identifiers import PLANTED_SLOTS, arxiv_doi, pmid_for
from scholar_pipeline.simulator.work import SimAuthor, SimWork

PLANTED_DAY = dt.date(2024, 5, 14)  # a Tuesday; no test of the generated corpus uses it


@dataclass(frozen=True)
class PlantedCase:
    name: str
    works: tuple[SimWork, ...]
    unique: tuple[frozenset[tuple[str, str]], ...]  # the unique works: each the (provider, provider_id) records that are it
    linked_by: str  # what ties the records of one unique work


def _planted(serial: int, title: str, authors: tuple[SimAuthor, ...], providers: set[str], **fields) -> SimWork:
    defaults = dict(doi=None, abstract=None, venue="Scientific Reports", publisher="Springer Science and Business Media LLC",
                    work_type="article", language="en", license="cc-by", cited_by=3)
    return SimWork(serial=serial, title=title, authors=authors, published=PLANTED_DAY, providers=frozenset(providers),
                   planted=True, **(defaults | fields))


INGRID = SimAuthor("Ingrid", "Berg", "0000-0002-1825-0097", "University of Toronto")
KWAME = SimAuthor("Kwame", "Eze", None, "University of Cape Town")
LEA = SimAuthor("Léa", "Dubois", "0000-0001-5109-3700", "CNRS")
HIROSHI = SimAuthor("Hiroshi", "Ito", None, "Kyoto University")
JOSE = SimAuthor("José", "Álvarez", None, "Universidade de São Paulo")
FARAH = SimAuthor("Farah", "Hoffmann", None, None)

DOI_AT_THREE = _planted(
    9_000_000_005, "Planted overlap: one soil microbiome survey indexed by three providers", (INGRID, KWAME),
    {"openalex", "crossref", "springer"}, doi="10.1007/planted.2024.0514a",
    abstract="A survey of soil microbiome sampling protocols, registered once and indexed by three providers.")

ARXIV_ID = "2405.90001"
PREPRINT = _planted(
    9_000_000_001, "Sparse transfer learning for coral reef imagery", (LEA, HIROSHI), {"arxiv"},
    abstract="We transfer sparse models between coral reef survey sites and report robust accuracy.",
    venue="arXiv", publisher="arXiv", work_type="preprint", license=None, arxiv_id=ARXIV_ID, arxiv_versions=(1, 2))
JOURNAL_VERSION = _planted(
    9_000_000_004, "Sparse transfer learning for coral reef imagery across survey sites", (LEA, HIROSHI), {"crossref", "core"},
    doi="10.5555/planted.2024.0514b", arxiv_id=ARXIV_ID, venue="Ecology", publisher="Wiley",
    abstract="We transfer sparse models between coral reef survey sites and report robust accuracy across sites.")

PMID_WITHOUT_DOI = _planted(
    9_000_000_006, "Longitudinal gene expression in heat-stressed urban trees", (JOSE,), {"pubmed", "openalex"},
    pmid=pmid_for(PLANTED_DAY, PLANTED_SLOTS + 1), pmcid="PMC9051401", venue="Tree Physiology", publisher="Oxford University Press",
    abstract="We follow gene expression in urban trees through three heat waves.")

PART_ONE, PART_TWO = (_planted(
    serial, f"Bayesian inference for federated learning systems. Part {part}", (FARAH, KWAME), {"openalex", "core"},
    abstract=f"{which} of two papers on Bayesian inference for federated learning systems.")
    for serial, part, which in ((9_000_000_002, "I", "The first"), (9_000_000_003, "II", "The second")))

TITLE_AS_OPENALEX = _planted(
    9_000_000_007, "Café-scale urban heat island mapping: a multi-site evaluation", (LEA, INGRID), {"openalex"},
    abstract="Urban heat island maps at the scale of a street café, evaluated at several sites.")
TITLE_AS_CORE = _planted(
    9_000_000_008, "Cafe scale urban heat island mapping - A multi-site evaluation", (SimAuthor("L.", "Dubois", None, None), INGRID),
    {"core"}, abstract="Urban heat island maps at the scale of a street cafe, evaluated at several sites.")

PLANTED_CASES = (
    PlantedCase("doi_at_three", (DOI_AT_THREE,), (frozenset({
        ("openalex", "W9000000005"), ("crossref", "10.1007/planted.2024.0514a"), ("springer", "10.1007/planted.2024.0514a")}),),
        "doi"),
    PlantedCase("arxiv_versions", (PREPRINT, JOURNAL_VERSION), (frozenset({
        ("arxiv", f"{ARXIV_ID}v1"), ("arxiv", f"{ARXIV_ID}v2"), ("crossref", "10.5555/planted.2024.0514b"), ("core", "9000000004")}),),
        f"arxiv_id {ARXIV_ID} (Crossref: has-preprint {arxiv_doi(ARXIV_ID)}; CORE: arxivId)"),
    PlantedCase("pmid_without_doi", (PMID_WITHOUT_DOI,), (frozenset({
        ("pubmed", PMID_WITHOUT_DOI.pmid), ("openalex", "W9000000006")}),), f"pmid {PMID_WITHOUT_DOI.pmid}"),
    PlantedCase("title_parts", (PART_ONE, PART_TWO), (
        frozenset({("openalex", "W9000000002"), ("core", "9000000002")}),
        frozenset({("openalex", "W9000000003"), ("core", "9000000003")})), "nothing: two works"),
    PlantedCase("title_variants", (TITLE_AS_OPENALEX, TITLE_AS_CORE), (frozenset({
        ("openalex", "W9000000007"), ("core", "9000000008")}),), "title + year + first author family name"),
)
PLANTED_WORKS = tuple(work for case in PLANTED_CASES for work in case.works)
PLANTED = {case.name: case for case in PLANTED_CASES}


def planted_record_ids(provider: str) -> set[str]:
    """The ids of the planted records `provider` serves on PLANTED_DAY, as `record_ids` and the parsers' `provider_id` give them."""
    return {record_id for case in PLANTED_CASES for unique in case.unique for name, record_id in unique if name == provider}
