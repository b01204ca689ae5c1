"""Request parsing in Mailchimp's words: JSON bodies, typed fields, emails, pagination.

Mailchimp validates bodies against its JSON schemas and reports a mismatch as
``400 Invalid Resource`` with ``errors: [{"field", "message"}]`` and messages such as
"Schema describes string, integer found instead"; the helpers here reproduce that.
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.requests import Request

from .errors import DETAILS, ApiError, fake_email, field_error

EMAIL = re.compile(
    r"^(?!\.)(?!.*\.\.)[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}(?<!\.)"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)
"""What the emulator accepts as a real address (Mailchimp's own heuristics are unpublished:
decision — syntax only, a dotted domain with a letter TLD, no fake-domain list)."""

MAX_COUNT = 1000


def json_type(value: Any) -> str:
    """The JSON-schema type name of ``value``, as Mailchimp's messages spell it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def wrong_type(field: str, expected: str, value: Any) -> ApiError:
    """The schema error for ``field`` holding the wrong JSON type."""
    return field_error(field, f"Schema describes {expected}, {json_type(value)} found instead")


async def read_json_object(request: Request, required: bool = True) -> dict[str, Any]:
    """The body as a JSON object: unparseable -> ``JSON Parse Error``, other types -> 400."""
    raw = await request.body()
    if not raw.strip():
        if not required:
            return {}
        raise ApiError(400, "JSON Parse Error", DETAILS["JSON Parse Error"])
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "JSON Parse Error", DETAILS["JSON Parse Error"]) from None
    if not isinstance(body, dict):
        raise wrong_type("", "object", body)
    return body


def optional(body: dict[str, Any], key: str, kind: type | tuple[type, ...], name: str) -> Any:
    """``body[key]`` when present and of JSON type ``name``; ``None`` when absent."""
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _kinds(kind)):
        raise wrong_type(key, name, value)
    return value


def _kinds(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def required_str(body: dict[str, Any], key: str) -> str:
    """A required non-blank string field."""
    value = optional(body, key, str, "string")
    if value is None or not value.strip():
        raise field_error(key, "This value should not be blank.")
    return str(value)


def check_email(value: Any, field: str = "email_address") -> str:
    """A syntactically real address (stripped), or Mailchimp's "looks fake" refusal."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise field_error(field, "This value should not be blank.")
    if not isinstance(value, str):
        raise wrong_type(field, "string", value)
    email = value.strip()
    if len(email) > 254 or not EMAIL.match(email):
        raise fake_email(email)
    return email


def page_params(request: Request) -> tuple[int, int]:
    """``count`` (default 10, at most 1000) and ``offset`` (default 0) query parameters."""
    out: list[int] = []
    for name, default in (("count", 10), ("offset", 0)):
        raw = request.query_params.get(name)
        if raw is None or raw == "":
            out.append(default)
            continue
        try:
            value = int(raw)
        except ValueError:
            raise wrong_type(name, "integer", raw) from None
        if value < 0:
            raise field_error(name, "Must be greater than or equal to 0.")
        if name == "count" and value > MAX_COUNT:
            raise field_error(name, f"Must be less than or equal to {MAX_COUNT}.")
        out.append(value)
    return out[0], out[1]
