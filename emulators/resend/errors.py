"""Resend's error shape, shared by every part of the emulator.

Resend answers every failure with ``{"statusCode", "name", "message"}``; clients (ours
included) branch on ``name``, so the emulator must never leak another shape, not even
for unknown paths or unexpected crashes. :data:`RESEND_ERRORS` tells the kit so.
"""

from __future__ import annotations

from typing import Any

from emulators.kit import ApiError, ErrorFormat

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


def _body(error: ApiError) -> dict[str, Any]:
    return {"statusCode": error.status, "name": error.code, "message": error.message}


RESEND_ERRORS = ErrorFormat(render_body=_body, codes=DEFAULT_NAMES, messages=DEFAULT_MESSAGES)
"""How Resend renders errors, for the kit's gate, admin routes and router errors."""

__all__ = [
    "DEFAULT_MESSAGES",
    "DEFAULT_NAMES",
    "RESEND_ERRORS",
    "ApiError",
    "missing_field",
    "not_found",
    "validation_error",
]


def validation_error(message: str) -> ApiError:
    """422 ``validation_error``: a field is present but wrong."""
    return ApiError(422, "validation_error", message)


def missing_field(field: str) -> ApiError:
    """422 ``missing_required_field``: the message names the missing field."""
    return ApiError(422, "missing_required_field", f"Missing `{field}` field.")


def not_found(what: str) -> ApiError:
    """404 ``not_found`` with Resend's "<Thing> not found" wording."""
    return ApiError(404, "not_found", f"{what} not found")
