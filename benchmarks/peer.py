"""Figure 3, the peer's side: our normalization beside scholar-flux on the same recorded pages, in the same run.

The pages are figure 3's (benchmarks/normalization.py). scholar-flux (the `bench` extra) is
used as its README shows, `SearchCoordinator(...).search_page(1)` then `.normalize()`: a
path that starts with a request. So each of its providers is pointed at a loopback server
replaying the recorded bytes (through its provider registry, the library's own extension
point), with its request and processing caches off and its request delay 0, and the same
requests made with a bare `requests.Session` (its transport) to the same server are the
transport cost, subtracted:

    peer seconds = best(search_page + normalize) - best(bare request)

Its `ResponseCoordinator.handle_response` on the bytes, then `.normalize()`, is timed too,
as a cross-check that needs no subtraction (`peer_direct_records_per_s`). Both sides' rates
count the pages' records as we read them, so `ratio` is theirs over ours in time on the
same pages: scholar-flux reads a page holding one arXiv entry or one PubMed article as
several junk records (xmltodict gives a lone element as a dict, not a list, and its
extractor takes the entry's links or the abstract's sections instead); `peer_records`
shows how many it returned. All measurements of a provider take turns in the same rounds,
and each keeps its best round: the machine is shared, so a slow round says nothing about
the code.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import requests
from scholar_flux import SearchCoordinator, log_level_context
from scholar_flux.api.models import ReconstructedResponse
from scholar_flux.api.providers import PROVIDER_DEFAULTS, provider_registry

from benchmarks.normalization import _bare_parse, _pages
from benchmarks.replay import ReplayServer
from scholar_pipeline.normalize import normalize_page

PEER_PROVIDERS = {"pubmed": "pubmedefetch", "springer": "springernature"}  # the rest have our names
CONTENT_TYPES = {"arxiv": "application/atom+xml; charset=UTF-8", "pubmed": "text/xml; charset=UTF-8"}  # the rest JSON
PLACEHOLDER_KEY = "replay-placeholder-key-0000"  # Springer Nature refuses to build a request without one
MIN_ROUNDS, MIN_SECONDS = 5, 8.0  # per provider: at least this many rounds and this long in all


def _interleaved_best(works: dict[str, Callable[[], object]]) -> dict[str, float]:
    """Each work's fastest round, the works taking turns (in a rotating order) within every round."""
    best = dict.fromkeys(works, float("inf"))
    names, rounds, started = list(works), 0, time.perf_counter()
    while rounds < MIN_ROUNDS or time.perf_counter() - started < MIN_SECONDS:
        for name in names[rounds % len(names):] + names[:rounds % len(names)]:
            began = time.perf_counter()
            works[name]()
            best[name] = min(best[name], time.perf_counter() - began)
        rounds += 1
    return best


class _Peer:
    """scholar-flux's view of one provider: its coordinator pointed at the replay server, and the bare transport."""

    def __init__(self, server: ReplayServer, provider: str):
        self.server = server
        self.name = PEER_PROVIDERS.get(provider, provider)
        self.content_type = CONTENT_TYPES.get(provider, "application/json")
        with log_level_context("ERROR"):  # it warns that delay 0 may bring 429s and that we replaced its config
            provider_registry.add(PROVIDER_DEFAULTS[self.name].model_copy(
                update={"base_url": server.base_url(self.name), "request_delay": 0}))
            self.coordinator = SearchCoordinator(
                query="replayed", provider_name=self.name, cache_requests=False, cache_results=False,
                request_delay=0, api_key=PLACEHOLDER_KEY if self.name == "springernature" else None)
        self.session = requests.Session()
        self.url = ""

    def search(self, body: bytes) -> list[dict]:
        """One page end to end: request, parse, extract, process, normalize."""
        self.server.replay(self.name, body, self.content_type)
        result = self.coordinator.search_page(1)
        if not result:
            raise RuntimeError(f"scholar-flux {self.name}: {result.error}: {result.message}")
        self.url = result.url
        return result.normalize(raise_on_error=True)

    def transport(self, body: bytes) -> bytes:
        """The same request to the same replayed bytes, with nothing done to the answer."""
        self.server.replay(self.name, body, self.content_type)
        return self.session.get(self.url).content

    def direct(self, body: bytes) -> list[dict]:
        """Its processing step on the bytes alone: parse, extract, process, normalize (no HTTP)."""
        response = ReconstructedResponse.build(status_code=200, content=body, url=self.url,
                                               headers={"Content-Type": self.content_type})
        processed = self.coordinator.response_coordinator.handle_response(response, from_cache=False)
        return processed.normalize(raise_on_error=True)


def run() -> list[dict]:
    rows = []
    with ReplayServer() as server:
        for provider, pages in _pages().items():
            peer = _Peer(server, provider)
            records = sum(normalize_page(provider, body).num_rows for body in pages)
            peer_records = sum(len(peer.search(body)) for body in pages)  # and the URL its requests go to
            assert sum(len(peer.direct(body)) for body in pages) == peer_records
            best = _interleaved_best({
                "ours": lambda: [normalize_page(provider, body) for body in pages],
                "peer": lambda: [peer.search(body) for body in pages],
                "transport": lambda: [peer.transport(body) for body in pages],
                "direct": lambda: [peer.direct(body) for body in pages],
                "bare_parse": lambda: [_bare_parse(body) for body in pages],
            })
            peer_s = best["peer"] - best["transport"]
            rows.append({
                "provider": provider, "pages": len(pages), "records": records, "peer_records": peer_records,
                "ours_records_per_s": round(records / best["ours"]), "peer_records_per_s": round(records / peer_s),
                "peer_transport_s": round(best["transport"], 4),
                "peer_direct_records_per_s": round(records / best["direct"]), "ratio": round(peer_s / best["ours"], 1),
                "bare_parse_records_per_s": round(records / best["bare_parse"]),
            })
    return rows
