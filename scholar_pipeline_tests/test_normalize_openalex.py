"""OpenAlex pages normalize into the works schema; expected values were read off the recorded files."""

import collections
import datetime as dt
import json
import random

from scholar_pipeline.normalize import normalize_page
from scholar_pipeline.providers.openalex import abstract_from_inverted_index
from scholar_pipeline.schema import RECORD_FIELDS
from scholar_pipeline_tests.conftest import real_response

BIG_PAGE = "openalex/openalexpro_works_search_biodiversity_finance_per200_cursor_p1.json"
ID_PAGE = "openalex/openalexpro_works_filter_ids_cursor_p1.json"
LAST_PAGE = "openalex/openalexpro_works_filter_ids_cursor_p2_end.json"


def test_full_page_of_200_records_normalizes_every_record():
    table = normalize_page("openalex", real_response(BIG_PAGE))
    assert table.schema == RECORD_FIELDS
    assert table.num_rows == 200
    rows = table.to_pylist()
    assert rows[0]["provider_id"] == "W4235089722"
    assert rows[0]["doi"] == "10.1111/1468-2346.00131"
    assert rows[0]["title"] == "Biodiversity Finance"
    assert rows[0]["publication_date"] == dt.date(2000, 4, 1)
    assert rows[0]["abstract"].startswith("The 1992 Convention on Biological Diversity (CBD) challenged")
    assert rows[1]["provider_id"] == "W100927044" and rows[1]["doi"] == "10.18235/0008810"
    assert len(rows[1]["authors"]) == 3
    assert rows[199]["provider_id"] == "W2789473385" and rows[199]["doi"] is None
    assert rows[199]["publication_date"] == dt.date(2009, 1, 1)
    # 137 of the 200 works carry a DOI and 151 an abstract in the recording.
    assert sum(r["doi"] is not None for r in rows) == 137
    assert sum(r["abstract"] is not None for r in rows) == 151
    assert len({r["record_hash"] for r in rows}) == 200


def test_the_venue_is_a_name_and_the_license_the_primary_versions():
    rows = {r["provider_id"]: r for r in normalize_page("openalex", real_response(BIG_PAGE)).to_pylist()}
    # No source matched: `raw_source_name` is the venue, unless it is a URL or empty; its entities are decoded.
    assert rows["W1541318120"]["venue"] is None  # raw_source_name http://ageconsearch.umn.edu/record/37920
    assert rows["W2757527038"]["venue"] is None  # raw_source_name ""
    assert rows["W2011397005"]["venue"] == "SPE International Health, Safety & Environment Conference"
    # A closed journal article whose best open copy is a submitted version under cc-by-nc-nd: not the article's licence.
    assert rows["W2011555605"]["license"] is None and rows["W2011555605"]["is_oa"] is True
    # A working paper (submitted version) whose open copy is the same version: its licence.
    assert rows["W3123744915"]["license"] == "cc-by"
    # An affiliation string that is empty is no affiliation.
    assert rows["W4251960471"]["authors"] == [{"name": "World Bank", "orcid": None, "affiliations": []}]


def test_a_venue_given_as_a_doi_is_none_and_a_primary_location_without_version_takes_the_published_copys_licence():
    page = json.loads(real_response(ID_PAGE))
    work = page["results"][0]
    work["primary_location"] = {**work["primary_location"], "source": None, "raw_source_name": "10.5281/zenodo.12345",
                                "version": None, "license": None}
    work["best_oa_location"] = {**(work["best_oa_location"] or {}), "version": "publishedVersion", "license": "cc-by"}
    row = normalize_page("openalex", json.dumps(page).encode()).to_pylist()[0]
    assert (row["venue"], row["license"]) == (None, "cc-by")


def test_authors_keep_orcid_and_institutions():
    rows = normalize_page("openalex", real_response(ID_PAGE)).to_pylist()
    assert [r["provider_id"] for r in rows] == ["W3046863325", "W3045921891"]
    assert rows[0]["doi"] == "10.1145/3383583.3398584"
    assert rows[0]["authors"] == [
        {"name": "Chifumi Nishioka", "orcid": "0000-0002-1853-3038", "affiliations": ["Kyoto University"]},
        {"name": "Michael Färber", "orcid": "0000-0001-5458-8645", "affiliations": ["Karlsruhe Institute of Technology"]},
    ]
    assert rows[0]["venue"] == "Proceedings of the ACM/IEEE Joint Conference on Digital Libraries in 2020"  # source is null: raw name
    assert rows[0]["is_oa"] is True and rows[0]["license"] == "other-oa"
    assert rows[0]["cited_by_count"] == 5
    assert rows[1]["doi"] == "10.48550/arxiv.2007.14454"
    assert rows[1]["title"] == "Measuring prominence of scientific work in online news as a proxy for impact"
    assert rows[1]["publication_date"] == dt.date(2020, 7, 28)
    assert [a["name"] for a in rows[1]["authors"]] == ["James Ravenscroft", "Amanda Clare", "Maria Liakata"]


def test_last_page_of_a_cursor_chain_is_empty():
    table = normalize_page("openalex", real_response(LAST_PAGE))
    assert table.num_rows == 0 and table.schema == RECORD_FIELDS


def test_a_date_on_the_first_claims_only_the_year_or_month():
    """OpenAlex fills year-only works as 1 January and month-only ones as the 1st (see openalex.py)."""
    rows = normalize_page("openalex", real_response(BIG_PAGE)).to_pylist()
    assert (rows[0]["publication_date"], rows[0]["publication_date_precision"]) == (dt.date(2000, 4, 1), "month")  # an April 2000 issue
    assert (rows[199]["publication_date"], rows[199]["publication_date_precision"]) == (dt.date(2009, 1, 1), "year")
    assert collections.Counter(r["publication_date_precision"] for r in rows) == {"year": 73, "month": 60, "day": 67}
    assert all(r["publication_date"].day != 1 for r in rows if r["publication_date_precision"] == "day")
    page = json.loads(real_response(ID_PAGE))
    page["results"][0]["publication_date"] = None  # only the year known
    assert normalize_page("openalex", json.dumps(page).encode()).to_pylist()[0]["publication_date_precision"] == "year"


def test_abstract_is_plain_text_and_title_is_markup():
    page = json.loads(real_response(ID_PAGE))
    work = page["results"][0]
    work["title"] = "<i>Quercus</i> CO<sub>2</sub> uptake &amp; soil (n < 30)"
    words = "Richness rose (p < 0.05) in plots with > 3 species <i>".split()
    work["abstract_inverted_index"] = {word: [i for i, w in enumerate(words) if w == word] for word in words}
    row = normalize_page("openalex", json.dumps(page).encode()).to_pylist()[0]
    assert row["title"] == "Quercus CO2 uptake & soil (n < 30)"
    assert row["abstract"] == "Richness rose (p < 0.05) in plots with > 3 species <i>"


def test_title_text_shaped_like_a_tag_is_kept():
    """Only known markup is markup: `<T>`, `<b and c>` and `<canvas>` are words of the title."""
    page = json.loads(real_response(ID_PAGE))
    titles = ["Optional<T> types in <i>Java</i>", "When a<b and c>d holds", "The <canvas> element"]
    for work, title in zip(page["results"], titles):
        work["title"] = title
    page["results"].append({**page["results"][0], "id": "https://openalex.org/W1", "title": titles[2]})
    rows = normalize_page("openalex", json.dumps(page).encode()).to_pylist()
    assert [r["title"] for r in rows] == ["Optional<T> types in Java", "When a<b and c>d holds", "The <canvas> element"]


def test_recorded_abstracts_keep_their_text_and_lose_escaped_line_ends():
    rows = {r["provider_id"]: r for r in normalize_page("openalex", real_response(BIG_PAGE)).to_pylist()}
    assert "even small (<5 ha) and degraded" in rows["W2125576237"]["abstract"]
    assert "Venezuela, <1% of this" in rows["W2004242077"]["abstract"]
    assert "An optimal R&D for a patent race" in rows["W2277083038"]["abstract"]
    # `&#13;\n` (a CR entity, then a literal backslash-n) is a line end escaped twice.
    assert rows["W297480756"]["abstract"].startswith("National parks in developing countries are home to the planet's most undervalued natural assets.")
    assert not any("\\n" in (r["abstract"] or "") for r in rows.values())


def test_abstract_is_rebuilt_in_position_order():
    assert abstract_from_inverted_index({"world": [1], "hello": [0, 2]}) == "hello world hello"
    assert abstract_from_inverted_index(None) is None


def test_abstract_of_any_index_has_its_words_sorted_by_position_then_word():
    """Positions 0 to n-1 each once take a shortcut; gaps, repeated, negative and far positions are sorted: same words."""
    rng = random.Random(11)
    indexes = [{"b": [0], "a": [0]}, {"x": [5], "y": [2]}, {"x": [-1], "y": [0]}, {"x": [0, 1], "y": [3]}, {"x": []},
               {"x": [1], "y": [1], "z": [0]}]
    for _ in range(500):
        words = [rng.choice("abcdef") * rng.randint(1, 2) for _ in range(rng.randint(1, 8))]
        spread = rng.choice([len(words), len(words) + 2])
        positions = rng.sample(range(-1, spread), len(words)) if rng.random() < 0.5 else [rng.randrange(spread) for _ in words]
        index: dict[str, list[int]] = {}
        for word, position in zip(words, positions):
            index.setdefault(word, []).append(position)
        indexes.append(index)
    for index in indexes:
        pairs = sorted((position, word) for word, at in index.items() for position in at)
        assert abstract_from_inverted_index(index) == (" ".join(word for _, word in pairs) or None), index


def test_normalizing_is_deterministic():
    first = normalize_page("openalex", real_response(BIG_PAGE))
    second = normalize_page("openalex", real_response(BIG_PAGE))
    assert first.column("record_hash").to_pylist() == second.column("record_hash").to_pylist()
