"""Check HTTP exchanges against a service's documented API, for tests.

Two kinds of contract, one way to use them: each service module exposes
``validate_exchange(request, response)`` (and ``validate_request``, ``in_spec``...), hooked
into an ``httpx`` client so every answer a test gets, and every request a connector sends,
is also a contract check::

    def check(response: httpx.Response) -> None:
        response.read()
        validate_exchange(response.request, response)

    httpx.Client(event_hooks={"response": [check]})

(With ``httpx.AsyncClient``, ``await response.aread()`` in an async hook, then call it.)

* :class:`OpenApiContract`: the service publishes an OpenAPI document (Resend, Klaviyo);
  openapi-core validates requests and answers, plus the service's error body schema.
* :class:`SchemaContract`: the service only documents its API in prose (Mailchimp, Sendex);
  the documented operations are transcribed as JSON schemas (:class:`Operation`).

Paths or methods the documentation does not have are not checked at all.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import parse_qs, parse_qsl

import httpx
import jsonschema
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.templating.paths.exceptions import PathError
from openapi_core.templating.paths.finders import APICallPathFinder
from werkzeug.datastructures import Headers, ImmutableMultiDict

Schema = dict[str, Any]
"""A JSON schema."""


class ContractViolation(AssertionError):
    """An exchange does not match the documentation; the message says where and why."""


def describe(request: httpx.Request, response: httpx.Response | None = None) -> str:
    """``"POST /contacts -> 422"``: where a violation happened."""
    where = f"{request.method} {request.url.path}"
    return f"{where} -> {response.status_code}" if response is not None else where


def request_content(request: httpx.Request) -> bytes:
    """The request body, reading a streamed one first."""
    try:
        return request.content
    except httpx.RequestNotRead:
        return request.read()


def parse_json(data: bytes, where: str, what: str) -> Any:
    """``data`` parsed as JSON; a :class:`ContractViolation` naming ``what`` otherwise."""
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise ContractViolation(f"{where}: {what} is not JSON") from None


def check_schema(value: Any, schema: Schema, where: str, what: str) -> None:
    """Raise a :class:`ContractViolation` naming the first place ``value`` breaks ``schema``."""
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError as exc:
        at = "/".join(map(str, exc.absolute_path)) or "<root>"
        raise ContractViolation(f"{where}: {what} {at}: {exc.message}") from None


@dataclass(frozen=True)
class ErrorShape:
    """How a service's error answers look: a body matching ``schema``, sent as
    ``media_type`` (when given), whose ``statuses(body)`` (when given) all equal the
    answer's HTTP status."""

    schema: Schema
    statuses: Callable[[Any], Iterable[int]] | None = None
    media_type: str | None = None

    def check(self, request: httpx.Request, response: httpx.Response) -> None:
        """Raise unless ``response`` is the service's error body for its status."""
        where = describe(request, response)
        content_type = response.headers.get("content-type", "")
        if self.media_type is not None and content_type.split(";")[0].strip() != self.media_type:
            raise ContractViolation(
                f"{where}: error content type {content_type!r}, not {self.media_type}"
            )
        body = parse_json(response.content, where, "error body")
        check_schema(body, self.schema, where, "error body")
        for status in self.statuses(body) if self.statuses is not None else ():
            if status != response.status_code:
                raise ContractViolation(
                    f"{where}: error body {body!r} says status {status}, not the HTTP status"
                )


# --- OpenAPI ----------------------------------------------------------------------------


@cache
def server_url(spec: OpenAPI) -> str:
    """The document's first server, without a trailing slash."""
    first: str = (spec.spec / "servers" / 0 / "url").read_value()
    return first.rstrip("/")


class HttpxOpenAPIRequest:
    """An ``httpx.Request`` seen through openapi-core's request protocol, on the spec's
    server (so traffic to an emulator on a local port resolves against the spec)."""

    def __init__(self, request: httpx.Request, server: str, media_type: str) -> None:
        self.request = request
        self.server = server
        self.media_type = media_type
        query = parse_qs(request.url.query.decode("ascii"), keep_blank_values=True)
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(query),
            header=Headers(list(request.headers.items())),
            cookie=ImmutableMultiDict(),
        )

    @property
    def host_url(self) -> str:
        return self.server

    @property
    def path(self) -> str:
        return self.request.url.path

    @property
    def method(self) -> str:
        return self.request.method.lower()

    @property
    def body(self) -> bytes | None:
        return request_content(self.request) or None

    @property
    def content_type(self) -> str:
        return self.request.headers.get("content-type", self.media_type).lower()


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


def _details(exc: Exception) -> str:
    """openapi-core's error plus the schema errors behind it, which it keeps in the cause."""
    cause = exc.__cause__ or exc.__context__
    schema_errors = getattr(cause, "schema_errors", None) or getattr(exc, "schema_errors", None)
    if schema_errors:
        joined = "; ".join(
            f"{'/'.join(map(str, e.path)) or '<root>'}: {e.message}" for e in schema_errors
        )
        return f"{exc} [{joined}]"
    return f"{exc}" + (f" ({cause})" if cause else "")


class OpenApiContract:
    """Exchanges checked against a published OpenAPI document.

    ``document_for(path)`` returns the parsed document describing ``path`` (cache it:
    parsing takes about a second). Error answers (>= 400) must have the service's
    ``errors`` shape; when the document also describes error bodies (``4XX``/``5XX``,
    ``errors_in_spec``) openapi-core checks them too. ``media_type`` is what a request
    without a ``Content-Type`` is read as.
    """

    def __init__(
        self,
        document_for: Callable[[str], OpenAPI],
        *,
        errors: ErrorShape,
        errors_in_spec: bool = False,
        media_type: str = "application/json",
    ) -> None:
        self.document_for = document_for
        self.errors = errors
        self.errors_in_spec = errors_in_spec
        self.media_type = media_type

    def _request(self, request: httpx.Request) -> HttpxOpenAPIRequest:
        server = server_url(self.document_for(request.url.path))
        return HttpxOpenAPIRequest(request, server, self.media_type)

    def in_spec(self, request: httpx.Request) -> bool:
        """Whether the document describes this method on this path."""
        spec = self.document_for(request.url.path)
        try:
            APICallPathFinder(spec.spec).find(
                request.method.lower(), server_url(spec) + request.url.path
            )
        except PathError:
            return False
        return True

    def validate_request(self, request: httpx.Request) -> None:
        """Raise :class:`ContractViolation` if a documented request breaks the spec."""
        if not self.in_spec(request):
            return
        try:
            self.document_for(request.url.path).validate_request(self._request(request))
        except Exception as exc:
            raise ContractViolation(f"{describe(request)}: {_details(exc)}") from exc

    def validate_exchange(
        self, request: httpx.Request, response: httpx.Response, *, check_request: bool = True
    ) -> None:
        """Validate one request/response pair against the spec; raise on a mismatch.

        * Undocumented path or method: nothing is checked.
        * Error status (>= 400): the service's error body (and the spec's, if it has one).
        * Success: the body must match the documented response for that status (an
          undocumented success status is a violation), and, with ``check_request``, the
          request must match the documented parameters and body: a server that accepted a
          request the spec forbids points at a bug on one side or the other.
        """
        if not self.in_spec(request):
            return
        if response.status_code >= 400:
            self.errors.check(request, response)
            if not self.errors_in_spec:
                return
        try:
            self.document_for(request.url.path).validate_response(
                self._request(request), HttpxOpenAPIResponse(response)
            )
        except Exception as exc:
            raise ContractViolation(f"{describe(request, response)}: {_details(exc)}") from exc
        if check_request and response.status_code < 400:
            self.validate_request(request)


# --- JSON schemas transcribed from prose documentation ----------------------------------


@dataclass(frozen=True)
class Operation:
    """One documented method + path (a regular expression of the whole path).

    ``responses`` maps each documented success status to its body schema (``None``: no
    body); ``request`` is the body schema, ``query`` the query parameters' (an object of
    strings), ``None`` when undocumented.
    """

    method: str
    path: re.Pattern[str]
    responses: dict[int, Schema | None]
    request: Schema | None = None
    query: Schema | None = None


def operation(
    method: str,
    path: str,
    responses: dict[int, Schema | None],
    request: Schema | None = None,
    query: Schema | None = None,
) -> Operation:
    """An :class:`Operation` for ``path``, a regular expression matched in full."""
    return Operation(method, re.compile(f"^{path}$"), responses, request, query)


@dataclass(frozen=True)
class SchemaContract:
    """Exchanges checked against documented operations.

    * Errors (>= 400) must have the service's ``errors`` shape: on documented operations,
      or on every path with ``all_errors`` (an emulator must never leak another shape).
    * Successes must have a documented status and body; then, with ``check_request``, the
      request must match: its body schema, and with ``strict`` no query parameters or body
      the operation does not document. ``check_headers(request, where)`` adds checks of
      the service's own (authentication, say).
    """

    operations: Sequence[Operation]
    errors: ErrorShape
    all_errors: bool = False
    strict: bool = False
    check_headers: Callable[[httpx.Request, str], None] | None = None

    def operation_for(self, request: httpx.Request) -> Operation | None:
        """The documented operation for this method and path, if any."""
        for op in self.operations:
            if op.method == request.method and op.path.match(request.url.path):
                return op
        return None

    def in_spec(self, request: httpx.Request) -> bool:
        """Whether the method and path are documented."""
        return self.operation_for(request) is not None

    def validate_request(self, request: httpx.Request) -> None:
        """Raise :class:`ContractViolation` unless a documented request matches the docs."""
        op = self.operation_for(request)
        if op is None:
            return
        where = describe(request)
        if self.check_headers is not None:
            self.check_headers(request, where)
        query = op.query
        if query is None and self.strict:
            query = {"type": "object", "additionalProperties": False}
        if query is not None:
            params = dict(parse_qsl(request.url.query.decode("ascii"), keep_blank_values=True))
            check_schema(params, query, where, "query")
        content = request_content(request)
        if op.request is None:
            if content and self.strict:
                raise ContractViolation(f"{where}: this operation takes no body")
            return
        if "application/json" not in request.headers.get("content-type", ""):
            raise ContractViolation(f"{where}: the body must be sent as application/json")
        check_schema(parse_json(content, where, "request body"), op.request, where, "request body")

    def validate_exchange(
        self, request: httpx.Request, response: httpx.Response, *, check_request: bool = True
    ) -> None:
        """Validate one request/response pair; raise :class:`ContractViolation` on a mismatch."""
        op = self.operation_for(request)
        if response.status_code >= 400 and (op is not None or self.all_errors):
            self.errors.check(request, response)
            return
        if op is None:
            return
        where = describe(request, response)
        if response.status_code not in op.responses:
            documented = ", ".join(map(str, op.responses))
            raise ContractViolation(
                f"{where}: undocumented status; documented status is {documented}"
            )
        schema = op.responses[response.status_code]
        if schema is None:
            if response.content:
                raise ContractViolation(f"{where}: a {response.status_code} has no body")
        else:
            check_schema(
                parse_json(response.content, where, "body"), schema, where, "response body"
            )
        if check_request:
            self.validate_request(request)
