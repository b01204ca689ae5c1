"""``/lists/{list_id}/merge-fields``: the audience fields members' ``merge_fields`` may use.

Decisions: a ``tag`` is letters, digits and underscores, at most 10 characters, and is
stored upper-cased (Mailchimp upper-cases tags); without a ``tag`` the field gets
``MMERGE<merge_id>`` as Mailchimp does. A tag already defined (or the reserved ``EMAIL``)
is ``400 Invalid Resource``.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .common import API, account_of, emulator_of, json, list_of
from .errors import field_error, invalid_resource, not_found
from .state import MailingList, MergeField
from .validate import optional, page_params, read_json_object, required_str

MERGE_FIELDS = API + "/lists/{list_id}/merge-fields"
TYPES = (
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
)
TAG = re.compile(r"^[A-Za-z0-9_]{1,10}$")


def render_merge_field(lst: MailingList, merge_field: MergeField) -> dict[str, Any]:
    """A merge field as Mailchimp answers it."""
    return {
        "merge_id": merge_field.merge_id,
        "tag": merge_field.tag,
        "name": merge_field.name,
        "type": merge_field.type,
        "required": merge_field.required,
        "default_value": merge_field.default_value,
        "public": merge_field.public,
        "display_order": merge_field.display_order,
        "options": merge_field.options,
        "help_text": merge_field.help_text,
        "list_id": lst.id,
        "_links": [],
    }


async def list_merge_fields(request: Request) -> JSONResponse:
    """``GET /lists/{list_id}/merge-fields`` with ``count`` (default 10) and ``offset``."""
    count, offset = page_params(request)
    emulator = emulator_of(request)
    with emulator.lock:
        lst = list_of(account_of(request), request.path_params["list_id"])
        fields = list(lst.merge_fields.values())
        return json(
            {
                "merge_fields": [
                    render_merge_field(lst, f) for f in fields[offset : offset + count]
                ],
                "list_id": lst.id,
                "total_items": len(fields),
                "_links": [],
            }
        )


async def create_merge_field(request: Request) -> JSONResponse:
    """``POST /lists/{list_id}/merge-fields``: ``name`` and ``type`` required."""
    body = await read_json_object(request)
    name = required_str(body, "name")
    kind = required_str(body, "type")
    if kind not in TYPES:
        raise field_error("type", f"Schema describes enum, value '{kind}' is not in {list(TYPES)}")
    tag = optional(body, "tag", str, "string")
    if tag is not None and not TAG.match(tag):
        raise field_error(
            "tag", "Merge tags are letters, digits and underscores, at most 10 characters."
        )
    required = optional(body, "required", bool, "boolean") or False
    public = optional(body, "public", bool, "boolean") or False
    default_value = optional(body, "default_value", str, "string") or ""
    help_text = optional(body, "help_text", str, "string") or ""
    options = optional(body, "options", dict, "object") or {}
    emulator = emulator_of(request)
    with emulator.lock:
        lst = list_of(account_of(request), request.path_params["list_id"])
        tag = (tag or f"MMERGE{lst.next_merge_id}").upper()
        if tag == "EMAIL" or tag in lst.merge_fields:
            raise invalid_resource(
                f'A Merge Field with the tag "{tag}" already exists for this list.'
            )
        merge_field = lst.add_merge_field(
            tag,
            name,
            kind,
            required=required,
            public=public,
            default_value=default_value,
            help_text=help_text,
            options=options,
        )
        return json(render_merge_field(lst, merge_field))


async def get_merge_field(request: Request) -> JSONResponse:
    """``GET /lists/{list_id}/merge-fields/{merge_id}``."""
    emulator = emulator_of(request)
    with emulator.lock:
        lst = list_of(account_of(request), request.path_params["list_id"])
        for merge_field in lst.merge_fields.values():
            if str(merge_field.merge_id) == request.path_params["merge_id"]:
                return json(render_merge_field(lst, merge_field))
    raise not_found()


ROUTES = [
    Route(MERGE_FIELDS, list_merge_fields, methods=["GET"]),
    Route(MERGE_FIELDS, create_merge_field, methods=["POST"]),
    Route(MERGE_FIELDS + "/{merge_id}", get_merge_field, methods=["GET"]),
]
