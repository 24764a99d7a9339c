"""The raw landing zone: every fetched page byte-exact, and one immutable manifest per fetch.

Layout under `$SCHOLAR_PIPELINE_HOME/landing/`:
    pages/<sha[:2]>/<sha256>.gz                      content-addressed page bodies (gzip)
    manifests/<query>/<provider>/<date>/<fetched>.json   what one fetch of a partition saw
    quarantine/<query>/<provider>/<date>/<received>-page<N>.{body,json}   answers the pipeline refused, and why

A page file is named by its content, so rewriting it could only write the same bytes: it
is skipped unless the file on disk is damaged, which a later fetch of the page heals. A
manifest appears whole (written aside, then linked into place) and never changes.
`<query>/raw` records its manifest's path in its materialization, and `<query>/works`
lands exactly that one, so DuckDB can be rebuilt from here alone.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import os
import tempfile
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from scholar_pipeline.client.masking import mask_url
from scholar_pipeline.client.provider_client import FetchedPage


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class DamagedPage(ValueError):
    """A landed page file that is truncated or does not match its hash."""


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
    fetched_at: str  # when the provider sent it (a cache replay keeps the original time)
    total_reported: int | None = None  # the provider's total as this page stated it (None in manifests before raw-v2)
    superseded: bool = False  # its records come again in the pages after it (CORE's switch to scrolling): not counted


@dataclass(frozen=True)
class Manifest:
    query: str
    query_text: str
    provider: str
    partition_date: str
    retrieved_at: str
    code_version: str
    input_hash: str  # sha256 over the page hashes in order: exactly these bytes
    total_reported: int | None
    pages: list[PageEntry] = field(default_factory=list)
    content_hash: str | None = None  # sha256 over the sorted record hashes, the data version (None before raw-v2)

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
        try:
            self.read_page(sha)
        except (FileNotFoundError, DamagedPage):
            # mtime=0 keeps the gzip bytes a function of the body alone.
            _write_atomically(path, gzip.compress(body, compresslevel=6, mtime=0))
        return sha

    def read_page(self, sha256: str) -> bytes:
        path = self.page_path(sha256)
        compressed = path.read_bytes()
        try:
            body = gzip.decompress(compressed)
        except (EOFError, OSError, zlib.error) as error:  # truncated, or not gzip at all
            raise DamagedPage(f"landed page {path} is damaged ({error})") from None
        if sha256_hex(body) != sha256:
            raise DamagedPage(f"landed page {path} does not match its sha256")
        return body

    def land_page(self, number: int, page: FetchedPage, records: int, total_reported: int | None, superseded: bool) -> PageEntry:
        """Store a page's body as soon as it arrives; the entry is what the manifest keeps of it."""
        return PageEntry(
            number=number, url=page.url, status=page.status, headers=page.headers, sha256=self.store_page(page.body),
            bytes=len(page.body), records=records, total_reported=total_reported, superseded=superseded,
            holds_records=page.request.holds_records and not superseded,
            from_cache=page.from_cache, fetched_at=page.fetched_at.isoformat(),
        )

    def write_manifest(
        self, *, query: str, query_text: str, provider: str, day: dt.date, pages: list[PageEntry],
        total_reported: int | None, content_hash: str, code_version: str,
    ) -> tuple[Manifest, Path]:
        """Record a finished fetch; an earlier manifest of the partition is never overwritten.

        `retrieved_at` is when the provider sent the first page, also when the pages were
        replayed from the cache; the file is named by when the fetch finished."""
        written_at = dt.datetime.now(dt.timezone.utc)
        retrieved_at = min((p.fetched_at for p in pages), default=written_at.isoformat())
        manifest = Manifest(
            query=query, query_text=query_text, provider=provider, partition_date=str(day),
            retrieved_at=retrieved_at, code_version=code_version,
            input_hash=partition_input_hash([p.sha256 for p in pages]), content_hash=content_hash,
            total_reported=total_reported, pages=pages,
        )
        path = self.partition_dir(query, provider, day) / f"{written_at.strftime('%Y%m%dT%H%M%S%fZ')}-{manifest.input_hash[:12]}.json"
        _write_atomically(path, json.dumps(asdict(manifest), indent=1).encode(), exclusive=True)
        return manifest, path

    def quarantine(self, *, query: str, provider: str, day: dt.date, number: int, url: str, status: int | None,
                   headers: dict[str, str], body: bytes, cause: str) -> Path:
        """Keep an answer the pipeline refused, for diagnosis: its body as received (secrets already masked) and a note
        of where it came from and why it was refused. Nothing reads it back; a rerun asks the provider again."""
        received = dt.datetime.now(dt.timezone.utc)
        stem = self.root / "quarantine" / query / provider / str(day) / f"{received.strftime('%Y%m%dT%H%M%S%fZ')}-page{number}"
        note = {"provider": provider, "query": query, "partition_date": str(day), "page": number, "url": mask_url(url), "status": status,
                "headers": headers, "received_at": received.isoformat(), "sha256": sha256_hex(body), "bytes": len(body), "cause": cause}
        _write_atomically(stem.with_suffix(".body"), body)
        _write_atomically(stem.with_suffix(".json"), json.dumps(note, indent=1).encode())
        return stem.with_suffix(".body")

    def read_manifest(self, path: Path) -> Manifest:
        return Manifest.from_json(Path(path).read_text())

    def recorded_manifest(self, recorded_path: str) -> Path:
        """A manifest path as provenance recorded it, found under this landing zone (the home may have moved since)."""
        return self.root / "manifests" / Path(*Path(recorded_path).parts[-4:])

    def manifest_paths(self, query: str | None = None, provider: str | None = None, day: dt.date | None = None) -> list[Path]:
        """Every manifest (of a saved search, a provider, a day), oldest first within a partition (names start with the
        time the fetch finished)."""
        return sorted((self.root / "manifests").glob(f"{query or '*'}/{provider or '*'}/{day or '*'}/*.json"))

    def stored_pages(self) -> dict[str, Path]:
        """Every page file in the landing zone, by the sha256 its name claims."""
        return {path.name.removesuffix(".gz"): path for path in (self.root / "pages").glob("*/*.gz")}


def _write_atomically(path: Path, data: bytes, exclusive: bool = False) -> None:
    """Write aside, then move into place: a reader sees the whole file or none. `exclusive` never replaces one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        if exclusive:
            os.link(temporary, path)  # fails if the name exists
        else:
            os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
