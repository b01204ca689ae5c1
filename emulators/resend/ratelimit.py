"""Per-API-key request rate limiting, shaped like Resend's.

Resend allows a fixed number of requests per second per team and reports the budget
in ``ratelimit-*`` headers on every answer; clients that respect those headers are the
point of testing against an emulator, so the numbers must be exact and repeatable.

A sliding log is used rather than a token bucket: a bucket lets a client burst to
``capacity + rate`` within one second, while the log guarantees that no window of the
configured length ever holds more than the limit.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    """Outcome of one admission check, with what the headers must say."""

    allowed: bool
    limit: int
    remaining: int
    reset: int
    """Whole seconds until the window has room again (>= 1)."""
    retry_after: int
    """Whole seconds a rejected client should wait (>= 1); 0 when allowed."""

    def headers(self) -> dict[str, str]:
        """The headers Resend sends with every response."""
        out = {
            "ratelimit-limit": str(self.limit),
            "ratelimit-remaining": str(self.remaining),
            "ratelimit-reset": str(self.reset),
        }
        if not self.allowed:
            out["retry-after"] = str(self.retry_after)
        return out


def window_for(rate: float) -> tuple[int, float]:
    """Translate "``rate`` requests per second" into (requests, window seconds).

    A rate of 1 or more allows ``floor(rate)`` requests per 1 s window (never more than
    the rate). A rate below 1 allows one request per ``1 / rate`` seconds, so 0.5 means
    one request every two seconds.
    """
    if rate <= 0:
        raise ValueError("rate must be positive")
    if rate >= 1:
        return math.floor(rate), 1.0
    return 1, 1.0 / rate


class RateLimiter:
    """Sliding-log limiter keyed by API key; thread-safe."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._logs: dict[str, deque[float]] = {}
        self.set_rate(rate)

    @property
    def rate(self) -> float:
        """Configured requests per second."""
        return self._rate

    def set_rate(self, rate: float) -> None:
        """Change the rate at run time; existing logs are kept (and trimmed on use)."""
        limit, window = window_for(rate)
        with self._lock:
            self._rate = rate
            self._limit = limit
            self._window = window

    def reset(self) -> None:
        """Forget every key's history."""
        with self._lock:
            self._logs.clear()

    def idle_decision(self) -> Decision:
        """Headers for answers that are not charged to any key (e.g. auth failures)."""
        return Decision(True, self._limit, self._limit, max(1, math.ceil(self._window)), 0)

    def check(self, key: str) -> Decision:
        """Admit or reject one request for ``key``, recording it if admitted."""
        with self._lock:
            now = self._clock()
            log = self._logs.setdefault(key, deque())
            horizon = now - self._window
            while log and log[0] <= horizon:
                log.popleft()
            # A lowered rate can leave more entries than the new limit allows.
            allowed = len(log) < self._limit
            if allowed:
                log.append(now)
            remaining = max(0, self._limit - len(log))
            # Room reappears when the oldest entry that blocks us leaves the window.
            if log:
                blocking = log[max(0, len(log) - self._limit)] if not allowed else log[0]
                until_free = blocking + self._window - now
            else:
                until_free = self._window
            reset = max(1, math.ceil(until_free))
            return Decision(
                allowed=allowed,
                limit=self._limit,
                remaining=remaining,
                reset=reset,
                retry_after=0 if allowed else reset,
            )
