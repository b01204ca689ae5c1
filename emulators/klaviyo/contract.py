"""Check HTTP exchanges against Klaviyo's published OpenAPI documents (``spec/*.json``).

Used by the emulator's tests (every answer it gives) and by connector tests, hooked into an
``httpx`` client, to prove the connector's real traffic matches the contract (see
:mod:`emulators.kit.contract`).

``/api/lists...`` paths are checked against ``lists.json``, every other path against
``profiles.json``. Both documents describe errors (``4XX``/``5XX``) with the JSON:API
``errors`` schema, so error answers are validated by openapi-core like successes, plus
:data:`ERROR_SCHEMA`, which also requires the ``status`` Klaviyo sends. Paths or methods
the documents do not have are not checked at all.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from openapi_core import OpenAPI

from emulators.kit.contract import ContractViolation as ContractViolation
from emulators.kit.contract import ErrorShape, OpenApiContract

from .specs import document

MEDIA_TYPE = "application/vnd.api+json"

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["errors"],
    "properties": {
        "errors": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["id", "status", "code", "title", "detail", "source"],
                "properties": {
                    "id": {"type": "string", "minLength": 1},
                    "status": {"type": "integer"},
                    "code": {"type": "string", "pattern": "^[a-z][a-z_]*$"},
                    "title": {"type": "string", "minLength": 1},
                    "detail": {"type": "string", "minLength": 1},
                    "source": {
                        "type": "object",
                        "minProperties": 1,
                        "properties": {
                            "pointer": {"type": "string", "pattern": "^/"},
                            "parameter": {"type": "string"},
                        },
                    },
                },
            },
        }
    },
}
"""Klaviyo's error body, as its "Rate limits, status codes, and errors" guide shows it."""


@cache
def openapi(name: str) -> OpenAPI:
    """One parsed document (loaded from JSON: YAML loaders refuse its escapes)."""
    return OpenAPI.from_dict(document(name))


def document_for(path: str) -> OpenAPI:
    """The document describing ``path``."""
    return openapi("lists.json" if path.startswith("/api/lists") else "profiles.json")


ERRORS = ErrorShape(
    ERROR_SCHEMA,
    statuses=lambda body: [error["status"] for error in body["errors"]],
    media_type=MEDIA_TYPE,
)
CONTRACT = OpenApiContract(document_for, errors=ERRORS, errors_in_spec=True, media_type=MEDIA_TYPE)
in_spec, validate_request, validate_exchange = (
    CONTRACT.in_spec,
    CONTRACT.validate_request,
    CONTRACT.validate_exchange,
)
validate_error_body = ERRORS.check
