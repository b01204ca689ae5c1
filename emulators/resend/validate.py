"""Request-body checks that mirror the spec's schemas and Resend's wording.

The emulator is deliberately at least as strict as the published schema: a client
that passes here sends bodies the real service accepts.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from starlette.requests import Request

from .errors import missing_field, validation_error
from .state import Account, ContactProperty, PropertyValue

_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_EMAIL = re.compile(rf"^{_LOCAL}@(?:{_LABEL}\.)+(?:[A-Za-z]{{2,63}}|xn--[A-Za-z0-9-]{{1,59}})$")
PROPERTY_KEY = re.compile(r"^[A-Za-z0-9_]{1,50}$")


def is_valid_email(email: str) -> bool:
    """A pragmatic address check: dotted domain with an alphabetic TLD, no spaces."""
    return len(email) <= 254 and _EMAIL.match(email) is not None


def normalize_email(email: str) -> str:
    """Emails are matched case-insensitively and stored lower-cased, trimmed."""
    return email.strip().lower()


def check_email(email: Any, field: str = "email") -> str:
    """Validate an ``email`` body field and return its normalized form."""
    if not isinstance(email, str):
        raise validation_error(f"The `{field}` field must be a string.")
    if not is_valid_email(email.strip()):
        raise validation_error(
            f"Invalid `{field}` field. `{email}` is not a valid email address; it needs to"
            " follow the `email@example.com` format."
        )
    return normalize_email(email)


async def read_json_object(request: Request, *, required: bool = True) -> dict[str, Any]:
    """Parse the body as a JSON object; anything else is a 422 ``validation_error``."""
    raw = await request.body()
    if not raw.strip():
        if required:
            raise validation_error("The request body must be a JSON object.")
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise validation_error("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise validation_error("The request body must be a JSON object.")
    return body


def required_str(body: dict[str, Any], field: str) -> str:
    """A required, non-empty string field."""
    value = body.get(field)
    if value is None:
        raise missing_field(field)
    if not isinstance(value, str):
        raise validation_error(f"The `{field}` field must be a string.")
    if not value.strip():
        raise validation_error(f"The `{field}` field must not be empty.")
    return value


def optional_str(body: dict[str, Any], field: str, max_length: int | None = None) -> str | None:
    """An optional string field (``None`` when absent); JSON null is rejected like the spec."""
    if field not in body:
        return None
    value = body[field]
    if not isinstance(value, str):
        raise validation_error(f"The `{field}` field must be a string.")
    if max_length is not None and len(value) > max_length:
        raise validation_error(f"The `{field}` field must be at most {max_length} characters.")
    return value


def optional_bool(body: dict[str, Any], field: str) -> bool | None:
    """An optional boolean field."""
    if field not in body:
        return None
    value = body[field]
    if not isinstance(value, bool):
        raise validation_error(f"The `{field}` field must be a boolean.")
    return value


def optional_enum(body: dict[str, Any], field: str, allowed: tuple[str, ...]) -> str | None:
    """An optional string restricted to ``allowed``."""
    value = optional_str(body, field)
    if value is not None and value not in allowed:
        raise validation_error(
            f"The `{field}` field must be one of {', '.join(allowed)}; got `{value}`."
        )
    return value


def is_number(value: Any) -> bool:
    """JSON numbers only: booleans are not numbers, nor are NaN/infinity."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return not (isinstance(value, float) and not math.isfinite(value))


def check_property_value(prop: ContactProperty, value: Any) -> PropertyValue:
    """A contact's value for ``prop`` must match the declared type."""
    if prop.type == "number":
        if not is_number(value):
            raise validation_error(
                f"The value of property `{prop.key}` must be a number; got {json.dumps(value)}."
            )
        return value
    if not isinstance(value, str):
        raise validation_error(
            f"The value of property `{prop.key}` must be a string; got {json.dumps(value)}."
        )
    return value


def check_properties(account: Account, raw: Any) -> dict[str, PropertyValue | None]:
    """Validate a ``properties`` map; ``None`` values mean "remove this property".

    Every key must have been declared with ``POST /contact-properties`` first.
    """
    if not isinstance(raw, dict):
        raise validation_error("The `properties` field must be an object.")
    checked: dict[str, PropertyValue | None] = {}
    for key, value in raw.items():
        prop = account.property_by(key)
        if prop is None:
            raise validation_error(
                f"The property `{key}` does not exist. Create it with"
                " POST /contact-properties before setting it on contacts."
            )
        checked[key] = None if value is None else check_property_value(prop, value)
    return checked


def check_string_list(value: Any, field: str) -> list[str]:
    """A JSON array of strings."""
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise validation_error(f"The `{field}` field must be an array of strings.")
    return value


def check_topic_subscriptions(account: Account, value: Any, field: str) -> dict[str, str]:
    """``[{"id": ..., "subscription": "opt_in"|"opt_out"}]`` naming existing topics."""
    if not isinstance(value, list):
        raise validation_error(f"The `{field}` field must be an array.")
    out: dict[str, str] = {}
    for item in value:
        if not isinstance(item, dict):
            raise validation_error(f"Each entry of `{field}` must be an object.")
        topic_id = item.get("id")
        subscription = item.get("subscription")
        if not isinstance(topic_id, str):
            raise missing_field(f"{field}[].id")
        if subscription not in ("opt_in", "opt_out"):
            raise validation_error(
                f"The subscription for topic `{topic_id}` must be `opt_in` or `opt_out`."
            )
        if topic_id not in account.topics:
            raise validation_error(f"The topic `{topic_id}` does not exist.")
        out[topic_id] = subscription
    return out
