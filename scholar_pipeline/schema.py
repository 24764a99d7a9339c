"""The normalized `works` schema shared by every provider (the DuckDB table's columns)."""

from __future__ import annotations

import pyarrow as pa

# Bump when the meaning or set of normalized columns changes; recorded in provenance.
SCHEMA_VERSION = "works-v2"  # v2: pmid, pmcid, arxiv_id

AUTHOR = pa.struct([("name", pa.string()), ("orcid", pa.string()), ("affiliations", pa.list_(pa.string()))])

# What normalize_page produces: a pure function of one raw page.
RECORD_FIELDS = pa.schema(
    [
        ("provider", pa.string()),
        ("provider_id", pa.string()),
        ("doi", pa.string()),
        # Bare and checked (identifiers.py): 12345678, PMC1234567, 2401.01234 or hep-th/9901001 (no version); or NULL.
        ("pmid", pa.string()),
        ("pmcid", pa.string()),
        ("arxiv_id", pa.string()),
        ("title", pa.string()),
        ("abstract", pa.string()),
        ("authors", pa.list_(AUTHOR)),
        ("publication_date", pa.date32()),
        # 'day', 'month' or 'year': a partial date is stored as the first day of its period.
        ("publication_date_precision", pa.string()),
        ("venue", pa.string()),
        ("publisher", pa.string()),
        ("work_type", pa.string()),
        ("language", pa.string()),
        ("is_oa", pa.bool_()),
        ("oa_url", pa.string()),
        ("license", pa.string()),
        ("cited_by_count", pa.int64()),
        ("url", pa.string()),
        ("record_hash", pa.string()),
    ]
)

# Added when a partition is landed: which search, which day, which page, when.
RUN_FIELDS = pa.schema(
    [
        ("query", pa.string()),
        ("partition_date", pa.date32()),
        ("raw_page_sha256", pa.string()),
        ("retrieved_at", pa.timestamp("us", tz="UTC")),
    ]
)

WORKS_SCHEMA = pa.schema(
    [RUN_FIELDS.field("query"), RECORD_FIELDS.field("provider"), RUN_FIELDS.field("partition_date")]
    + [f for f in RECORD_FIELDS if f.name != "provider"]
    + [RUN_FIELDS.field("raw_page_sha256"), RUN_FIELDS.field("retrieved_at")]
)

# `unique_works`: one row per real-world work across providers and saved searches (dataset/unique_works.py).
SOURCE = pa.struct([("query", pa.string()), ("provider", pa.string()), ("provider_id", pa.string()),
                    ("partition_date", pa.date32()), ("record_hash", pa.string())])
IDENTIFIERS = ["doi", "pmid", "pmcid", "arxiv_id"]  # bare: 10.x/..., 12345678, PMC1234567, 2401.01234 (no version)
DESCRIPTIVE = ["title", "abstract", "authors", "publication_date", "publication_date_precision", "venue", "publisher",
               "work_type", "language", "is_oa", "oa_url", "license", "cited_by_count", "url"]
UNIQUE_WORKS_SCHEMA = pa.schema(
    [("work_id", pa.string())]
    + [(name, pa.string()) for name in IDENTIFIERS]
    + [RECORD_FIELDS.field(name) for name in DESCRIPTIVE]
    + [("queries", pa.list_(pa.string())), ("match_rule", pa.string()), ("sources", pa.list_(SOURCE))]
)
