"""Check HTTP exchanges against Resend's published OpenAPI spec (``resend.yaml``).

Used two ways: the emulator's own tests validate every answer it gives, and connector
tests can hook :func:`validate_exchange` into an ``httpx`` client to prove their real
traffic matches the contract::

    def check(response: httpx.Response) -> None:
        response.read()
        validate_exchange(response.request, response)

    httpx.Client(event_hooks={"response": [check]})

(With ``httpx.AsyncClient``, ``await response.aread()`` in an async hook, then call it.)

The spec documents success bodies only. Error answers of a documented operation are
checked against Resend's documented error shape instead (``statusCode``/``name``/
``message``). Paths or methods the spec does not have are not checked at all.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import jsonschema
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.templating.paths.exceptions import PathError
from openapi_core.templating.paths.finders import APICallPathFinder
from werkzeug.datastructures import Headers, ImmutableMultiDict

SPEC_PATH = Path(__file__).with_name("resend.yaml")

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["statusCode", "name", "message"],
    "properties": {
        "statusCode": {"type": "integer"},
        "name": {"type": "string", "pattern": "^[a-z][a-z_]*$"},
        "message": {"type": "string", "minLength": 1},
    },
}
"""Resend's error body, from its "Errors" documentation page."""


class ContractViolation(AssertionError):
    """An exchange does not match the spec; the message says where and why."""


def _binary_as_text(value: bytes, **parameters: str) -> str:
    """Decode a binary part so OAS 3.1's ``type: string`` accepts it.

    openapi-core hands ``format: binary`` parts (the CSV ``file`` of an import) to the
    schema validator as ``bytes``, which JSON Schema 2020-12 never calls a string; this
    is a known openapi-core limitation with OAS 3.1 specs. Lossless decoding keeps the
    check meaningful (the part must exist and be a single value) without the false alarm.
    """
    return value.decode("utf-8", errors="surrogateescape")


@lru_cache(maxsize=1)
def openapi() -> OpenAPI:
    """The parsed spec (loading takes about a second, so it is cached)."""
    config = Config(extra_media_type_deserializers={"application/octet-stream": _binary_as_text})
    return OpenAPI.from_file_path(str(SPEC_PATH), config=config)


def _server_url() -> str:
    servers = openapi().spec / "servers"
    first: str = (servers / 0 / "url").read_value()
    return first.rstrip("/")


class HttpxOpenAPIRequest:
    """An ``httpx.Request`` seen through openapi-core's request protocol.

    The host is reported as the spec's server (``https://api.resend.com``) so that
    traffic to an emulator on a random local port still resolves against the spec.
    """

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
        return _server_url()

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
        return self.request.headers.get("content-type", "application/json").lower()


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
    """Whether the spec documents this method on this path."""
    finder = APICallPathFinder(openapi().spec)
    try:
        finder.find(request.method.lower(), _server_url() + request.url.path)
    except PathError:
        return False
    return True


def _describe(request: httpx.Request, response: httpx.Response | None) -> str:
    where = f"{request.method} {request.url.path}"
    return f"{where} -> {response.status_code}" if response is not None else where


def _details(exc: Exception) -> str:
    details = getattr(exc, "details", None)
    if isinstance(details, dict) and details.get("schema_errors"):
        errors = "; ".join(
            f"{'/'.join(map(str, e['path'])) or '<root>'}: {e['message']}"
            for e in details["schema_errors"]
        )
        return f"{exc} [{errors}]"
    return str(exc)


def validate_request(request: httpx.Request) -> None:
    """Raise :class:`ContractViolation` if a documented request breaks the spec."""
    if not in_spec(request):
        return
    try:
        openapi().validate_request(HttpxOpenAPIRequest(request))
    except Exception as exc:
        raise ContractViolation(f"{_describe(request, None)}: {_details(exc)}") from exc


def validate_error_body(request: httpx.Request, response: httpx.Response) -> None:
    """Raise unless ``response`` is a JSON error in Resend's shape for its status."""
    where = _describe(request, response)
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError) as exc:
        raise ContractViolation(f"{where}: error body is not JSON") from exc
    try:
        jsonschema.validate(body, ERROR_SCHEMA)
    except jsonschema.ValidationError as exc:
        raise ContractViolation(f"{where}: error body {body!r}: {exc.message}") from exc
    if body["statusCode"] != response.status_code:
        raise ContractViolation(
            f"{where}: statusCode {body['statusCode']} differs from the HTTP status"
        )


def validate_exchange(
    request: httpx.Request, response: httpx.Response, *, check_request: bool = True
) -> None:
    """Validate one request/response pair against the spec; raise on a mismatch.

    * Undocumented path or method: nothing is checked.
    * Error status (>= 400): the body must be Resend's error shape.
    * Success: the body must match the documented response schema for that status
      (an undocumented success status is a violation), and, with ``check_request``,
      the request must match the documented parameters and body: a server that
      accepted a request the spec forbids points at a bug on one side or the other.
    """
    if not in_spec(request):
        return
    if response.status_code >= 400:
        validate_error_body(request, response)
        return
    try:
        openapi().validate_response(HttpxOpenAPIRequest(request), HttpxOpenAPIResponse(response))
    except Exception as exc:
        raise ContractViolation(f"{_describe(request, response)}: {_details(exc)}") from exc
    if check_request:
        validate_request(request)
