"""A deadline for a whole request, enforced at the socket.

httpx's timeouts bound each connect, write and read, not a response: a server that sends
one byte every 20 s, in its headers or its body, never times out. Here every socket
operation made while a deadline is set gets at most what is left of it, so the request
ends by its deadline whatever the server does. httpx has no setting for this; httpcore's
connection pool takes a `network_backend`, and `DeadlineHTTPTransport` builds the pool
httpx would build (httpx 0.28: `HTTPTransport.__init__`) with one that applies it.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator

import httpcore
import httpx

_deadline: ContextVar[float | None] = ContextVar("scholar_pipeline_request_deadline", default=None)


class RequestDeadlineExceeded(httpx.TimeoutException):
    """The whole response took longer than the request's deadline (a server trickling bytes)."""


@contextmanager
def request_deadline(request: httpx.Request, seconds: float) -> Iterator[None]:
    """Every socket operation inside ends by `seconds` from now; past it, RequestDeadlineExceeded."""
    token = _deadline.set(time.monotonic() + seconds)
    try:
        yield
    except httpx.TimeoutException as error:
        if time.monotonic() >= _deadline.get():
            raise RequestDeadlineExceeded(f"the response was not complete after {seconds:g} s", request=request) from error
        raise
    finally:
        _deadline.reset(token)


def _remaining(timeout: float | None) -> float | None:
    deadline = _deadline.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise httpcore.ReadTimeout("the request's deadline has passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream):
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _remaining(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _remaining(timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context, server_hostname: str | None = None, timeout: float | None = None) -> httpcore.NetworkStream:
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, _remaining(timeout)))

    def get_extra_info(self, info: str):
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self):
        self._inner = httpcore.SyncBackend()

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None) -> httpcore.NetworkStream:
        return _DeadlineStream(self._inner.connect_tcp(host, port, _remaining(timeout), local_address, socket_options))

    def connect_unix_socket(self, path, timeout=None, socket_options=None) -> httpcore.NetworkStream:
        return _DeadlineStream(self._inner.connect_unix_socket(path, _remaining(timeout), socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class DeadlineHTTPTransport(httpx.HTTPTransport):
    """httpx's connection pool, with every socket operation bounded by the current `request_deadline`."""

    def __init__(self, limits: httpx.Limits):
        super().__init__(limits=limits)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_DeadlineBackend(),
        )
