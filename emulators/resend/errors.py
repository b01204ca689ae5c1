"""Resend's error shape, shared by every part of the emulator.

Resend answers every failure with ``{"statusCode", "name", "message"}``; clients (ours
included) branch on ``name``, so the emulator must never leak another shape, not even
for unknown paths or unexpected crashes.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import JSONResponse

#: Default error ``name`` for a status code, used when a caller (for example a fault rule)
#: gives only a status.
DEFAULT_NAMES: dict[int, str] = {
    400: "validation_error",
    401: "missing_api_key",
    403: "invalid_api_key",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "validation_error",
    422: "validation_error",
    429: "rate_limit_exceeded",
    500: "internal_server_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}

DEFAULT_MESSAGES: dict[str, str] = {
    "validation_error": "We found an error with one or more fields in the request.",
    "missing_required_field": "The request body is missing one or more required fields.",
    "not_found": "The requested endpoint does not exist.",
    "method_not_allowed": "Method is not allowed for the requested path.",
    "missing_api_key": "Missing API key in the authorization header.",
    "invalid_api_key": "API key is invalid",
    "conflict": "The request conflicts with the current state of the resource.",
    "internal_server_error": "An unexpected error occurred, please try again later.",
    "bad_gateway": "The upstream service answered with an invalid response.",
    "service_unavailable": "The service is temporarily unavailable, please try again later.",
    "gateway_timeout": "The upstream service did not answer in time.",
}


def default_name(status: int) -> str:
    """The error name Resend would most likely use for ``status``."""
    if status in DEFAULT_NAMES:
        return DEFAULT_NAMES[status]
    return "internal_server_error" if status >= 500 else "validation_error"


class ApiError(Exception):
    """An error answer; raised anywhere in a handler and rendered by the app."""

    def __init__(
        self,
        status: int,
        name: str,
        message: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status = status
        self.name = name
        self.message = message or DEFAULT_MESSAGES.get(name, name.replace("_", " "))
        self.headers = dict(headers or {})
        super().__init__(f"{status} {name}: {self.message}")

    def to_response(self) -> JSONResponse:
        """Render in Resend's error shape."""
        return error_response(self.status, self.name, self.message, self.headers)


def error_response(
    status: int,
    name: str,
    message: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """Build a JSON response in Resend's error shape."""
    body = {
        "statusCode": status,
        "name": name,
        "message": message or DEFAULT_MESSAGES.get(name, name.replace("_", " ")),
    }
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def validation_error(message: str) -> ApiError:
    """422 ``validation_error``: a field is present but wrong."""
    return ApiError(422, "validation_error", message)


def missing_field(field: str) -> ApiError:
    """422 ``missing_required_field``: the message names the missing field."""
    return ApiError(422, "missing_required_field", f"Missing `{field}` field.")


def not_found(what: str) -> ApiError:
    """404 ``not_found`` with Resend's "<Thing> not found" wording."""
    return ApiError(404, "not_found", f"{what} not found")
