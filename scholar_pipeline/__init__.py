"""scholar-pipeline: saved searches over scholarly APIs, landed in DuckDB with provenance."""
