"""Request checks, as strict as the documented field types.

A client that passes here sends what the documentation asks for: names are strings
(never null), ``subscribed`` is a boolean, ``limit`` is 1-200.
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.datastructures import QueryParams
from starlette.requests import Request

from .errors import ApiError, validation_error

_EMAIL = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)
_DOMAIN = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
MAX_NAME = 255


async def read_object(request: Request) -> dict[str, Any]:
    """The JSON object body; 400 when it is not JSON, 422 when it is not an object."""
    raw = await request.body()
    try:
        body = json.loads(raw) if raw.strip() else None
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "bad_request", "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise validation_error("The request body must be a JSON object.")
    return body


def email(body: dict[str, Any]) -> str:
    """The required ``email``, trimmed and lower-cased."""
    value = body.get("email")
    if value is None:
        raise validation_error("`email` is required.")
    if not isinstance(value, str) or len(value.strip()) > 254 or not _EMAIL.match(value.strip()):
        raise validation_error(f"`email` must be a valid email address, got {value!r}.")
    return value.strip().lower()


def domain(value: Any, where: str = "`domain`") -> str:
    """A well-formed domain name, lower-cased."""
    if value is None or value == "":
        raise validation_error(f"{where} is required.")
    if not isinstance(value, str) or not _DOMAIN.match(value.strip().lower()):
        raise validation_error(f"{where} must be a domain name such as example.com.")
    return value.strip().lower()


def name(body: dict[str, Any], field: str, *, required: bool = False) -> str | None:
    """A string field of at most 255 characters; ``None`` when absent and optional."""
    if field not in body:
        if required:
            raise validation_error(f"`{field}` is required.")
        return None
    value = body[field]
    if not isinstance(value, str):
        raise validation_error(f"`{field}` must be a string.")
    if required and not value.strip():
        raise validation_error(f"`{field}` must not be empty.")
    if len(value) > MAX_NAME:
        raise validation_error(f"`{field}` must be at most {MAX_NAME} characters.")
    return value


def boolean(body: dict[str, Any], field: str) -> bool | None:
    """An optional boolean field."""
    if field not in body:
        return None
    value = body[field]
    if not isinstance(value, bool):
        raise validation_error(f"`{field}` must be a boolean.")
    return value


def integer(params: QueryParams, field: str, default: int, low: int, high: int | None) -> int:
    """An integer query parameter within ``[low, high]``."""
    raw = params.get(field)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if value < low or (high is not None and value > high):
        span = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise validation_error(f"`{field}` must be an integer {span}.")
    return value
