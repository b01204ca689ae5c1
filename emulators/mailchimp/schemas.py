"""JSON schemas of the Marketing API v3 operations the emulator serves, from Mailchimp's
API reference (request bodies and the documented 200/204 answers).

Request schemas list the documented properties and forbid others, so a typo in a client
(``status_if_New``) is caught instead of being silently ignored by a lenient server.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

STATUS = ["subscribed", "unsubscribed", "cleaned", "pending", "transactional"]
MERGE_TYPES = [
    "text",
    "number",
    "address",
    "phone",
    "date",
    "url",
    "imageurl",
    "radio",
    "dropdown",
    "birthday",
    "zip",
]
STRING: Schema = {"type": "string"}
LINKS: Schema = {"type": "array"}


def obj(required: list[str], properties: dict[str, Schema], closed: bool = False) -> Schema:
    """An object schema; ``closed`` forbids undocumented properties."""
    schema: Schema = {"type": "object", "required": required, "properties": properties}
    if closed:
        schema["additionalProperties"] = False
    return schema


PROBLEM = obj(
    ["type", "title", "status", "detail", "instance"],
    {
        "type": {"type": "string", "format": "uri", "minLength": 1},
        "title": {"type": "string", "minLength": 1},
        "status": {"type": "integer"},
        "detail": {"type": "string", "minLength": 1},
        "instance": STRING,
        "errors": {
            "type": "array",
            "items": obj(["field", "message"], {"field": STRING, "message": STRING}),
        },
    },
)
"""``application/problem+json`` as every error answer carries it."""

MEMBER_FIELDS: dict[str, Schema] = {
    "email_address": {"type": "string", "minLength": 1},
    "email_type": {"enum": ["html", "text"]},
    "status": {"enum": STATUS},
    "status_if_new": {"enum": STATUS},
    "merge_fields": {"type": "object"},
    "interests": {"type": "object", "additionalProperties": {"type": "boolean"}},
    "language": STRING,
    "vip": {"type": "boolean"},
    "location": {"type": "object"},
    "marketing_permissions": {"type": "array"},
    "ip_signup": STRING,
    "timestamp_signup": STRING,
    "ip_opt": STRING,
    "timestamp_opt": STRING,
}
PUT_MEMBER = obj(["email_address", "status_if_new"], MEMBER_FIELDS, closed=True)
POST_MEMBER = obj(
    ["email_address", "status"],
    {**{k: v for k, v in MEMBER_FIELDS.items() if k != "status_if_new"}, "tags": {"type": "array"}},
    closed=True,
)
PATCH_MEMBER = obj([], MEMBER_FIELDS, closed=True)
BATCH = obj(
    ["members"],
    {
        "members": {
            "type": "array",
            "maxItems": 500,
            "items": obj(["email_address"], MEMBER_FIELDS, closed=True),
        },
        "sync_tags": {"type": "boolean"},
        "update_existing": {"type": "boolean"},
    },
    closed=True,
)
TAGS = obj(
    ["tags"],
    {
        "tags": {
            "type": "array",
            "items": obj(
                ["name", "status"],
                {
                    "name": {"type": "string", "minLength": 1},
                    "status": {"enum": ["active", "inactive"]},
                },
                closed=True,
            ),
        },
        "is_syncing": {"type": "boolean"},
    },
    closed=True,
)
MERGE_FIELD_IN = obj(
    ["name", "type"],
    {
        "tag": {"type": "string", "pattern": "^[A-Za-z0-9_]{1,10}$"},
        "name": {"type": "string", "minLength": 1},
        "type": {"enum": MERGE_TYPES},
        "required": {"type": "boolean"},
        "default_value": STRING,
        "public": {"type": "boolean"},
        "display_order": {"type": "integer"},
        "options": {"type": "object"},
        "help_text": STRING,
    },
    closed=True,
)
LIST_IN = obj(
    ["name", "contact", "permission_reminder", "email_type_option", "campaign_defaults"],
    {
        "name": STRING,
        "contact": obj(["company", "address1", "city", "country"], {}),
        "permission_reminder": STRING,
        "use_archive_bar": {"type": "boolean"},
        "campaign_defaults": obj(["from_name", "from_email", "subject", "language"], {}),
        "notify_on_subscribe": STRING,
        "notify_on_unsubscribe": STRING,
        "email_type_option": {"type": "boolean"},
        "double_optin": {"type": "boolean"},
        "marketing_permissions": {"type": "boolean"},
    },
    closed=True,
)

MEMBER_OUT = obj(
    [
        "id",
        "email_address",
        "unique_email_id",
        "status",
        "merge_fields",
        "timestamp_signup",
        "last_changed",
        "tags_count",
        "tags",
        "list_id",
    ],
    {
        "id": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
        "email_address": STRING,
        "status": {"enum": [*STATUS, "archived"]},
        "merge_fields": {"type": "object"},
        "tags_count": {"type": "integer"},
        "tags": {"type": "array", "items": obj(["id", "name"], {"id": {"type": "integer"}})},
        "list_id": STRING,
        "web_id": {"type": "integer"},
        "vip": {"type": "boolean"},
    },
)
MERGE_FIELD_OUT = obj(
    ["merge_id", "tag", "name", "type", "required", "list_id"],
    {"merge_id": {"type": "integer"}, "tag": STRING, "type": {"enum": MERGE_TYPES}},
)
LIST_OUT = obj(
    ["id", "web_id", "name", "stats", "date_created"],
    {"id": STRING, "web_id": {"type": "integer"}, "stats": obj(["member_count"], {})},
)


def page(key: str, item: Schema, extra: list[str] | None = None) -> Schema:
    """A collection answer: ``{key: [...], "total_items": n, "_links": [...]}``."""
    return obj(
        [key, "total_items", *(extra or [])],
        {
            key: {"type": "array", "items": item},
            "total_items": {"type": "integer"},
            "_links": LINKS,
        },
    )


BATCH_ERROR = obj(
    ["email_address", "error", "error_code"],
    {
        "email_address": STRING,
        "error": STRING,
        "error_code": {"enum": ["ERROR_CONTACT_EXISTS", "ERROR_GENERIC"]},
        "field": STRING,
        "field_message": STRING,
    },
)
BATCH_OUT = obj(
    ["new_members", "updated_members", "errors", "total_created", "total_updated", "error_count"],
    {
        "new_members": {"type": "array", "items": MEMBER_OUT},
        "updated_members": {"type": "array", "items": MEMBER_OUT},
        "errors": {"type": "array", "items": BATCH_ERROR},
        "total_created": {"type": "integer"},
        "total_updated": {"type": "integer"},
        "error_count": {"type": "integer"},
    },
)
TAGS_OUT = page(
    "tags", obj(["id", "name", "date_added"], {"id": {"type": "integer"}, "name": STRING})
)
PING_OUT = obj(["health_status"], {"health_status": STRING})
EMPTY = None
"""A 204 answer: no body at all."""
