"""Check HTTP exchanges against Sendex's documented API (seed document 004).

Sendex publishes no OpenAPI file, so the documented shapes are transcribed here as JSON
Schemas, one entry per documented operation: query parameters, request body, success status
and body. Error answers must be ``{"error", "message"}`` and nothing else. Hook it into an
``httpx`` client to prove real traffic matches the documentation (see
:mod:`emulators.kit.contract`).

Bodies are checked strictly (no undocumented request fields, names as strings, ``subscribed``
a boolean) so a client passing here sends nothing the real service could read differently.
"""

from __future__ import annotations

from typing import Any

import httpx

from emulators.kit.contract import ContractViolation, ErrorShape, SchemaContract, operation

ID = {"type": "string", "pattern": "^[0-9a-f]{24}$"}
TIME = {"type": "string", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z$"}
TEXT = {"type": "string", "maxLength": 255}


def _object(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": required,
        "properties": properties,
        "additionalProperties": False,
    }


AUDIENCE = _object(
    ["id", "name", "domain", "contact_count", "created_at"],
    {
        "id": ID,
        "name": {"type": "string"},
        "domain": {"type": "string"},
        "contact_count": {"type": "integer", "minimum": 0},
        "created_at": TIME,
    },
)
CONTACT = _object(
    ["id", "email", "first_name", "last_name", "subscribed", "created_at"],
    {
        "id": ID,
        "email": {"type": "string"},
        # Documented as strings; the emulator answers null for a name never set.
        "first_name": {"type": ["string", "null"]},
        "last_name": {"type": ["string", "null"]},
        "subscribed": {"type": "boolean"},
        "created_at": TIME,
    },
)
DELETED = _object(["id"], {"id": ID})
ERROR = _object(["error", "message"], {"error": {"type": "string"}, "message": {"type": "string"}})


_AUDIENCES = "/api/v1/audiences"
_AUDIENCE = "/api/v1/audiences/[^/]+"
_CONTACTS = "/api/v1/audiences/[^/]+/contacts"
_CONTACT = "/api/v1/audiences/[^/]+/contacts/[^/]+"
_NUMBER = {"type": "string", "pattern": "^[0-9]+$"}

OPERATIONS = [
    operation(
        "GET",
        _AUDIENCES,
        {
            200: _object(
                ["data", "total"],
                {
                    "data": {"type": "array", "items": AUDIENCE},
                    "total": {"type": "integer", "minimum": 0},
                },
            )
        },
        query=_object(["domain"], {"domain": {"type": "string", "minLength": 1}}),
    ),
    operation(
        "POST",
        _AUDIENCES,
        {201: AUDIENCE},
        request=_object(
            ["name", "domain"],
            {"name": {"type": "string", "minLength": 1}, "domain": {"type": "string"}},
        ),
    ),
    operation("GET", _AUDIENCE, {200: AUDIENCE}),
    operation("DELETE", _AUDIENCE, {200: DELETED}),
    operation(
        "GET",
        _CONTACTS,
        {
            200: _object(
                ["data", "total", "limit", "offset"],
                {
                    "data": {"type": "array", "items": CONTACT},
                    "total": {"type": "integer", "minimum": 0},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 200},
                    "offset": {"type": "integer", "minimum": 0},
                },
            )
        },
        query=_object([], {"limit": _NUMBER, "offset": _NUMBER}),
    ),
    operation(
        "POST",
        _CONTACTS,
        {201: CONTACT},
        request=_object(
            ["email"],
            {
                "email": {"type": "string", "minLength": 3},
                "first_name": TEXT,
                "last_name": TEXT,
                "subscribed": {"type": "boolean"},
            },
        ),
    ),
    operation("GET", _CONTACT, {200: CONTACT}),
    operation(
        "PATCH",
        _CONTACT,
        {200: CONTACT},
        request=_object(
            [], {"first_name": TEXT, "last_name": TEXT, "subscribed": {"type": "boolean"}}
        ),
    ),
    operation("DELETE", _CONTACT, {200: DELETED}),
]


def _check_bearer(request: httpx.Request, where: str) -> None:
    auth = request.headers.get("authorization", "")
    if not auth.startswith("Bearer ") or not auth[7:].strip():
        raise ContractViolation(f"{where}: no `Authorization: Bearer <key>` header")


CONTRACT = SchemaContract(
    OPERATIONS, errors=ErrorShape(ERROR), strict=True, check_headers=_check_bearer
)
operation_for, in_spec, validate_request, validate_exchange = (
    CONTRACT.operation_for,
    CONTRACT.in_spec,
    CONTRACT.validate_request,
    CONTRACT.validate_exchange,
)
