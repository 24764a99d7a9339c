"""The provider simulator: a real HTTP server on 127.0.0.1 speaking each provider's wire format.

    with ProviderSimulator(rate_limits={"crossref": 5}, faults="crossref:503@2") as sim:
        os.environ.update(sim.environ())       # SCHOLAR_PIPELINE_<PROVIDER>_BASE_URL
        ...
        sim.requests                            # the request log, with the fault each request got

Each provider lives under its own path prefix (`/openalex/works`, `/crossref/works`), so
one server stands in for every API (all seven: `API_CLASSES`). Requests over a provider's rate limit (any 1-second
window), or beyond its cap on requests open at once (`in_flight_limits`, as Crossref and
arXiv cap connections), get that provider's 429. `answer_seconds` makes a provider slow to
answer. Faults are injected on demand (faults.py). Every request is logged, with the time it
arrived and how many of the provider's requests were open then, itself included.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from scholar_pipeline.simulator.arxiv import ArxivApi
from scholar_pipeline.simulator.common import BadRequest, SimResponse
from scholar_pipeline.simulator.core import CoreApi
from scholar_pipeline.simulator.corpus import Corpus
from scholar_pipeline.simulator.crossref import CrossrefApi
from scholar_pipeline.simulator.faults import (
    BODY_FAULTS, DELIVERY_FAULTS, EXPIRED_CURSOR, HTML_ERROR_PAGE, RECORD_FAULTS, STATUS_FAULTS, FaultPlan, parse_faults,
)
from scholar_pipeline.simulator.openalex import OpenAlexApi
from scholar_pipeline.simulator.plos import PlosApi
from scholar_pipeline.simulator.pubmed import PubMedApi
from scholar_pipeline.simulator.springer import SpringerApi

API_CLASSES = (OpenAlexApi, CrossrefApi, ArxivApi, PubMedApi, PlosApi, SpringerApi, CoreApi)
# Keys for the providers that require one: the simulator takes them, the real APIs would refuse them.
_KEY_PARAMS = frozenset({"api_key", "apikey", "key", "token"})
PLACEHOLDER_KEYS = {"SPRINGER_NATURE_API_KEY": "simulator-placeholder-springer-key", "CORE_API_KEY": "simulator-placeholder-core-key"}


@dataclass(frozen=True)
class LoggedRequest:
    at: float  # time.time() on arrival
    provider: str
    path: str
    params: dict[str, list[str]]
    headers: dict[str, str]
    status: int
    fault: str | None = None
    in_flight: int = 1  # the provider's requests being answered when it arrived, itself included


class ProviderSimulator:
    def __init__(self, port: int = 0, corpus: Corpus | None = None, rate_limits: dict[str, float] | None = None,
                 log_file: Path | None = None, faults: str | None = None, stall_seconds: float = 30.0,
                 in_flight_limits: dict[str, int] | None = None, answer_seconds: dict[str, float] | None = None):
        self.corpus = corpus or Corpus()
        self.apis = {cls.name: cls(self.corpus) for cls in API_CLASSES}
        self.faults = FaultPlan(parse_faults(faults, frozenset(self.apis)))
        self.stall_seconds = stall_seconds
        self.rate_limits = {name: api.default_rate_limit for name, api in self.apis.items()} | (rate_limits or {})
        self._limits_given = set(rate_limits or {}) | set(in_flight_limits or {})  # a pool of the API's own does not apply
        self.in_flight_limits = {name: api.in_flight_limit for name, api in self.apis.items()
                                 if getattr(api, "in_flight_limit", None)} | (in_flight_limits or {})
        self.answer_seconds = answer_seconds or {}
        self.requests: list[LoggedRequest] = []
        self.log_file = log_file
        self._arrivals: dict[str, list[float]] = {name: [] for name in self.apis}
        self._open: dict[str, int] = {}  # per path prefix: requests being answered
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def base_url(self, provider: str) -> str:
        return f"http://127.0.0.1:{self.port}/{provider}"

    def environ(self) -> dict[str, str]:
        """The environment that points the pipeline at this simulator."""
        return {f"SCHOLAR_PIPELINE_{name.upper()}_BASE_URL": self.base_url(name) for name in self.apis}

    def start(self) -> ProviderSimulator:
        self._thread = threading.Thread(target=self._server.serve_forever, name="provider-simulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> ProviderSimulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def requests_for(self, provider: str) -> list[LoggedRequest]:
        with self._lock:
            return [r for r in self.requests if r.provider == provider]

    @contextmanager
    def open_request(self, raw_path: str) -> Iterator[int]:
        """Count a request as open until its answer is written; yields how many of its provider's are open."""
        provider, _ = _split(urlsplit(raw_path).path)
        with self._lock:
            self._open[provider] = self._open.get(provider, 0) + 1
            now_open = self._open[provider]
        try:
            yield now_open
        finally:
            with self._lock:
                self._open[provider] -= 1

    def answer(self, method: str, raw_path: str, headers: dict[str, str], in_flight: int = 1) -> SimResponse:
        arrived = time.time()  # logged as the arrival time, before any work on the answer
        url = urlsplit(raw_path)
        params = parse_qs(url.query, keep_blank_values=True)
        provider, rest = _split(url.path)
        api = self.apis.get(provider)
        route = api.routes.get("/" + rest.rstrip("/")) if api else None
        refused = api.authenticate(headers) if route is not None and hasattr(api, "authenticate") else None
        fault = self.faults.next_fault(provider) if route is not None else None
        if fault == EXPIRED_CURSOR:
            if hasattr(api, "expire_cursors"):
                api.expire_cursors()
            else:
                fault = None  # no cursor to expire at this provider
        if route is None or method != "GET":
            response = SimResponse.text(404, "Resource not found.")
        elif fault in STATUS_FAULTS:
            response = _status_fault(api, fault)
        elif self._over_limits(api, provider, params, in_flight, arrived):
            response = api.rate_limited()
        elif refused is not None:  # APIs that take the key in a header (CORE) check it here
            response = refused
        else:
            try:
                response = route(params)
            except BadRequest as error:
                response = error.response
        if fault in BODY_FAULTS | RECORD_FAULTS:
            holds_records = route == api.routes[getattr(api, "records_route", "/" + rest.rstrip("/"))]
            if response.status != 200 or (fault in RECORD_FAULTS and not holds_records):
                fault = None  # nothing to spoil: the answer is an error already, or holds no records
            elif fault in BODY_FAULTS:
                response = _body_fault(response, fault)
            else:
                response = SimResponse(200, api.records.alter(response.body, fault), response.content_type, response.headers)
        if fault in DELIVERY_FAULTS:
            response.delivery = fault
        self._log(LoggedRequest(arrived, provider, url.path, params, headers, response.status, fault, in_flight))
        return response

    def _over_limits(self, api, provider: str, params: dict[str, list[str]], in_flight: int, now: float) -> bool:
        """Beyond the requests the provider takes at once, or over its rate; Crossref's polite pool (`mailto=`) has
        limits of its own unless the test set the provider's."""
        rate, cap = self.rate_limits[provider], self.in_flight_limits.get(provider, in_flight)
        if provider not in self._limits_given and getattr(api, "polite", None) and api.polite(params):
            rate, cap = api.POLITE["rate"], api.POLITE["in_flight"]
        return in_flight > cap or self._over_rate_limit(provider, rate, now)

    def _over_rate_limit(self, provider: str, rate: float, now: float) -> bool:
        """Over the rate in any window of a second, or of 1/rate seconds for a rate below one a second (arXiv: 1 per 3 s)."""
        window = max(1.0, 1.0 / rate)
        with self._lock:
            recent = [t for t in self._arrivals[provider] if now - t < window]
            over = len(recent) >= max(1.0, rate * window)
            if not over:
                recent.append(now)
            self._arrivals[provider] = recent
        return over

    def _log(self, entry: LoggedRequest) -> None:
        with self._lock:
            self.requests.append(entry)
            if self.log_file is not None:
                with open(self.log_file, "a") as out:
                    out.write(json.dumps(_without_keys(asdict(entry))) + "\n")


def _split(path: str) -> tuple[str, str]:
    """`/crossref/works` → (`crossref`, `works/`): the provider's prefix and the route under it."""
    _, provider, rest = (path.rstrip("/") + "/").split("/", 2)
    return provider, rest


def _status_fault(api, fault: str) -> SimResponse:
    if fault.startswith("429"):
        response = api.rate_limited()  # the provider's own rate-limit answer
        if fault == "429-retry-after":
            response.headers["Retry-After"] = "1"
        return response
    return SimResponse.text(int(fault), "upstream error")


def _body_fault(response: SimResponse, fault: str) -> SimResponse:
    """A 200 that is not the wire format: an HTML error page, or the body cut in half."""
    if fault == "html":
        return SimResponse(200, HTML_ERROR_PAGE, "text/html; charset=utf-8")
    return SimResponse(200, response.body[: len(response.body) // 2], response.content_type, response.headers)


def _without_keys(entry: dict) -> dict:
    """A logged request as the log file keeps it: keys masked, since a user may point the pipeline at real keys."""
    entry["params"] = {k: ["***"] * len(v) if k.lower() in _KEY_PARAMS else v for k, v in entry["params"].items()}
    entry["headers"] = {k: "***" if k.lower() == "authorization" else v for k, v in entry["headers"].items()}
    return entry


def _handler_for(simulator: ProviderSimulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # 44 ms per loopback request without it

        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            # Open until the answer is ready to write: a client that has read it may send again at once, and must not
            # meet its own last request still counted.
            with simulator.open_request(self.path) as in_flight:
                response = simulator.answer("GET", self.path, dict(self.headers), in_flight)
                if response.status == 200 and (seconds := simulator.answer_seconds.get(_split(urlsplit(self.path).path)[0])):
                    time.sleep(seconds)
            if response.delivery == "stall":  # not counted: the client gives up on it and asks again
                time.sleep(simulator.stall_seconds)
            self._write(response)

        def _write(self, response: SimResponse) -> None:
            if response.delivery == "reset":  # SO_LINGER 0: close sends a TCP reset
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
                self.connection.close()
                return
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if response.delivery == "truncate":
                self.wfile.write(response.body[: len(response.body) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
            elif response.delivery == "slow":  # about twenty pieces a twentieth of a second apart
                piece = max(16, len(response.body) // 20)
                for start in range(0, len(response.body), piece):
                    self.wfile.write(response.body[start:start + piece])
                    self.wfile.flush()
                    time.sleep(0.05)
            else:
                self.wfile.write(response.body)

    return Handler

