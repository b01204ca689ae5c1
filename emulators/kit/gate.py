"""What every API request goes through before its handler.

Order follows the real services: the ``User-Agent`` check, then authentication, then
the per-account concurrency cap and rate limit, then injected faults (request-level,
then email rules on the body). A request stopped at any step never reaches a handler,
so it cannot change state; a faulted request still uses rate budget, as a real failed
request would. Paths under ``/_emulator`` bypass all of it so a test can always steer
the emulator, even while its key is throttled or faulted.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import TYPE_CHECKING

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import ApiError
from .ratelimit import Decision

if TYPE_CHECKING:
    from .emulator import Emulator

ADMIN_PREFIX = "/_emulator"
ACCOUNT_SCOPE = "emulator.account"
"""ASGI scope key where the gate stores the authenticated account key."""


def route_key(scope: Scope) -> str:
    """``"METHOD /path/template"`` for stats, limits and faults (raw path if unmatched)."""
    method = scope["method"]
    for route in scope["app"].router.routes:
        match, _ = route.matches(scope)
        if match != Match.NONE and hasattr(route, "path"):
            return f"{method} {route.path}"
    return f"{method} {scope['path']}"


def account_key(request: Request) -> str:
    """The account key the gate authenticated ``request`` as (inside handlers)."""
    key: str = request.scope[ACCOUNT_SCOPE]
    return key


def bearer_token(headers: Headers, scheme: str = "bearer") -> str | None:
    """The credential of an ``Authorization: <scheme> <token>`` header, if any.

    Klaviyo, for one, uses the scheme ``Klaviyo-API-Key``; schemes compare
    case-insensitively.
    """
    value = headers.get("authorization", "")
    given, _, token = value.strip().partition(" ")
    if given.lower() != scheme.lower() or not token.strip():
        return None
    return token.strip()


def basic_credentials(headers: Headers) -> tuple[str, str] | None:
    """``(user, password)`` of an ``Authorization: Basic`` header (Mailchimp's style)."""
    token = bearer_token(headers, "basic")
    if token is None:
        return None
    try:
        user, sep, password = base64.b64decode(token, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


class Gate:
    """ASGI middleware applying user-agent, auth, limits and faults; adds rate headers.

    Install with ``Middleware(Gate, emulator=...)`` (``Emulator.app`` does it).
    """

    def __init__(self, app: ASGIApp, emulator: Emulator) -> None:
        self.app = app
        self.emulator = emulator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(ADMIN_PREFIX):
            await self.app(scope, receive, send)
            return
        emu = self.emulator
        route = route_key(scope)
        stats = emu.stats
        stats.count_request(route)

        async def send_counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                stats.count_status(message["status"])
            await send(message)

        decision = emu.limiter.idle_decision(route)
        holding: str | None = None  # account whose concurrency slot this request holds
        try:
            try:
                account = self._authenticate(scope)
                refused = emu.limiter.acquire(account, route)
                if refused is None:
                    holding = account
                    decision = emu.limiter.check(account, route)
                    refused = None if decision.allowed else decision
                if refused is not None:
                    decision = refused
                    stats.rate_limited += 1
                    raise emu.rate_limit_error(refused)
                fault = emu.faults.for_request(route)
                if fault is not None:
                    stats.faulted += 1
                    raise fault.error()
                receive = await self._check_emails(scope, receive, route)
            except ApiError as exc:
                response = emu.errors.response(exc)
                response.headers.update(decision.headers(emu.rate_headers))
                await response(scope, receive, send_counted)
                return
            scope[ACCOUNT_SCOPE] = account
            await self._forward(scope, receive, send_counted, decision)
        finally:
            if holding is not None:
                emu.limiter.release(holding)

    def _authenticate(self, scope: Scope) -> str:
        emu = self.emulator
        request = Request(scope)
        if emu.require_user_agent and not request.headers.get("user-agent", "").strip():
            error = emu.user_agent_error  # a template: raise a fresh copy each time
            raise ApiError(error.status, error.code, error.message, error.headers, error.details)
        return emu.authenticate(request)

    async def _check_emails(self, scope: Scope, receive: Receive, route: str) -> Receive:
        """Apply ``reject_emails`` rules to the body; returns a ``receive`` that replays it."""
        emu = self.emulator
        if emu.emails_of is None or not emu.faults.has_email_rules():
            return receive
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        raw = b"".join(chunks)
        try:
            body = json.loads(raw) if raw.strip() else None
        except (ValueError, UnicodeDecodeError):
            body = None
        if body is not None:
            for email in emu.emails_of(route, body):
                rule = emu.faults.for_email(email, route)
                if rule is not None:
                    emu.stats.faulted += 1
                    raise rule.email_error(email)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": raw, "more_body": False}

        return replay

    async def _forward(
        self, scope: Scope, receive: Receive, send: Send, decision: Decision
    ) -> None:
        emu = self.emulator
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                for name, value in decision.headers(emu.rate_headers).items():
                    headers[name] = value
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            if started:
                raise
            response = emu.errors.response(emu.errors.error(500))
            response.headers.update(decision.headers(emu.rate_headers))
            await response(scope, receive, send)
