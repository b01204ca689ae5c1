"""Check HTTP exchanges against Sendex's documented API (seed document 004).

Sendex publishes no OpenAPI file, so the documented shapes are transcribed here as JSON
Schemas, one entry per documented operation: query parameters, request body, success status
and body. Error answers must be ``{"error", "message"}`` and nothing else. Hook it into an
``httpx`` client to prove real traffic matches the documentation::

    def check(response: httpx.Response) -> None:
        response.read()
        validate_exchange(response.request, response)

Bodies are checked strictly (no undocumented request fields, names as strings, ``subscribed``
a boolean) so a client passing here sends nothing the real service could read differently.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import httpx
import jsonschema

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


@dataclass(frozen=True)
class Operation:
    method: str
    path: re.Pattern[str]
    status: int
    response: dict[str, Any]
    request: dict[str, Any] | None = None
    query: dict[str, Any] | None = None


_AUDIENCES = re.compile(r"^/api/v1/audiences$")
_AUDIENCE = re.compile(r"^/api/v1/audiences/[^/]+$")
_CONTACTS = re.compile(r"^/api/v1/audiences/[^/]+/contacts$")
_CONTACT = re.compile(r"^/api/v1/audiences/[^/]+/contacts/[^/]+$")
_NUMBER = {"type": "string", "pattern": "^[0-9]+$"}

OPERATIONS = [
    Operation(
        "GET",
        _AUDIENCES,
        200,
        _object(
            ["data", "total"],
            {
                "data": {"type": "array", "items": AUDIENCE},
                "total": {"type": "integer", "minimum": 0},
            },
        ),
        query=_object(["domain"], {"domain": {"type": "string", "minLength": 1}}),
    ),
    Operation(
        "POST",
        _AUDIENCES,
        201,
        AUDIENCE,
        request=_object(
            ["name", "domain"],
            {"name": {"type": "string", "minLength": 1}, "domain": {"type": "string"}},
        ),
    ),
    Operation("GET", _AUDIENCE, 200, AUDIENCE),
    Operation("DELETE", _AUDIENCE, 200, DELETED),
    Operation(
        "GET",
        _CONTACTS,
        200,
        _object(
            ["data", "total", "limit", "offset"],
            {
                "data": {"type": "array", "items": CONTACT},
                "total": {"type": "integer", "minimum": 0},
                "limit": {"type": "integer", "minimum": 1, "maximum": 200},
                "offset": {"type": "integer", "minimum": 0},
            },
        ),
        query=_object([], {"limit": _NUMBER, "offset": _NUMBER}),
    ),
    Operation(
        "POST",
        _CONTACTS,
        201,
        CONTACT,
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
    Operation("GET", _CONTACT, 200, CONTACT),
    Operation(
        "PATCH",
        _CONTACT,
        200,
        CONTACT,
        request=_object(
            [], {"first_name": TEXT, "last_name": TEXT, "subscribed": {"type": "boolean"}}
        ),
    ),
    Operation("DELETE", _CONTACT, 200, DELETED),
]


class ContractViolation(AssertionError):
    """An exchange does not match the documentation; the message says where and why."""


def operation_for(request: httpx.Request) -> Operation | None:
    """The documented operation for this method and path, if any."""
    path = request.url.path
    for operation in OPERATIONS:
        if operation.method == request.method and operation.path.match(path):
            return operation
    return None


def _check(value: Any, schema: dict[str, Any], where: str, what: str) -> None:
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError as exc:
        at = "/".join(map(str, exc.absolute_path)) or "<root>"
        raise ContractViolation(f"{where}: {what} {at}: {exc.message}") from None


def _json(content: bytes, where: str, what: str) -> Any:
    try:
        return json.loads(content)
    except (ValueError, UnicodeDecodeError):
        raise ContractViolation(f"{where}: {what} is not JSON") from None


def validate_request(request: httpx.Request) -> None:
    """Raise :class:`ContractViolation` unless a documented request matches the docs."""
    operation = operation_for(request)
    if operation is None:
        return
    where = f"{request.method} {request.url.path}"
    auth = request.headers.get("authorization", "")
    if not auth.startswith("Bearer ") or not auth[7:].strip():
        raise ContractViolation(f"{where}: no `Authorization: Bearer <key>` header")
    query = dict(parse_qsl(request.url.query.decode("ascii"), keep_blank_values=True))
    _check(query, operation.query or _object([], {}), where, "query")
    try:
        content = request.content
    except httpx.RequestNotRead:
        content = request.read()
    if operation.request is None:
        if content:
            raise ContractViolation(f"{where}: this operation takes no body")
        return
    if "application/json" not in request.headers.get("content-type", ""):
        raise ContractViolation(f"{where}: the body must be sent as application/json")
    _check(_json(content, where, "request body"), operation.request, where, "request body")


def validate_exchange(request: httpx.Request, response: httpx.Response) -> None:
    """Validate one request/response pair; undocumented paths are not checked.

    Errors must be Sendex's error shape; successes must have the documented status and
    body, and then the request must match the documented parameters and body too (a server
    that accepted an undocumented request points at a bug on one side).
    """
    operation = operation_for(request)
    if operation is None:
        return
    where = f"{request.method} {request.url.path} -> {response.status_code}"
    body = _json(response.content, where, "response body")
    if response.status_code >= 400:
        _check(body, ERROR, where, "error body")
        return
    if response.status_code != operation.status:
        raise ContractViolation(f"{where}: documented status is {operation.status}")
    _check(body, operation.response, where, "response body")
    validate_request(request)
