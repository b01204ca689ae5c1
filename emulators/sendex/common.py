"""Helpers shared by the route modules."""

from __future__ import annotations

from starlette.requests import Request

from .errors import not_found
from .state import Account, Audience, SendexEmulator


def emulator_of(request: Request) -> SendexEmulator:
    emulator: SendexEmulator = request.app.state.emulator
    return emulator


def account_of(request: Request) -> Account:
    """The account of the key that authenticated ``request`` (call under the lock)."""
    return emulator_of(request).account_of(request)


def audience_of(request: Request) -> Audience:
    """The path's audience; 404 when it is not this account's (call under the lock)."""
    audience = account_of(request).audiences.get(request.path_params["id"])
    if audience is None:
        raise not_found("Audience")
    return audience
