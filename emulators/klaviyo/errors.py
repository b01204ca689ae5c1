"""Klaviyo's JSON:API error shape, shared by every part of the emulator.

Every failure is ``{"errors": [{"id", "status", "code", "title", "detail", "source"}]}``
with the ``application/vnd.api+json`` media type. Klaviyo's API is built on Django REST
Framework, so its codes and titles are DRF's (``invalid``/"Invalid input.",
``not_authenticated``, ``throttled``...); :data:`KLAVIYO_ERRORS` tells the kit so that
gate, admin and router errors look the same as the handlers' own.

``source`` carries a JSON pointer into the request body (``{"pointer": "/data/attributes/
email"}``) or the name of a bad query/header parameter (``{"parameter": "revision"}``);
errors about nothing in particular point at ``/data/``, as Klaviyo's do.
"""

from __future__ import annotations

import uuid
from typing import Any

from emulators.kit import ApiError, ErrorFormat

CODES: dict[int, str] = {
    400: "invalid",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "request_too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "throttled",
    500: "error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}

TITLES: dict[str, str] = {
    "invalid": "Invalid input.",
    "parse_error": "Malformed request.",
    "not_authenticated": "Authentication credentials were not provided.",
    "authentication_failed": "Incorrect authentication credentials.",
    "permission_denied": "You do not have permission to perform this action.",
    "not_found": "Not found.",
    "method_not_allowed": "Method not allowed.",
    "conflict": "Conflict.",
    "duplicate_profile": "Conflict.",
    "request_too_large": "Request entity too large.",
    "unsupported_media_type": "Unsupported media type.",
    "throttled": "Request was throttled.",
    "error": "A server error occurred.",
    "bad_gateway": "Bad gateway.",
    "service_unavailable": "Service unavailable.",
    "gateway_timeout": "Gateway timeout.",
}

MESSAGES: dict[str, str] = {
    "not_authenticated": "Missing or invalid authorization scheme. Please use Klaviyo-API-Key.",
    "authentication_failed": "Incorrect authentication credentials.",
    "not_found": "The requested resource was not found.",
    "method_not_allowed": "Method is not allowed for this endpoint.",
    "throttled": "Request was throttled. Expected available in 1 second.",
    "error": "A server error occurred.",
    "service_unavailable": "The service is temporarily unavailable, please try again later.",
}

DEFAULT_SOURCE: dict[str, str] = {"pointer": "/data/"}


def _body(error: ApiError) -> dict[str, Any]:
    item = {
        "id": str(uuid.uuid4()),
        "status": error.status,
        "code": error.code,
        "title": str(error.details.get("title") or TITLES.get(error.code, "Error.")),
        "detail": error.message,
        "source": dict(error.details.get("source") or DEFAULT_SOURCE),
    }
    meta = error.details.get("meta")
    if meta:
        item["meta"] = meta
    return {"errors": [item]}


KLAVIYO_ERRORS = ErrorFormat(
    render_body=_body, media_type="application/vnd.api+json", codes=CODES, messages=MESSAGES
)
"""How Klaviyo renders errors, for the kit's gate, admin routes and router errors."""


def api_error(
    status: int,
    code: str,
    detail: str,
    *,
    pointer: str | None = None,
    parameter: str | None = None,
    meta: dict[str, Any] | None = None,
) -> ApiError:
    """An error with a ``source`` pointer (body) or parameter (query/header)."""
    source = {"parameter": parameter} if parameter else {"pointer": pointer or "/data/"}
    details: dict[str, Any] = {"source": source}
    if meta:
        details["meta"] = meta
    return ApiError(status, code, detail, details=details)


def invalid(detail: str, pointer: str = "/data/", parameter: str | None = None) -> ApiError:
    """400 ``invalid``: the request names something wrong at ``pointer``."""
    return api_error(400, "invalid", detail, pointer=pointer, parameter=parameter)


def not_found(detail: str) -> ApiError:
    """404 ``not_found`` for the resource in the URL."""
    return api_error(404, "not_found", detail)
