"""A loopback HTTP server that answers every request under `/<provider>` with one recorded page's exact bytes.

A peer client can then be timed on the real recorded pages through its own HTTP path,
and the same requests made bare give the transport cost to subtract:

    with ReplayServer() as server:
        server.replay("crossref", body, "application/json")
        requests.get(server.base_url("crossref") + "/works?rows=20")   # body, as recorded
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


class ReplayServer:
    def __init__(self) -> None:
        self._pages: dict[str, tuple[bytes, str]] = {}  # provider -> (body, content type)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self._pages))
        self._server.daemon_threads = True

    def base_url(self, provider: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/{provider}"

    def replay(self, provider: str, body: bytes, content_type: str) -> None:
        """Answer every later request under `/<provider>` with `body` (a replace, not a queue: one page at a time)."""
        self._pages[provider] = (body, content_type)

    def __enter__(self) -> ReplayServer:
        threading.Thread(target=self._server.serve_forever, name="replay-server", daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler_for(pages: dict[str, tuple[bytes, str]]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the peer's session would have with the real API
        disable_nagle_algorithm = True  # 44 ms per loopback request without it

        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            page = pages.get(urlsplit(self.path).path.split("/")[1])
            body, content_type = page or (b"no page is replayed under this path\n", "text/plain")
            self.send_response(200 if page else 404)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler
