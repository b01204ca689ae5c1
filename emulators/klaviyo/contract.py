"""Check HTTP exchanges against Klaviyo's published OpenAPI documents (``spec/*.json``).

Used by the emulator's tests (every answer it gives) and by connector tests, hooked into an
``httpx`` client, to prove the connector's real traffic matches the contract::

    def check(response: httpx.Response) -> None:
        response.read()
        validate_exchange(response.request, response)

    httpx.Client(event_hooks={"response": [check]})

``/api/lists...`` paths are checked against ``lists.json``, every other path against
``profiles.json``. Both documents describe errors (``4XX``/``5XX``) with the JSON:API
``errors`` schema, so error answers are validated by openapi-core like successes, plus
:data:`ERROR_SCHEMA`, which also requires the ``status`` Klaviyo sends. Paths or methods
the documents do not have are not checked at all.
"""

from __future__ import annotations

from functools import cache
from typing import Any
from urllib.parse import parse_qs

import httpx
import jsonschema
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.templating.paths.exceptions import PathError
from openapi_core.templating.paths.finders import APICallPathFinder
from werkzeug.datastructures import Headers, ImmutableMultiDict

from .specs import document

SERVER = "https://a.klaviyo.com"

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


class ContractViolation(AssertionError):
    """An exchange does not match the spec; the message says where and why."""


@cache
def openapi(name: str) -> OpenAPI:
    """One parsed document (loaded from JSON: YAML loaders refuse its escapes)."""
    return OpenAPI.from_dict(document(name))


def _document_for(path: str) -> str:
    return "lists.json" if path.startswith("/api/lists") else "profiles.json"


class HttpxOpenAPIRequest:
    """An ``httpx.Request`` seen through openapi-core's request protocol, on Klaviyo's host
    (so traffic to an emulator on a local port resolves against the spec)."""

    def __init__(self, request: httpx.Request) -> None:
        self.request = request
        query = parse_qs(request.url.query.decode("ascii"), keep_blank_values=True)
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(query),
            header=Headers(list(request.headers.items())),
            cookie=ImmutableMultiDict(),
        )

    @property
    def host_url(self) -> str:
        return SERVER

    @property
    def path(self) -> str:
        return self.request.url.path

    @property
    def method(self) -> str:
        return self.request.method.lower()

    @property
    def body(self) -> bytes | None:
        try:
            content = self.request.content
        except httpx.RequestNotRead:
            content = self.request.read()
        return content or None

    @property
    def content_type(self) -> str:
        return self.request.headers.get("content-type", "application/vnd.api+json").lower()


class HttpxOpenAPIResponse:
    """An ``httpx.Response`` (already read) seen through openapi-core's protocol."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response

    @property
    def data(self) -> bytes:
        return self.response.content

    @property
    def status_code(self) -> int:
        return self.response.status_code

    @property
    def content_type(self) -> str:
        return self.response.headers.get("content-type", "").lower()

    @property
    def headers(self) -> Headers:
        return Headers(list(self.response.headers.items()))


def in_spec(request: httpx.Request) -> bool:
    """Whether the documents describe this method on this path."""
    spec = openapi(_document_for(request.url.path))
    try:
        APICallPathFinder(spec.spec).find(request.method.lower(), SERVER + request.url.path)
    except PathError:
        return False
    return True


def _describe(request: httpx.Request, response: httpx.Response | None) -> str:
    where = f"{request.method} {request.url.path}"
    return f"{where} -> {response.status_code}" if response is not None else where


def _details(exc: Exception) -> str:
    cause = exc.__cause__ or exc.__context__
    schema_errors = getattr(cause, "schema_errors", None) or getattr(exc, "schema_errors", None)
    if schema_errors:
        joined = "; ".join(
            f"{'/'.join(map(str, e.path)) or '<root>'}: {e.message}" for e in schema_errors
        )
        return f"{exc} [{joined}]"
    return f"{exc}" + (f" ({cause})" if cause else "")


def validate_request(request: httpx.Request) -> None:
    """Raise :class:`ContractViolation` if a documented request breaks the spec."""
    if not in_spec(request):
        return
    try:
        openapi(_document_for(request.url.path)).validate_request(HttpxOpenAPIRequest(request))
    except Exception as exc:
        raise ContractViolation(f"{_describe(request, None)}: {_details(exc)}") from exc


def validate_error_body(request: httpx.Request, response: httpx.Response) -> None:
    """Raise unless ``response`` is a JSON:API error document matching its HTTP status."""
    where = _describe(request, response)
    if not response.headers.get("content-type", "").startswith("application/vnd.api+json"):
        raise ContractViolation(
            f"{where}: error content type {response.headers.get('content-type')}"
        )
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError) as exc:
        raise ContractViolation(f"{where}: error body is not JSON") from exc
    try:
        jsonschema.validate(body, ERROR_SCHEMA)
    except jsonschema.ValidationError as exc:
        raise ContractViolation(f"{where}: error body {body!r}: {exc.message}") from exc
    for error in body["errors"]:
        if error["status"] != response.status_code:
            raise ContractViolation(f"{where}: error status {error['status']} != HTTP status")


def validate_exchange(
    request: httpx.Request, response: httpx.Response, *, check_request: bool = True
) -> None:
    """Validate one request/response pair against the spec; raise on a mismatch.

    * Undocumented path or method: nothing is checked.
    * Error status (>= 400): Klaviyo's error document (the spec's ``4XX``/``5XX`` schema
      and :data:`ERROR_SCHEMA`).
    * Success: the body must match the documented response for that status, and, with
      ``check_request``, the request must match the documented parameters and body.
    """
    if not in_spec(request):
        return
    if response.status_code >= 400:
        validate_error_body(request, response)
    try:
        spec = openapi(_document_for(request.url.path))
        spec.validate_response(HttpxOpenAPIRequest(request), HttpxOpenAPIResponse(response))
    except Exception as exc:
        raise ContractViolation(f"{_describe(request, response)}: {_details(exc)}") from exc
    if check_request and response.status_code < 400:
        validate_request(request)
