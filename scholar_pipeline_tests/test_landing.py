"""The landing zone: manifests appear whole or not at all, and are never replaced."""

import datetime as dt
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
