"""The Resend Contacts API emulator as an ASGI app.

Built on plain Starlette rather than FastAPI: every answer, including validation
failures, must be in Resend's error shape, and FastAPI's own request validation and
OpenAPI docs would only get in the way of that.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from . import admin, api_contacts, api_imports, api_properties, api_segments, api_topics
from .errors import ApiError, default_name, error_response
from .gate import ApiGate
from .state import ResendEmulatorState


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.to_response()


async def _http_error(request: Request, exc: Exception) -> Response:
    """Router 404/405s, in Resend's shape and wording."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return error_response(404, "not_found", "The requested endpoint does not exist.")
    if exc.status_code == 405:
        return error_response(
            405,
            "method_not_allowed",
            "Method is not allowed for the requested path.",
            exc.headers,
        )
    return error_response(exc.status_code, default_name(exc.status_code), str(exc.detail))


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
    routes = [
        *admin.ROUTES,
        *api_imports.ROUTES,  # before /contacts/{id}
        *api_contacts.ROUTES,
        *api_segments.ROUTES,
        *api_properties.ROUTES,
        *api_topics.ROUTES,
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(ApiGate)],
        exception_handlers={ApiError: _api_error, HTTPException: _http_error},
    )
    app.state.emulator = ResendEmulatorState(
        rate=rate,
        api_keys=api_keys,
        require_user_agent=require_user_agent,
        import_delay=import_delay,
    )
    return app
