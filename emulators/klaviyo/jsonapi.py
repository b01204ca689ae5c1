"""JSON:API plumbing every handler shares: reading bodies, answering, paging, filtering.

Decisions where Klaviyo's docs are silent:

* A body must be sent as ``application/vnd.api+json`` (the only media type the spec lists);
  anything else is a 415. Unparsable JSON is a 400 ``parse_error``.
* Bodies are validated against the operation's request schema from the bundled spec before
  the handler looks at them; the first violation is a 400 ``invalid`` whose ``source.pointer``
  is the JSON pointer of the offending member.
* Page cursors are opaque strings (a base64 offset); ``links.next`` is only present when
  another page exists. ``filter`` supports ``equals(field,'v')`` and ``any(field,['a','b'])``
  on the fields each endpoint documents, with at most 100 values in ``any``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Sequence
from functools import cache
from typing import Any
from urllib.parse import urlencode

from openapi_schema_validator import OAS30Validator
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from emulators.kit import ApiError

from .errors import api_error, invalid
from .specs import request_schema

MEDIA_TYPE = "application/vnd.api+json"
MAX_BODY_BYTES = 5 * 1024 * 1024
MAX_FILTER_VALUES = 100


def answer(body: Any, status: int = 200) -> JSONResponse:
    """A JSON:API document."""
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE)


def accepted() -> Response:
    """202 with no body (what the subscription job endpoints answer)."""
    return Response(status_code=202)


def no_content() -> Response:
    """204, the answer of relationship writes."""
    return Response(status_code=204)


@cache
def _validator(method: str, template: str) -> OAS30Validator | None:
    schema = request_schema(method, template)
    return OAS30Validator(schema) if schema is not None else None


def _pointer(path: Sequence[Any]) -> str:
    return "/" + "/".join(str(part).replace("~", "~0").replace("/", "~1") for part in path)


async def read_body(request: Request, template: str) -> dict[str, Any]:
    """The request's JSON:API document, checked against the spec (400/413/415 otherwise)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != MEDIA_TYPE:
        raise api_error(
            415,
            "unsupported_media_type",
            f'Unsupported media type "{media}" in request. Use "{MEDIA_TYPE}".',
            parameter="Content-Type",
        )
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise api_error(413, "request_too_large", "The maximum allowed payload size is 5MB.")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise api_error(400, "parse_error", f"JSON parse error - {exc}") from None
    validator = _validator(request.method, template)
    if validator is not None:
        error = next(iter(sorted(validator.iter_errors(body), key=lambda e: list(e.path))), None)
        if error is not None:
            raise invalid(error.message, pointer=_pointer(list(error.absolute_path)))
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.")
    return body


def base_url(request: Request) -> str:
    """Scheme and host the client used, for ``links``."""
    return str(request.base_url).rstrip("/")


def self_link(request: Request, path: str) -> str:
    """Absolute link to ``path`` on this server."""
    return base_url(request) + path


def page_size(request: Request, default: int = 20, maximum: int = 100) -> int:
    """``page[size]``, checked against the documented bounds."""
    raw = request.query_params.get("page[size]")
    if raw is None:
        return default
    try:
        size = int(raw)
    except ValueError:
        raise invalid("page[size] must be an integer.", parameter="page[size]") from None
    if not 1 <= size <= maximum:
        raise invalid(f"page[size] must be between 1 and {maximum}.", parameter="page[size]")
    return size


def page_offset(request: Request) -> int:
    """The offset encoded in ``page[cursor]`` (0 without one)."""
    cursor = request.query_params.get("page[cursor]")
    if not cursor:
        return 0
    try:
        offset = int(base64.urlsafe_b64decode(cursor.encode()).decode())
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise invalid("Invalid page cursor.", parameter="page[cursor]") from None
    if offset < 0:
        raise invalid("Invalid page cursor.", parameter="page[cursor]")
    return offset


def page_links(request: Request, offset: int, size: int, total: int) -> dict[str, str]:
    """``self`` plus ``next``/``prev`` when those pages exist."""
    links = {"self": str(request.url)}
    params = dict(request.query_params)
    path = base_url(request) + request.url.path

    def at(position: int) -> str:
        cursor = base64.urlsafe_b64encode(str(position).encode()).decode()
        return f"{path}?{urlencode({**params, 'page[cursor]': cursor})}"

    if offset + size < total:
        links["next"] = at(offset + size)
    if offset > 0:
        links["prev"] = at(max(0, offset - size))
    return links


_FILTER = re.compile(r"^\s*(equals|any)\(\s*([a-z_]+)\s*,\s*(.*)\)\s*$", re.S)
_QUOTED = re.compile(r"""'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)\"""")


def parse_filter(request: Request, fields: Sequence[str]) -> tuple[str, list[str]] | None:
    """``filter`` as ``(field, values)``; 400 for a syntax or field Klaviyo would refuse."""
    raw = request.query_params.get("filter")
    if raw is None:
        return None
    match = _FILTER.match(raw)
    if match is None:
        raise invalid(f"Invalid filter provided: {raw!r}.", parameter="filter")
    operator, field, value = match.groups()
    if field not in fields:
        raise invalid(f"'{field}' is not a valid field for this filter.", parameter="filter")
    value = value.strip()
    is_list = value.startswith("[") and value.endswith("]")
    if operator == "any" and not is_list:
        raise invalid(f"Invalid filter value for {operator}: {value}.", parameter="filter")
    inner = value[1:-1] if is_list else value
    values = [a if a else b for a, b in _QUOTED.findall(inner)]
    if not values or len(values) > MAX_FILTER_VALUES:
        raise invalid(f"A filter takes 1 to {MAX_FILTER_VALUES} values.", parameter="filter")
    return field, values


def check_include(request: Request, allowed: Sequence[str] = ()) -> None:
    """Refuse ``include`` values the emulator does not serve (instead of ignoring them)."""
    raw = request.query_params.get("include")
    if raw is None:
        return
    for item in raw.split(","):
        if item not in allowed:
            raise invalid(f"'{item}' is not a valid include.", parameter="include")


__all__ = ["MEDIA_TYPE", "ApiError", "answer", "read_body"]
