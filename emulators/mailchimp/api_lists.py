"""``/ping``, ``/lists``, ``/lists/{list_id}`` and batch subscribe (``POST /lists/{list_id}``)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .common import API, account_of, email_fault_checker, emulator_of, json, list_of
from .errors import ApiError, field_error
from .members import render_member, upsert_member
from .state import MailingList, hex_id, now
from .validate import optional, page_params, read_json_object, required_str, wrong_type

BATCH_MAX = 500
DEFAULT_MERGE_FIELDS = (
    ("FNAME", "First Name", "text"),
    ("LNAME", "Last Name", "text"),
    ("ADDRESS", "Address", "address"),
    ("PHONE", "Phone Number", "phone"),
    ("BIRTHDAY", "Birthday", "birthday"),
)
"""What a new Mailchimp audience is created with."""


async def ping(request: Request) -> JSONResponse:
    """``GET /ping``: the health check (answers only with a valid key)."""
    return json({"health_status": "Everything's Chimpy!"})


def render_list(lst: MailingList) -> dict[str, Any]:
    """A list as ``GET /lists/{list_id}`` answers it (the fields clients use)."""
    counts = lst.counts()
    return {
        "id": lst.id,
        "web_id": lst.web_id,
        "name": lst.name,
        "contact": lst.contact,
        "permission_reminder": lst.permission_reminder,
        "use_archive_bar": False,
        "campaign_defaults": lst.campaign_defaults,
        "notify_on_subscribe": "",
        "notify_on_unsubscribe": "",
        "date_created": lst.date_created,
        "list_rating": 0,
        "email_type_option": lst.email_type_option,
        "subscribe_url_short": f"http://eepurl.com/{lst.id[:6]}",
        "subscribe_url_long": f"https://example.us1.list-manage.com/subscribe?id={lst.id}",
        "beamer_address": f"us1-{lst.id}@inbound.mailchimp.com",
        "visibility": "prv",
        "double_optin": False,
        "has_welcome": False,
        "marketing_permissions": False,
        "modules": [],
        "stats": {
            "member_count": counts["subscribed"],
            "total_contacts": sum(counts.values()),
            "unsubscribe_count": counts["unsubscribed"],
            "cleaned_count": counts["cleaned"],
            "member_count_since_send": counts["subscribed"],
            "unsubscribe_count_since_send": counts["unsubscribed"],
            "cleaned_count_since_send": counts["cleaned"],
            "campaign_count": 0,
            "merge_field_count": len(lst.merge_fields),
        },
        "_links": [],
    }


def _object(body: dict[str, Any], key: str, required: tuple[str, ...]) -> dict[str, Any]:
    value = body.get(key)
    if value is None:
        raise field_error(key, "This value should not be blank.")
    if not isinstance(value, dict):
        raise wrong_type(key, "object", value)
    for name in required:
        if not isinstance(value.get(name), str) or not value[name].strip():
            raise field_error(f"{key}.{name}", "This value should not be blank.")
    return value


async def create_list(request: Request) -> JSONResponse:
    """``POST /lists``: a new audience with Mailchimp's default merge fields."""
    body = await read_json_object(request)
    name = required_str(body, "name")
    contact = _object(body, "contact", ("company", "address1", "city", "country"))
    reminder = required_str(body, "permission_reminder")
    defaults = _object(
        body, "campaign_defaults", ("from_name", "from_email", "subject", "language")
    )
    email_type_option = optional(body, "email_type_option", bool, "boolean")
    if email_type_option is None:
        raise field_error("email_type_option", "This value should not be blank.")
    emulator = emulator_of(request)
    with emulator.lock:
        account = account_of(request)
        lst = MailingList(
            id=hex_id(10),
            web_id=account.web_id(),
            name=name,
            contact=contact,
            permission_reminder=reminder,
            email_type_option=email_type_option,
            campaign_defaults=defaults,
            date_created=now(),
        )
        for tag, label, kind in DEFAULT_MERGE_FIELDS:
            lst.add_merge_field(tag, label, kind)
        account.lists[lst.id] = lst
        return json(render_list(lst))


async def get_lists(request: Request) -> JSONResponse:
    """``GET /lists`` with ``count``/``offset``."""
    count, offset = page_params(request)
    emulator = emulator_of(request)
    with emulator.lock:
        lists = list(account_of(request).lists.values())
        return json(
            {
                "lists": [render_list(lst) for lst in lists[offset : offset + count]],
                "total_items": len(lists),
                "constraints": {
                    "may_create": True,
                    "max_instances": 1,
                    "current_total_instances": len(lists),
                },
                "_links": [],
            }
        )


async def get_list(request: Request) -> JSONResponse:
    """``GET /lists/{list_id}``."""
    emulator = emulator_of(request)
    with emulator.lock:
        lst = list_of(account_of(request), request.path_params["list_id"])
        return json(render_list(lst))


def _batch_error(email: Any, error: ApiError) -> dict[str, Any]:
    item: dict[str, Any] = {
        "email_address": email if isinstance(email, str) else "",
        "error": error.message,
        "error_code": "ERROR_CONTACT_EXISTS" if error.code == "Member Exists" else "ERROR_GENERIC",
    }
    fields = error.details.get("errors")
    if fields:
        item["error"] = f"{error.message} {fields[0]['field']}: {fields[0]['message']}".strip()
        item["field"] = fields[0]["field"]
        item["field_message"] = fields[0]["message"]
    return item


async def batch_subscribe(request: Request) -> JSONResponse:
    """``POST /lists/{list_id}``: add or update up to 500 members in one call.

    Each member is validated and written on its own: a refused member lands in ``errors``
    (``email_address``, ``error``, ``error_code``) and the others are written. Every member
    appears in exactly one of ``new_members``, ``updated_members`` and ``errors`` (decision:
    unchanged members are reported as updated). Members take the same fields as
    ``PUT /members/{hash}``; ``status`` or ``status_if_new`` must say how a new one starts.
    """
    body = await read_json_object(request)
    members = body.get("members")
    if members is None:
        raise field_error("members", "This value should not be blank.")
    if not isinstance(members, list):
        raise wrong_type("members", "array", members)
    if len(members) > BATCH_MAX:
        raise field_error(
            "members", f"This collection should contain {BATCH_MAX} elements or less."
        )
    update_existing = optional(body, "update_existing", bool, "boolean") or False
    skip = request.query_params.get("skip_merge_validation", "").lower() == "true"
    check_fault = email_fault_checker(request)
    emulator = emulator_of(request)
    created: list[dict[str, Any]] = []
    updated: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    with emulator.lock:
        account = account_of(request)
        lst = list_of(account, request.path_params["list_id"])
        for item in members:
            if not isinstance(item, dict):
                errors.append(_batch_error("", wrong_type("members", "object", item)))
                continue
            try:
                member, is_new = upsert_member(
                    account,
                    lst,
                    None,
                    item,
                    update_existing=update_existing,
                    skip_merge_validation=skip,
                    check_fault=check_fault,
                )
            except ApiError as exc:
                errors.append(_batch_error(item.get("email_address"), exc))
                continue
            (created if is_new else updated).append(render_member(lst, member))
    return json(
        {
            "new_members": created,
            "updated_members": updated,
            "errors": errors,
            "total_created": len(created),
            "total_updated": len(updated),
            "error_count": len(errors),
            "_links": [],
        }
    )


ROUTES = [
    Route(f"{API}/ping", ping, methods=["GET"]),
    Route(f"{API}/lists", get_lists, methods=["GET"]),
    Route(f"{API}/lists", create_list, methods=["POST"]),
    Route(API + "/lists/{list_id}", get_list, methods=["GET"]),
    Route(API + "/lists/{list_id}", batch_subscribe, methods=["POST"]),
]
