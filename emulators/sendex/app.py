"""The Sendex audiences API emulator as an ASGI app (plain Starlette through the kit, so every
answer, router 404s included, is in Sendex's ``{"error", "message"}`` shape)."""

from __future__ import annotations

from starlette.applications import Starlette

from . import api_audiences, api_contacts
from .state import DEFAULT_RATE, SendexEmulator


def create_app(
    rate: float = DEFAULT_RATE,
    api_keys: dict[str, str] | None = None,
    verified_domains: list[str] | None = None,
) -> Starlette:
    """A fresh emulator; its state is ``app.state.emulator`` (a :class:`SendexEmulator`).

    ``rate`` is requests per second per key; ``api_keys`` maps accepted keys to ``"full"`` or
    ``"sending"`` (default: ``sk_live_``/``sk_test_`` full, ``sk_send_`` sending-only);
    ``verified_domains=None`` verifies every domain.
    """
    emulator = SendexEmulator(rate=rate, api_keys=api_keys, verified_domains=verified_domains)
    return emulator.app([*api_audiences.ROUTES, *api_contacts.ROUTES])
