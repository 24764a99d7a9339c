"""What every simulated API shares: a parsed request and a response to send."""

from __future__ import annotations

import json
from dataclasses import dataclass, field


@dataclass
class SimResponse:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    delivery: str | None = None  # a fault in how it is sent (faults.DELIVERY_FAULTS), carried out by the handler

    @classmethod
    def json(cls, status: int, payload, headers: dict[str, str] | None = None) -> SimResponse:
        # Compact separators, as the real APIs send.
        return cls(status, json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode(), "application/json", headers or {})

    @classmethod
    def text(cls, status: int, text: str, headers: dict[str, str] | None = None) -> SimResponse:
        return cls(status, text.encode(), "text/plain;charset=utf-8", headers or {})


class BadRequest(ValueError):
    """Raised by a simulated API with the response the real API gives for this mistake."""

    def __init__(self, response: SimResponse):
        super().__init__(response.body[:200])
        self.response = response


def single(params: dict[str, list[str]], name: str, default: str | None = None) -> str | None:
    values = params.get(name)
    return values[-1] if values else default
