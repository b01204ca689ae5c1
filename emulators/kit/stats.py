"""Traffic counters behind ``GET /_emulator/stats``.

Tests and benchmarks assert on what a client actually sent (how many retries, which
routes, how many 429s), which the client itself cannot report honestly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Stats:
    """Counts since start or the last reset; mutated only on the server's event loop."""

    requests: int = 0
    rate_limited: int = 0
    """429s from the rate limit or the concurrency cap (not injected 429 faults)."""
    faulted: int = 0
    by_route: dict[str, int] = field(default_factory=dict)
    """Keyed ``"METHOD /path/template"`` (the raw path when no route matched)."""
    by_status: dict[str, int] = field(default_factory=dict)

    def count_request(self, route: str) -> None:
        """One API request arrived for ``route``."""
        self.requests += 1
        self.by_route[route] = self.by_route.get(route, 0) + 1

    def count_status(self, status: int) -> None:
        """One answer with ``status`` started."""
        key = str(status)
        self.by_status[key] = self.by_status.get(key, 0) + 1

    def clear(self) -> None:
        """Back to zero, in place (in-flight requests keep a reference)."""
        self.requests = self.rate_limited = self.faulted = 0
        self.by_route.clear()
        self.by_status.clear()

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready copy."""
        return {
            "requests": self.requests,
            "by_route": dict(self.by_route),
            "by_status": dict(self.by_status),
            "rate_limited": self.rate_limited,
            "faulted": self.faulted,
        }
