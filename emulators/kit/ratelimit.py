"""Per-account rate limiting: sliding windows per route, plus a cap on in-flight requests.

Clients that respect rate-limit headers are the point of testing against an emulator,
so the numbers must be exact and repeatable. A sliding log is used rather than a token
bucket: a bucket lets a client burst to ``capacity + rate`` within one second, while the
log guarantees that no window of the configured length ever holds more than its limit.

* By default every route of an account shares one window of ``rate`` requests per
  second (Resend, Sendex).
* ``routes`` gives some routes their own windows, each route with its own log per
  account, all of which must have room (Klaviyo: a per-second burst and a per-minute
  steady limit per endpoint).
* ``concurrency`` caps requests in flight per account (Mailchimp: 10 connections).
"""

from __future__ import annotations

import math
import threading
import time
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Window:
    """At most ``limit`` requests in any ``seconds``-long span."""

    limit: int
    seconds: float

    def __post_init__(self) -> None:
        if self.limit < 1 or self.seconds <= 0:
            raise ValueError("a window needs limit >= 1 and seconds > 0")

    @classmethod
    def per_second(cls, rate: float) -> Window:
        """Translate "``rate`` requests per second" into a window.

        A rate of 1 or more allows ``floor(rate)`` requests per 1 s window (never more than
        the rate). A rate below 1 allows one request per ``1 / rate`` seconds, so 0.5 means
        one request every two seconds.
        """
        if rate <= 0:
            raise ValueError("rate must be positive")
        if rate >= 1:
            return cls(math.floor(rate), 1.0)
        return cls(1, 1.0 / rate)


@dataclass(frozen=True)
class RateHeaders:
    """Which headers carry the budget; ``None`` names are not sent.

    Header names are case-insensitive on the wire, so Resend's ``ratelimit-limit`` and
    Klaviyo's ``RateLimit-Limit`` are the same :data:`RATELIMIT_HEADERS`.
    """

    limit: str | None = "ratelimit-limit"
    remaining: str | None = "ratelimit-remaining"
    reset: str | None = "ratelimit-reset"
    retry_after: str = "retry-after"
    """Always sent on a 429, whatever the other names are."""


RATELIMIT_HEADERS = RateHeaders()
"""``ratelimit-limit/remaining/reset`` on every API answer, ``retry-after`` on 429s."""
RETRY_AFTER_ONLY = RateHeaders(limit=None, remaining=None, reset=None)
"""Only ``retry-after``, only on 429s (services that publish no budget headers)."""


@dataclass(frozen=True)
class Decision:
    """Outcome of one admission check, with what the headers must say.

    With several windows the figures are those of the most restrictive one: the window
    with the least ``remaining`` when admitted, the one freeing up last when refused.
    """

    allowed: bool
    limit: int
    remaining: int
    reset: int
    """Whole seconds until the window has room again (>= 1)."""
    retry_after: int
    """Whole seconds a rejected client should wait (>= 1); 0 when allowed."""
    concurrency: bool = False
    """Refused because the account had too many requests in flight (not the windows)."""

    def headers(self, names: RateHeaders = RATELIMIT_HEADERS) -> dict[str, str]:
        """The rate-limit headers for this answer."""
        out: dict[str, str] = {}
        for name, value in (
            (names.limit, self.limit),
            (names.remaining, self.remaining),
            (names.reset, self.reset),
        ):
            if name is not None:
                out[name] = str(value)
        if not self.allowed:
            out[names.retry_after] = str(self.retry_after)
        return out


class RateLimiter:
    """Sliding-log limiter keyed by account (and route, for routes with own windows).

    Thread-safe: handlers run on the event loop, but tests call it from their thread.
    """

    def __init__(
        self,
        rate: float,
        *,
        routes: Mapping[str, Sequence[Window]] | None = None,
        concurrency: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._logs: dict[tuple[str, str], deque[float]] = {}
        self._in_flight: dict[str, int] = {}
        self._routes: dict[str, tuple[Window, ...]] = {}
        self._concurrency: int | None = None
        self.set_rate(rate)
        self.set_routes(routes or {})
        self.set_concurrency(concurrency)

    @property
    def rate(self) -> float:
        """Configured requests per second for routes without their own windows."""
        return self._rate

    @property
    def routes(self) -> dict[str, tuple[Window, ...]]:
        """Route key -> its own windows (replacing ``rate`` for that route)."""
        return dict(self._routes)

    @property
    def concurrency(self) -> int | None:
        """Max requests in flight per account; ``None`` means unlimited."""
        return self._concurrency

    def set_rate(self, rate: float) -> None:
        """Change the default rate at run time; existing logs are kept (and trimmed on use)."""
        window = Window.per_second(rate)
        with self._lock:
            self._rate = rate
            self._default = (window,)

    def set_routes(self, routes: Mapping[str, Sequence[Window]]) -> None:
        """Replace the per-route windows (an empty sequence means "use the default")."""
        cleaned = {route: tuple(windows) for route, windows in routes.items() if windows}
        with self._lock:
            self._routes = cleaned

    def set_concurrency(self, limit: int | None) -> None:
        """Change the in-flight cap; ``None`` removes it."""
        if limit is not None and limit < 1:
            raise ValueError("concurrency must be a positive integer or null")
        with self._lock:
            self._concurrency = limit

    def reset(self) -> None:
        """Forget every account's history (in-flight counts stay: those requests are live)."""
        with self._lock:
            self._logs.clear()

    def windows_for(self, route: str) -> tuple[Window, ...]:
        """The windows that apply to ``route``."""
        return self._routes.get(route, self._default)

    def idle_decision(self, route: str = "") -> Decision:
        """Headers for answers charged to no account (e.g. auth failures)."""
        window = min(self.windows_for(route), key=lambda w: w.limit)
        return Decision(True, window.limit, window.limit, max(1, math.ceil(window.seconds)), 0)

    def check(self, key: str, route: str = "") -> Decision:
        """Admit or refuse one request of account ``key`` to ``route``, recording it if admitted."""
        return self._decide(key, route, record=True)

    def peek(self, key: str, route: str = "") -> Decision:
        """What :meth:`check` would say, without recording anything."""
        return self._decide(key, route, record=False)

    def acquire(self, key: str, route: str = "") -> Decision | None:
        """Take an in-flight slot for ``key``; a refusal :class:`Decision` when none is free.

        Every ``None`` (success) must be paired with one :meth:`release`.
        """
        with self._lock:
            count = self._in_flight.get(key, 0)
            if self._concurrency is None or count < self._concurrency:
                self._in_flight[key] = count + 1
                return None
        # A slot frees as soon as any request ends; 1 s is the smallest whole wait.
        return replace(self.peek(key, route), allowed=False, retry_after=1, concurrency=True)

    def release(self, key: str) -> None:
        """Give back a slot taken by :meth:`acquire`."""
        with self._lock:
            count = self._in_flight.get(key, 0) - 1
            if count > 0:
                self._in_flight[key] = count
            else:
                self._in_flight.pop(key, None)

    def in_flight(self, key: str) -> int:
        """Requests of ``key`` currently being served."""
        with self._lock:
            return self._in_flight.get(key, 0)

    def _decide(self, key: str, route: str, *, record: bool) -> Decision:
        with self._lock:
            now = self._clock()
            own = route in self._routes
            windows = self._routes[route] if own else self._default
            log = self._logs.setdefault((key, route if own else ""), deque())
            longest = max(w.seconds for w in windows)
            while log and log[0] <= now - longest:
                log.popleft()
            # Entries inside each window; a lowered limit can leave more than it allows.
            starts = [bisect_right(log, now - w.seconds) for w in windows]
            blocking = [
                len(log) - start >= w.limit for w, start in zip(windows, starts, strict=True)
            ]
            allowed = not any(blocking)
            if allowed and record:
                log.append(now)
            verdicts: list[Decision] = []
            for window, start, blocks in zip(windows, starts, blocking, strict=True):
                count = len(log) - start
                if count:
                    # Room reappears when the oldest entry that blocks us leaves the window.
                    oldest = log[start + max(0, count - window.limit)] if blocks else log[start]
                    until_free = oldest + window.seconds - now
                else:
                    until_free = window.seconds
                reset = max(1, math.ceil(until_free))
                verdicts.append(
                    Decision(
                        allowed=not blocks,
                        limit=window.limit,
                        remaining=max(0, window.limit - count),
                        reset=reset,
                        retry_after=0 if not blocks else reset,
                    )
                )
            if allowed:
                chosen = min(verdicts, key=lambda d: d.remaining)
            else:
                chosen = max((d for d in verdicts if not d.allowed), key=lambda d: d.reset)
            return replace(chosen, allowed=allowed)
