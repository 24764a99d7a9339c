"""The landing zone: manifests appear whole or not at all, and are never replaced."""

import datetime as dt
import json
import os

import pytest

from scholar_pipeline.landing import LandingZone


def _write(landing: LandingZone):
    return landing.write_manifest(query="q", query_text="text", provider="openalex", day=dt.date(2024, 3, 1), pages=[],
                                  total_reported=0, content_hash="c", code_version="raw-v2")


def test_a_manifest_interrupted_while_written_leaves_nothing_behind(tmp_path, monkeypatch):
    landing = LandingZone(tmp_path)

    def crash(_fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        _write(landing)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_a_manifest_is_read_back_as_written(tmp_path):
    landing = LandingZone(tmp_path)
    manifest, path = _write(landing)
    assert landing.read_manifest(path) == manifest
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left beside it


def test_a_manifest_written_before_per_page_totals_still_reads(tmp_path):
    """Manifests are immutable: one written by raw-v1 (no content hash, no per-page total) must still land."""
    landing = LandingZone(tmp_path)
    old = {"query": "q", "query_text": "t", "provider": "crossref", "partition_date": "2024-03-01",
           "retrieved_at": "2024-03-02T04:00:00+00:00", "code_version": "raw-v1", "input_hash": "ab", "total_reported": 1,
           "pages": [{"number": 1, "url": "http://x/works", "status": 200, "headers": {}, "sha256": "cd", "bytes": 10,
                      "records": 1, "holds_records": True, "from_cache": False, "fetched_at": "2024-03-02T04:00:00+00:00"}]}
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    manifest = landing.read_manifest(path)
    assert manifest.records == 1 and manifest.content_hash is None and manifest.pages[0].total_reported is None
