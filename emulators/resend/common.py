"""Small helpers shared by the route modules."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse

from .state import Account, ResendEmulatorState

T = TypeVar("T")


def emulator_state(request: Request) -> ResendEmulatorState:
    """The emulator state of the app serving ``request``."""
    state: ResendEmulatorState = request.app.state.emulator
    return state


def account_of(request: Request) -> Account:
    """The account of the API key that authenticated ``request``."""
    return emulator_state(request).account_of(request)


def list_body(
    items: Iterable[T], render: Callable[[T], dict[str, Any]], has_more: bool
) -> dict[str, Any]:
    """Resend's list envelope."""
    return {"object": "list", "has_more": has_more, "data": [render(item) for item in items]}


def json(body: dict[str, Any], status: int = 200) -> JSONResponse:
    """A JSON answer (named for brevity in handlers)."""
    return JSONResponse(body, status_code=status)


def drop_none(body: dict[str, Any]) -> dict[str, Any]:
    """Omit unset optional fields: the spec types them as plain strings, never null."""
    return {key: value for key, value in body.items() if value is not None}
