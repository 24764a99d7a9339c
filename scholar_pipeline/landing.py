"""The raw landing zone: every fetched page byte-exact, and one immutable manifest per fetch.

Layout under `$SCHOLAR_PIPELINE_HOME/landing/`:
    pages/<sha[:2]>/<sha256>.gz                      content-addressed page bodies (gzip)
    manifests/<query>/<provider>/<date>/<fetched>.json   what one fetch of a partition saw

A page file is named by its content, so rewriting it could only write the same bytes and
is skipped; a manifest is created exclusively and never changes. The newest manifest of a
partition is what `<query>/works` lands, so DuckDB can be rebuilt from here alone.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from scholar_pipeline.client.provider_client import FetchedPage


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class PageEntry:
    number: int
    url: str
    status: int
    headers: dict[str, str]
    sha256: str
    bytes: int
    records: int
    holds_records: bool
    from_cache: bool
    fetched_at: str


@dataclass(frozen=True)
class Manifest:
    query: str
    query_text: str
    provider: str
    partition_date: str
    retrieved_at: str
    code_version: str
    input_hash: str  # sha256 over the page hashes in order: the partition's data version
    total_reported: int | None
    pages: list[PageEntry] = field(default_factory=list)

    @property
    def records(self) -> int:
        return sum(p.records for p in self.pages)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        data["pages"] = [PageEntry(**p) for p in data["pages"]]
        return cls(**data)


def partition_input_hash(page_hashes: list[str]) -> str:
    return sha256_hex("\n".join(page_hashes).encode())


class LandingZone:
    def __init__(self, root: Path):
        self.root = Path(root)

    def page_path(self, sha256: str) -> Path:
        return self.root / "pages" / sha256[:2] / f"{sha256}.gz"

    def partition_dir(self, query: str, provider: str, day: dt.date | str) -> Path:
        return self.root / "manifests" / query / provider / str(day)

    def store_page(self, body: bytes) -> str:
        sha = sha256_hex(body)
        path = self.page_path(sha)
        if not path.exists():
            # mtime=0 keeps the gzip bytes a function of the body alone.
            _write_atomically(path, gzip.compress(body, compresslevel=6, mtime=0))
        return sha

    def read_page(self, sha256: str) -> bytes:
        body = gzip.decompress(self.page_path(sha256).read_bytes())
        if sha256_hex(body) != sha256:
            raise ValueError(f"landed page {self.page_path(sha256)} does not match its sha256; the landing zone is corrupt")
        return body

    def land_page(self, number: int, page: FetchedPage, records: int) -> PageEntry:
        """Store a page's body as soon as it arrives; the entry is what the manifest keeps of it."""
        return PageEntry(
            number=number, url=page.url, status=page.status, headers=page.headers, sha256=self.store_page(page.body),
            bytes=len(page.body), records=records, holds_records=page.request.holds_records,
            from_cache=page.from_cache, fetched_at=page.fetched_at.isoformat(),
        )

    def write_manifest(
        self, *, query: str, query_text: str, provider: str, day: dt.date, pages: list[PageEntry],
        total_reported: int | None, code_version: str,
    ) -> tuple[Manifest, Path]:
        """Record a finished fetch; an earlier manifest of the partition is never overwritten."""
        retrieved_at = dt.datetime.now(dt.timezone.utc)
        manifest = Manifest(
            query=query, query_text=query_text, provider=provider, partition_date=str(day),
            retrieved_at=retrieved_at.isoformat(), code_version=code_version,
            input_hash=partition_input_hash([p.sha256 for p in pages]), total_reported=total_reported, pages=pages,
        )
        directory = self.partition_dir(query, provider, day)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{retrieved_at.strftime('%Y%m%dT%H%M%S%fZ')}-{manifest.input_hash[:12]}.json"
        with open(path, "x") as handle:  # exclusive: a manifest is never rewritten
            json.dump(asdict(manifest), handle, indent=1)
        return manifest, path

    def latest_manifest(self, query: str, provider: str, day: dt.date | str) -> tuple[Manifest, Path]:
        directory = self.partition_dir(query, provider, day)
        candidates = sorted(directory.glob("*.json"))
        if not candidates:
            raise FileNotFoundError(
                f"no raw fetch of {query} / {provider} / {day} in {directory}; materialize {query}/raw for this partition first"
            )
        return Manifest.from_json(candidates[-1].read_text()), candidates[-1]


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
