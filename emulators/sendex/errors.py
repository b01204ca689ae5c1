"""Sendex's error shape: ``{"error": <code>, "message": <words>}`` on every failure.

The published documentation shows success bodies only. Where it is silent the emulator
decides, and every decision is listed here so connector authors know what they rely on:

* 400 ``bad_request``: the body is not JSON.
* 401 ``unauthorized``: no ``Authorization: Bearer`` key, or a key Sendex does not know.
* 403 ``forbidden``: a sending-only key on an endpoint the docs mark "full access".
* 404 ``not_found``: unknown audience or contact (also another account's, and malformed ids).
* 422 ``validation_error``: a field is missing or of the wrong type or format;
  ``domain_not_verified`` when an audience is created for a domain the account has not
  verified (422, not 403, because the key itself is fine).
* 429 ``rate_limit_exceeded``, with ``Retry-After`` (see :mod:`emulators.sendex.state`).
* 5xx: ``internal_error``, ``bad_gateway``, ``service_unavailable``, ``gateway_timeout``.
"""

from __future__ import annotations

from typing import Any

from emulators.kit import ApiError, ErrorFormat

DEFAULT_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    422: "validation_error",
    429: "rate_limit_exceeded",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}

DEFAULT_MESSAGES: dict[str, str] = {
    "bad_request": "The request body is not valid JSON.",
    "unauthorized": "Missing or invalid API key.",
    "forbidden": "This endpoint requires a full access API key.",
    "not_found": "The requested resource does not exist.",
    "method_not_allowed": "Method is not allowed for the requested path.",
    "conflict": "The request conflicts with the current state of the resource.",
    "validation_error": "One or more fields are invalid.",
    "rate_limit_exceeded": "Too many requests. Retry after the delay in the Retry-After header.",
    "internal_error": "An unexpected error occurred. Please try again later.",
    "bad_gateway": "The upstream service answered with an invalid response.",
    "service_unavailable": "The service is temporarily unavailable. Please try again later.",
    "gateway_timeout": "The upstream service did not answer in time.",
}


def _body(error: ApiError) -> dict[str, Any]:
    return {"error": error.code, "message": error.message}


SENDEX_ERRORS = ErrorFormat(render_body=_body, codes=DEFAULT_CODES, messages=DEFAULT_MESSAGES)
"""How Sendex renders errors, for the kit's gate, admin routes and router errors."""


def validation_error(message: str) -> ApiError:
    """422 ``validation_error`` naming the offending field."""
    return ApiError(422, "validation_error", message)


def not_found(what: str) -> ApiError:
    """404 ``not_found``: ``"Audience not found."``, ``"Contact not found."``."""
    return ApiError(404, "not_found", f"{what} not found.")


__all__ = [
    "DEFAULT_CODES",
    "DEFAULT_MESSAGES",
    "SENDEX_ERRORS",
    "ApiError",
    "not_found",
    "validation_error",
]
