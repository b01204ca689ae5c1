"""Pluggable error rendering: one exception type, one body shape per service.

Every emulated service has its own error body (Resend ``{"statusCode","name","message"}``,
Mailchimp ``application/problem+json``, Klaviyo JSON:API ``errors``...). Clients branch on
those bodies, so an emulator must never leak another shape, not even for router 404s,
admin mistakes or crashes. Code raises :class:`ApiError` everywhere; only the service's
:class:`ErrorFormat` decides how it looks on the wire.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response


class ApiError(Exception):
    """An error answer; raise it anywhere (handler, auth callable) and the app renders it.

    ``code`` is the service's machine-readable error name (Resend ``name``, Klaviyo
    ``code``, Sendex ``error``...). ``details`` carries service-specific extras a renderer
    may use (e.g. Klaviyo's ``source`` pointer); the kit itself never reads it.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: Mapping[str, str] | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.details = dict(details or {})
        super().__init__(f"{status} {code}: {message}")


BodyRenderer = Callable[[ApiError], Any]
"""Turns an error into the JSON-serialisable body the service would send."""


def _snake(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


@dataclass(frozen=True)
class ErrorFormat:
    """How one service spells its errors.

    ``codes`` gives the default code for a status (a fault rule or the gate often only
    knows the status); a missing status falls back to ``codes[500]``/``codes[400]`` and
    then to the HTTP reason phrase. ``messages`` gives the default message per code.
    """

    render_body: BodyRenderer
    media_type: str = "application/json"
    codes: Mapping[int, str] = field(default_factory=dict)
    messages: Mapping[str, str] = field(default_factory=dict)

    def code_for(self, status: int) -> str:
        """The code the service most likely uses for ``status``."""
        if status in self.codes:
            return self.codes[status]
        family = 500 if status >= 500 else 400
        return self.codes.get(family) or _snake(status)

    def message_for(self, code: str) -> str:
        """The default message for ``code`` (the code in words when none is known)."""
        return self.messages.get(code, code.replace("_", " "))

    def error(
        self,
        status: int,
        code: str | None = None,
        message: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> ApiError:
        """An :class:`ApiError` with this service's defaults filled in."""
        code = code or self.code_for(status)
        return ApiError(status, code, message or self.message_for(code), headers)

    def response(self, exc: ApiError) -> Response:
        """Render ``exc`` in this service's shape."""
        return JSONResponse(
            self.render_body(exc),
            status_code=exc.status,
            headers=exc.headers,
            media_type=self.media_type,
        )

    def exception_handlers(self) -> dict[Any, Callable[[Request, Exception], Any]]:
        """Starlette handlers rendering :class:`ApiError` and router 404/405s."""

        async def api_error(request: Request, exc: Exception) -> Response:
            assert isinstance(exc, ApiError)
            return self.response(exc)

        async def http_error(request: Request, exc: Exception) -> Response:
            assert isinstance(exc, HTTPException)
            status = exc.status_code
            # Router 404/405 details are Starlette's wording; use the service's instead.
            message = None if status in (404, 405) else str(exc.detail)
            return self.response(self.error(status, message=message, headers=exc.headers))

        return {ApiError: api_error, HTTPException: http_error}
