"""The Resend Contacts API emulator as an ASGI app.

Built on plain Starlette (through :mod:`emulators.kit`) rather than FastAPI: every
answer, including validation failures, must be in Resend's error shape, and FastAPI's
own request validation and OpenAPI docs would only get in the way of that.
"""

from __future__ import annotations

from starlette.applications import Starlette

from . import api_contacts, api_imports, api_properties, api_segments, api_topics
from .state import ResendEmulatorState


def create_app(
    rate: float = 2.0,
    api_keys: set[str] | None = None,
    require_user_agent: bool = True,
    import_delay: float = 0.0,
) -> Starlette:
    """Build an emulator app with its own in-memory state on ``app.state.emulator``.

    ``rate`` is requests per second per API key; ``api_keys=None`` accepts any key
    starting with ``re_``; ``import_delay`` keeps new imports ``queued`` that long.
    """
    state = ResendEmulatorState(
        rate=rate,
        api_keys=api_keys,
        require_user_agent=require_user_agent,
        import_delay=import_delay,
    )
    return state.app(
        [
            *api_imports.ROUTES,  # before /contacts/{id}
            *api_contacts.ROUTES,
            *api_segments.ROUTES,
            *api_properties.ROUTES,
            *api_topics.ROUTES,
        ]
    )
