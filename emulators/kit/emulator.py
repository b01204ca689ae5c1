"""The service-independent runtime of one emulator app.

An :class:`Emulator` owns what every emulated service needs and nothing a service
defines: the rate limiter, the fault rules, the traffic counters and run-time
configuration. A service plugs in how errors look, how a request maps to an account
and what else it can configure, then builds its Starlette app with :meth:`Emulator.app`
so the gate, the ``/_emulator`` routes and error rendering are wired the same way
everywhere.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.routing import BaseRoute

from .errors import ApiError, ErrorFormat
from .faults import EmailExtractor, FaultSet
from .ratelimit import RATELIMIT_HEADERS, Decision, RateHeaders, RateLimiter, Window
from .stats import Stats

Authenticator = Callable[[Request], str]
"""Returns the account key a request belongs to, or raises the service's 401/403."""


@dataclass(frozen=True)
class ConfigOption:
    """A service-specific setting exposed by ``GET``/``POST /_emulator/config``.

    ``set`` receives the raw JSON value and raises ``ValueError`` (answered as 400)
    when it is unacceptable; it must not change anything in that case.
    """

    name: str
    get: Callable[[], Any]
    set: Callable[[Any], None]

    @classmethod
    def attribute(
        cls,
        owner: object,
        name: str,
        parse: Callable[[Any, str], Any],
        attr: str | None = None,
    ) -> ConfigOption:
        """The option ``name`` reading and writing ``owner.<attr>`` (default: ``name``);
        ``parse(value, name)`` checks and converts a new value (raising ``ValueError``)."""
        attr = attr or name
        return cls(
            name,
            lambda: getattr(owner, attr),
            lambda value: setattr(owner, attr, parse(value, name)),
        )


def positive_number(value: Any, name: str) -> float:
    """``value`` as a float; ``ValueError`` unless it is a number above 0."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"`{name}` must be a positive number.")
    return float(value)


def seconds(value: Any, name: str) -> float:
    """``value`` as a float; ``ValueError`` unless it is a number of seconds (>= 0)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"`{name}` must be >= 0 seconds.")
    return float(value)


def _parse_routes(value: Any) -> dict[str, tuple[Window, ...]]:
    message = '`route_limits` must map route keys to [{"limit": n, "seconds": s}, ...].'
    if not isinstance(value, dict):
        raise ValueError(message)
    out: dict[str, tuple[Window, ...]] = {}
    for route, windows in value.items():
        if not isinstance(windows, list) or not all(isinstance(w, dict) for w in windows):
            raise ValueError(message)
        try:
            out[route] = tuple(Window(int(w["limit"]), float(w["seconds"])) for w in windows)
        except (KeyError, TypeError, ValueError):
            raise ValueError(message) from None
    return out


class Emulator:
    """Limiter, faults, stats and config of one app, plus the service's plug-ins.

    Subclass it to add the service's data (reset it in ``on_reset``) or compose it; either
    way put the instance on ``app.state.emulator`` (``app()`` does) so tests can reach it.
    """

    def __init__(
        self,
        *,
        errors: ErrorFormat,
        authenticate: Authenticator,
        rate: float = 2.0,
        route_limits: Mapping[str, Sequence[Window]] | None = None,
        concurrency: int | None = None,
        rate_headers: RateHeaders = RATELIMIT_HEADERS,
        rate_limit_error: Callable[[Decision], ApiError] | None = None,
        require_user_agent: bool = False,
        user_agent_error: ApiError | None = None,
        emails_of: EmailExtractor | None = None,
        options: Sequence[ConfigOption] = (),
        on_reset: Callable[[], None] | None = None,
        describe_accounts: Callable[[], Mapping[str, Any]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.errors = errors
        self.authenticate = authenticate
        self.limiter = RateLimiter(rate, routes=route_limits, concurrency=concurrency, clock=clock)
        self.rate_headers = rate_headers
        self.rate_limit_error: Callable[[Decision], ApiError] = rate_limit_error or (
            lambda decision: errors.error(429)
        )
        self.require_user_agent = require_user_agent
        self.user_agent_error = user_agent_error or errors.error(
            403, message="The `User-Agent` header is required."
        )
        self.emails_of = emails_of
        self.options = {option.name: option for option in options}
        self.on_reset = on_reset
        self.describe_accounts: Callable[[], Mapping[str, Any]] = describe_accounts or dict
        """Per-account summary for ``GET /_emulator/accounts`` (called under ``lock``)."""
        self.faults = FaultSet()
        self.stats = Stats()
        self.lock = threading.RLock()
        """Guards service data shared between the event loop and worker threads."""

    @property
    def rate(self) -> float:
        """Default requests per second per account."""
        return self.limiter.rate

    def reset(self) -> None:
        """Drop data (via ``on_reset``), faults, counters and rate history; keep config."""
        with self.lock:
            if self.on_reset is not None:
                self.on_reset()
            self.stats.clear()
            self.faults.clear()
            self.limiter.reset()

    def config(self) -> dict[str, Any]:
        """The run-time settings, as ``GET /_emulator/config`` shows them."""
        return {
            "rate": self.limiter.rate,
            "route_limits": {
                route: [{"limit": w.limit, "seconds": w.seconds} for w in windows]
                for route, windows in self.limiter.routes.items()
            },
            "concurrency": self.limiter.concurrency,
            "require_user_agent": self.require_user_agent,
            **{name: option.get() for name, option in self.options.items()},
        }

    def configure(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Apply ``POST /_emulator/config``; ``ValueError`` when any value is bad.

        Built-in keys: ``rate``, ``route_limits``, ``concurrency`` (null = unlimited),
        ``require_user_agent``, ``seed`` (for ``fail_probability``), then the service's
        :class:`ConfigOption` names. Unknown keys are ignored.
        """
        rate = positive_number(body["rate"], "rate") if body.get("rate") is not None else None
        routes = _parse_routes(body["route_limits"]) if "route_limits" in body else None
        if "concurrency" in body:
            concurrency = body["concurrency"]
            if concurrency is not None and (
                isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1
            ):
                raise ValueError("`concurrency` must be a positive integer or null.")
        if rate is not None:
            self.limiter.set_rate(rate)
        if routes is not None:
            self.limiter.set_routes(routes)
        if "concurrency" in body:
            self.limiter.set_concurrency(body["concurrency"])
        for name, option in self.options.items():
            if name in body:
                option.set(body[name])
        if "require_user_agent" in body:
            self.require_user_agent = bool(body["require_user_agent"])
        if "seed" in body:
            self.faults.random.seed(body["seed"])
        return self.config()

    def check_email(self, email: str, route: str | None = None) -> None:
        """Raise the fault error if a rule rejects writing ``email`` (counted as faulted).

        For handlers that write several emails per request or validate before faults.
        """
        rule = self.faults.for_email(email, route)
        if rule is not None:
            self.stats.faulted += 1
            raise rule.email_error(email)

    def app(self, routes: Sequence[BaseRoute], **kwargs: Any) -> Starlette:
        """A Starlette app serving ``routes`` behind the gate, with the admin routes.

        ``kwargs`` go to :class:`Starlette` (extra ``middleware`` runs inside the gate).
        """
        from .admin import admin_routes
        from .gate import Gate

        middleware = [Middleware(Gate, emulator=self), *kwargs.pop("middleware", [])]
        handlers = {**self.errors.exception_handlers(), **kwargs.pop("exception_handlers", {})}
        app = Starlette(
            routes=[*admin_routes(self), *routes],
            middleware=middleware,
            exception_handlers=handlers,
            **kwargs,
        )
        app.state.emulator = self
        return app
