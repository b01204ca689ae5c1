"""Mailchimp's error shape: RFC 7807 ``application/problem+json``.

Every failure of the Marketing API is ``{"type", "title", "status", "detail", "instance"}``;
validation failures (``400 Invalid Resource``) add an ``errors`` array of
``{"field", "message"}``. ``title`` is what clients branch on ("Invalid Resource",
"Resource Not Found", "API Key Invalid"...), so the kit's error ``code`` carries it.
"""

from __future__ import annotations

import uuid
from typing import Any

from emulators.kit import ApiError, ErrorFormat

ERROR_DOCS = "https://mailchimp.com/developer/marketing/docs/errors/"

TITLES: dict[int, str] = {
    400: "Invalid Resource",
    401: "API Key Invalid",
    403: "Forbidden",
    404: "Resource Not Found",
    405: "Method Not Allowed",
    414: "Resource Nesting Too Deep",
    422: "Invalid Method Override",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}

DETAILS: dict[str, str] = {
    "Invalid Resource": (
        "The resource submitted could not be validated. "
        "For field-specific details, see the 'errors' array."
    ),
    "API Key Missing": "Your request did not include an API key.",
    "API Key Invalid": (
        "Your API key may be invalid, or you've attempted to access the wrong datacenter."
    ),
    "Forbidden": "You don't have permission to access this resource.",
    "Resource Not Found": "The requested resource could not be found.",
    "Method Not Allowed": (
        "The requested method and resource are not compatible. "
        "See the Allow header for this resource's available methods."
    ),
    "JSON Parse Error": "We encountered an unspecified JSON parsing error.",
    "Too Many Requests": "You have exceeded the limit of 10 simultaneous connections.",
    "Internal Server Error": "An unexpected internal error has occurred. Please try again later.",
    "Bad Gateway": "The upstream server answered with an invalid response.",
    "Service Unavailable": "The service is temporarily unavailable. Please try again later.",
    "Gateway Timeout": "The upstream server did not answer in time.",
}


def _body(error: ApiError) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": ERROR_DOCS,
        "title": error.code,
        "status": error.status,
        "detail": error.message,
        "instance": str(uuid.uuid4()),
    }
    if error.details.get("errors"):
        body["errors"] = error.details["errors"]
    return body


MAILCHIMP_ERRORS = ErrorFormat(
    render_body=_body, media_type="application/problem+json", codes=TITLES, messages=DETAILS
)
"""How Mailchimp renders errors, for the kit's gate, admin routes and router errors."""


def invalid_resource(
    detail: str | None = None, errors: list[dict[str, str]] | None = None
) -> ApiError:
    """400 ``Invalid Resource``; ``errors`` lists ``{"field", "message"}`` pairs."""
    return ApiError(
        400,
        "Invalid Resource",
        detail or DETAILS["Invalid Resource"],
        details={"errors": errors} if errors else None,
    )


def field_error(field: str, message: str) -> ApiError:
    """400 ``Invalid Resource`` naming one field, as schema validation failures do."""
    return invalid_resource(errors=[{"field": field, "message": message}])


def not_found() -> ApiError:
    """404 ``Resource Not Found`` (Mailchimp never says which resource)."""
    return ApiError(404, "Resource Not Found", DETAILS["Resource Not Found"])


def fake_email(email: str) -> ApiError:
    """Mailchimp's wording for an address it refuses to store."""
    return invalid_resource(f"{email} looks fake or invalid, please enter a real email address.")


__all__ = [
    "DETAILS",
    "ERROR_DOCS",
    "MAILCHIMP_ERRORS",
    "TITLES",
    "ApiError",
    "fake_email",
    "field_error",
    "invalid_resource",
    "not_found",
]
