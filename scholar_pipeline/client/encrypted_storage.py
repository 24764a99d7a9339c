"""Cached responses encrypted at rest (SCHOLAR_PIPELINE_CACHE_KEY), for the SQLite and the Redis cache alike.

Why a storage wrapper: hishel 2.0.0's storages have no serializer hook (`SqliteStorage` and `RedisStorage`
call the module functions `_packing.pack`/`unpack` for the request and response heads, and write body chunks
as they come), so the extension point is its public storage interface, `hishel.BaseStorage`. This one wraps
either backend and hands it only sealed values:
- the request (URL and headers) and the response headers become one header each holding a Fernet token; the
  method and the status code stay readable (hishel matches GET against HEAD by method before asking us);
- the body becomes newline-separated Fernet tokens (url-safe base64, so never a newline inside), one per chunk
  as it streams; the backends re-chunk what they store, so a reader joins frames across stored chunks.
Fernet (AES-128-CBC with HMAC-SHA256, from `cryptography`) authenticates every token, so a wrong key or an
altered value fails to open instead of giving garbage. The sealed request holds hishel's cache key and a random
body id, and each body frame the body id and its number: an entry served under another key, or body frames
moved between entries or reordered, fail to open too. Response headers are sealed on their own, because RFC
revalidation rewrites them by entry id alone (`update_headers`).

With no key the wrapper stores plainly, as before, and only refuses an entry it finds sealed: a cache written
with a key and read without one is a misconfiguration to report, not a miss to refetch over. With a key, an
entry stored plainly (before the key was set) is dropped and fetched again, then stored sealed. hishel's cache
key itself stays readable (it is what lookups match on), and holds no secret: credentials are added below the cache.
"""

from __future__ import annotations

import json
import logging
import os
import re
import uuid
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import replace

import hishel
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from hishel import Entry, Headers, Request, Response

from scholar_pipeline.client.masking import check_secret

KEY_SETTING = "SCHOLAR_PIPELINE_CACHE_KEY"
SEALED_HEADER = "x-scholar-pipeline-sealed"  # the only header of a sealed request or response head
SEALED_URL = "sealed:"  # hishel stores a URL with every entry; the real one is inside the sealed request
FRAME_END = b"\n"
_FERNET_KEY = re.compile(r"[A-Za-z0-9_-]{43}=")  # 32 bytes, url-safe base64, as Fernet.generate_key() writes them
_NUMBER_BYTES = 8

logger = logging.getLogger(__name__)


class CacheKeyMismatch(RuntimeError):
    """Cached entries that the configured key (or its absence) cannot open; the message says what to set or clear."""


def cipher_from_setting(raw: str, variable: str = KEY_SETTING) -> MultiFernet:
    """`raw` is one Fernet key, or several separated by commas to rotate: the first encrypts, any decrypts.

    A ValueError names the variable and what is wrong, never the value."""
    keys = raw.split(",")
    for position, key in enumerate(keys, start=1):
        which = f"{variable} (key {position} of {len(keys)})" if len(keys) > 1 else variable
        check_secret(which, key)
        if not _FERNET_KEY.fullmatch(key):
            raise ValueError(
                f"{which} is not a Fernet key (32 bytes in url-safe base64: 44 characters ending in '='); make one with "
                "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`, "
                "or unset it to keep the HTTP cache unencrypted"
            )
    return MultiFernet([Fernet(key) for key in keys])


class EncryptedStorage(hishel.BaseStorage):
    """`inner` holding only sealed entries when `cipher` is set; see the module docstring.

    `location` says where the cache is (a file, a Redis server and key prefix, never a password), for the error
    that tells what to clear."""

    def __init__(self, inner: hishel.BaseStorage, cipher: MultiFernet | None, location: str):
        super().__init__(default_ttl=inner.default_ttl, default_tti=inner.default_tti, max_stream_size=inner.max_stream_size)
        self.inner, self.cipher, self.location = inner, cipher, location

    def create_entry(self, request: Request, response: Response, key: str, *, ttl: float | None = None,
                     tti: float | None = None) -> Entry:
        if self.cipher is None:
            return self.inner.create_entry(request, response, key, ttl=ttl, tti=tti)
        body_id = os.urandom(16)
        sealed_request = Request(method=request.method, url=SEALED_URL, headers=self._seal_head(
            {"key": key, "url": request.url, "headers": request.headers._headers, "body": body_id.hex()}))
        plain: deque[bytes] = deque()
        sealed_body = self._seal_body(body_id, response.stream or iter(()), plain)
        entry = self.inner.create_entry(
            sealed_request, replace(response, headers=self._seal_head({"headers": response.headers._headers}), stream=sealed_body),
            key, ttl=ttl, tti=tti,
        )
        # The backend's stream saves each sealed chunk as the caller reads, and yields it once: the caller gets the
        # plain chunk it stands for, without decrypting what was just encrypted.
        return replace(entry, request=request, response=replace(response, stream=_in_step(entry.response.stream, plain)))

    def get_entries(self, key: str) -> list[Entry]:
        entries = []
        for entry in self.inner.get_entries(key):
            sealed = SEALED_HEADER in entry.request.headers
            if self.cipher is None and sealed:
                raise CacheKeyMismatch(
                    f"the HTTP cache at {self.location} holds encrypted entries but {KEY_SETTING} is not set: set it to the "
                    f"key they were written with, or clear the cache"
                )
            if self.cipher is None:
                entries.append(entry)
            elif not sealed:
                logger.warning("HTTP cache: dropped an entry stored unencrypted (from before %s was set); fetching it again",
                               KEY_SETTING)
                self.inner.remove_entry(entry.id)
            else:
                entries.append(self._opened(entry, key))
        return entries

    def update_headers(self, id: uuid.UUID, headers: Headers) -> None:  # noqa: A002 (hishel's name)
        self.inner.update_headers(id, headers if self.cipher is None else self._seal_head({"headers": headers._headers}))

    def remove_entry(self, id: uuid.UUID) -> None:  # noqa: A002
        self.inner.remove_entry(id)

    def close(self) -> None:
        self.inner.close()

    def _opened(self, entry: Entry, key: str) -> Entry:
        head = self._open_head(entry.request.headers)
        if head["key"] != key:
            raise self._mismatch("an entry is stored under another cache key than the one sealed in it (altered?)")
        response_head = self._open_head(entry.response.headers)
        return replace(
            entry,
            request=Request(method=entry.request.method, url=head["url"], headers=Headers(head["headers"])),
            response=replace(entry.response, headers=Headers(response_head["headers"]),
                             stream=self._open_body(bytes.fromhex(head["body"]), entry.response.stream or iter(()))),
        )

    def _seal_head(self, head: dict) -> Headers:
        return Headers({SEALED_HEADER: self.cipher.encrypt(json.dumps(head).encode()).decode("ascii")})

    def _open_head(self, headers: Headers) -> dict:
        try:
            return json.loads(self.cipher.decrypt(headers[SEALED_HEADER].encode("ascii")))
        except (InvalidToken, KeyError, UnicodeEncodeError):
            raise self._mismatch("cached entries were written with another key") from None

    def _seal_body(self, body_id: bytes, stream: Iterable[bytes], plain: deque[bytes]) -> Iterator[bytes]:
        for number, chunk in enumerate(stream):
            plain.append(chunk)
            yield self.cipher.encrypt(body_id + number.to_bytes(_NUMBER_BYTES, "big") + chunk) + FRAME_END

    def _open_body(self, body_id: bytes, stored: Iterable[bytes]) -> Iterator[bytes]:
        """The plain chunks of a sealed body, frame by frame as the stored chunks (cut anywhere) come in."""
        pending, number = b"", 0
        for stored_chunk in stored:
            *frames, pending = (pending + stored_chunk).split(FRAME_END)
            for frame in frames:
                try:
                    opened = self.cipher.decrypt(frame)
                except InvalidToken:
                    raise self._mismatch("a cached body does not open with the key that opened its entry (altered?)") from None
                if opened[:len(body_id)] != body_id or int.from_bytes(opened[len(body_id):len(body_id) + _NUMBER_BYTES], "big") != number:
                    raise self._mismatch("a cached body holds another entry's data or is out of order (altered?)")
                number += 1
                yield opened[len(body_id) + _NUMBER_BYTES:]
        if pending:
            raise self._mismatch("a cached body ends inside a frame (altered?)")

    def _mismatch(self, problem: str) -> CacheKeyMismatch:
        return CacheKeyMismatch(
            f"{problem}: the HTTP cache at {self.location} does not open with {KEY_SETTING}. Set {KEY_SETTING} to the key "
            f"the entries were written with (a comma-separated list opens with any of its keys and writes with the first), "
            f"or clear the cache"
        )


def _in_step(sealed: Iterator[bytes], plain: deque[bytes]) -> Iterator[bytes]:
    """For each sealed chunk the backend passes on, the plain chunk it was made from."""
    try:
        for _ in sealed:
            yield plain.popleft()
    finally:
        if hasattr(sealed, "close"):  # a caller that stops reading: the backend discards the partial entry
            sealed.close()
