"""Check HTTP exchanges against Mailchimp's documented shapes (:mod:`.schemas`).

Mailchimp publishes its reference as documentation, not a spec file we ship, so the
operations the emulator serves are transcribed into JSON schemas. Used two ways, like the
Resend contract: the emulator tests validate every answer, and connector tests hook
:func:`validate_exchange` into their ``httpx`` client to prove their real traffic matches::

    def check(response: httpx.Response) -> None:
        response.read()
        validate_exchange(response.request, response)

Rules: an error answer (>= 400) must be ``application/problem+json`` with ``type``,
``title``, ``status`` (equal to the HTTP status), ``detail`` and ``instance``; a success must
have the documented status and body; a documented request body must match its schema
(undocumented properties included). Undocumented paths are not checked.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import httpx
import jsonschema

from . import schemas as s

HASH = r"[0-9a-fA-F]{32}"
LIST = r"[^/]+"


@dataclass(frozen=True)
class Operation:
    """One documented method + path: its request body schema and answers by status."""

    method: str
    path: re.Pattern[str]
    request: s.Schema | None
    responses: dict[int, s.Schema | None]


def _op(
    method: str, path: str, request: s.Schema | None, responses: dict[int, s.Schema | None]
) -> Operation:
    return Operation(method, re.compile(f"^/3\\.0{path}$"), request, responses)


MEMBER = f"/lists/{LIST}/members/{HASH}"
OPERATIONS = [
    _op("GET", "/ping", None, {200: s.PING_OUT}),
    _op("GET", "/lists", None, {200: s.page("lists", s.LIST_OUT)}),
    _op("POST", "/lists", s.LIST_IN, {200: s.LIST_OUT}),
    _op("GET", f"/lists/{LIST}", None, {200: s.LIST_OUT}),
    _op("POST", f"/lists/{LIST}", s.BATCH, {200: s.BATCH_OUT}),
    _op(
        "GET",
        f"/lists/{LIST}/merge-fields",
        None,
        {200: s.page("merge_fields", s.MERGE_FIELD_OUT, ["list_id"])},
    ),
    _op("POST", f"/lists/{LIST}/merge-fields", s.MERGE_FIELD_IN, {200: s.MERGE_FIELD_OUT}),
    _op("GET", f"/lists/{LIST}/merge-fields/[0-9]+", None, {200: s.MERGE_FIELD_OUT}),
    _op("GET", f"/lists/{LIST}/members", None, {200: s.page("members", s.MEMBER_OUT, ["list_id"])}),
    _op("POST", f"/lists/{LIST}/members", s.POST_MEMBER, {200: s.MEMBER_OUT}),
    _op("GET", MEMBER, None, {200: s.MEMBER_OUT}),
    _op("PUT", MEMBER, s.PUT_MEMBER, {200: s.MEMBER_OUT}),
    _op("PATCH", MEMBER, s.PATCH_MEMBER, {200: s.MEMBER_OUT}),
    _op("DELETE", MEMBER, None, {204: s.EMPTY}),
    _op("POST", MEMBER + "/actions/delete-permanent", None, {204: s.EMPTY}),
    _op("GET", MEMBER + "/tags", None, {200: s.TAGS_OUT}),
    _op("POST", MEMBER + "/tags", s.TAGS, {204: s.EMPTY}),
]


class ContractViolation(AssertionError):
    """An exchange does not match the documented shapes; the message says where and why."""


def operation_for(request: httpx.Request) -> Operation | None:
    """The documented operation ``request`` calls, if any."""
    for operation in OPERATIONS:
        if operation.method == request.method and operation.path.match(request.url.path):
            return operation
    return None


def in_spec(request: httpx.Request) -> bool:
    """Whether the method and path are documented."""
    return operation_for(request) is not None


def _validate(value: Any, schema: s.Schema, where: str, what: str) -> None:
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError as exc:
        path = "/".join(map(str, exc.absolute_path)) or "<root>"
        raise ContractViolation(f"{where}: {what} {path}: {exc.message}") from None


def _json(data: bytes, where: str, what: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise ContractViolation(f"{where}: {what} is not JSON") from None


def validate_request(request: httpx.Request) -> None:
    """Raise :class:`ContractViolation` if a documented request body breaks its schema."""
    operation = operation_for(request)
    if operation is None:
        return
    where = f"{request.method} {request.url.path}"
    try:
        content = request.content
    except httpx.RequestNotRead:
        content = request.read()
    if operation.request is None:
        return
    if "json" not in request.headers.get("content-type", ""):
        raise ContractViolation(f"{where}: request body must be JSON")
    _validate(_json(content, where, "request body"), operation.request, where, "request")


def validate_error(request: httpx.Request, response: httpx.Response) -> None:
    """Raise unless ``response`` is Mailchimp's problem document for its status."""
    where = f"{request.method} {request.url.path} -> {response.status_code}"
    if response.headers.get("content-type", "").split(";")[0] != "application/problem+json":
        raise ContractViolation(f"{where}: errors are application/problem+json")
    body = _json(response.content, where, "error body")
    _validate(body, s.PROBLEM, where, "error body")
    if body["status"] != response.status_code:
        raise ContractViolation(f"{where}: status {body['status']} differs from the HTTP status")


def validate_exchange(
    request: httpx.Request, response: httpx.Response, *, check_request: bool = True
) -> None:
    """Validate one request/response pair; raise :class:`ContractViolation` on a mismatch.

    Error answers are checked for the problem shape whatever the path (an emulator must
    never leak another shape); successes of documented operations for their status and body,
    and, with ``check_request``, their request body.
    """
    if response.status_code >= 400:
        validate_error(request, response)
        return
    operation = operation_for(request)
    if operation is None:
        return
    where = f"{request.method} {request.url.path} -> {response.status_code}"
    if response.status_code not in operation.responses:
        raise ContractViolation(f"{where}: undocumented status")
    schema = operation.responses[response.status_code]
    if schema is None:
        if response.content:
            raise ContractViolation(f"{where}: a {response.status_code} has no body")
    else:
        _validate(_json(response.content, where, "body"), schema, where, "answer")
    if check_request:
        validate_request(request)
