"""What every Resend API request goes through before its handler.

Order matters and follows the real service: the ``User-Agent`` check, then the API
key, then the per-key rate limit, then injected faults. A request stopped at any step
never reaches a handler, so it cannot change state. The admin prefix
``/_emulator/`` bypasses all of it.
"""

from __future__ import annotations

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .common import API_KEY_SCOPE
from .errors import ApiError, error_response
from .ratelimit import Decision, window_for
from .state import ResendEmulatorState

ADMIN_PREFIX = "/_emulator"


def route_key(scope: Scope) -> str:
    """``"METHOD /path/template"`` for stats and fault targeting (raw path if unmatched)."""
    method = scope["method"]
    for route in scope["app"].router.routes:
        match, _ = route.matches(scope)
        if match != Match.NONE and hasattr(route, "path"):
            return f"{method} {route.path}"
    return f"{method} {scope['path']}"


def rate_limit_message(rate: float) -> str:
    """Resend's wording for a 429, adapted to fractional rates."""
    limit, window = window_for(rate)
    if window == 1.0:
        allowance = f"{limit} request{'s' if limit != 1 else ''} per second"
    else:
        allowance = f"1 request every {window:g} seconds"
    return (
        f"Too many requests. You can only make {allowance}. "
        "See rate limit response headers for more information."
    )


def bearer_token(headers: Headers) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header, if any."""
    value = headers.get("authorization", "")
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class ApiGate:
    """ASGI middleware applying user-agent, auth, rate limit and faults; adds headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(ADMIN_PREFIX):
            await self.app(scope, receive, send)
            return
        state: ResendEmulatorState = scope["app"].state.emulator
        key = route_key(scope)
        stats = state.stats
        stats.requests += 1
        stats.by_route[key] = stats.by_route.get(key, 0) + 1

        async def send_counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = str(message["status"])
                stats.by_status[status] = stats.by_status.get(status, 0) + 1
            await send(message)

        decision, rejection = self._admit(state, scope, key)
        if rejection is not None:
            response = rejection.to_response()
            response.headers.update(decision.headers())
            await response(scope, receive, send_counted)
            return
        await self._forward(scope, receive, send_counted, decision)

    def _admit(
        self, state: ResendEmulatorState, scope: Scope, key: str
    ) -> tuple[Decision, ApiError | None]:
        headers = Headers(scope=scope)
        idle = state.limiter.idle_decision()
        if state.require_user_agent and not headers.get("user-agent", "").strip():
            return idle, ApiError(
                403,
                "missing_user_agent",
                "The `User-Agent` header is required. Add a User-Agent header to your request.",
            )
        api_key = bearer_token(headers)
        if api_key is None:
            return idle, ApiError(401, "missing_api_key")
        if not state.key_is_valid(api_key):
            return idle, ApiError(403, "invalid_api_key", "API key is invalid")
        decision = state.limiter.check(api_key)
        if not decision.allowed:
            state.stats.rate_limited += 1
            return decision, ApiError(429, "rate_limit_exceeded", rate_limit_message(state.rate))
        fault = state.faults.for_request(key, state.random)
        if fault is not None:
            state.stats.faulted += 1
            return decision, fault.error()
        scope[API_KEY_SCOPE] = api_key
        return decision, None

    async def _forward(
        self, scope: Scope, receive: Receive, send: Send, decision: Decision
    ) -> None:
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                for name, value in decision.headers().items():
                    headers[name] = value
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            if started:
                raise
            response: Response = error_response(500, "internal_server_error")
            response.headers.update(decision.headers())
            await response(scope, receive, send)
