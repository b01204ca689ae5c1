"""``/lists/{list_id}/members`` and the per-member tag and permanent-delete endpoints."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .common import API, account_of, email_fault_checker, emulator_of, json, list_of, no_content
from .errors import field_error, not_found
from .members import list_member, render_member, upsert_member
from .state import MEMBER_STATUSES, now
from .validate import optional, page_params, read_json_object, wrong_type

MEMBERS = API + "/lists/{list_id}/members"
MEMBER = MEMBERS + "/{subscriber_hash}"
TAG_NAME_MAX = 100


def _skip_merge_validation(request: Request) -> bool:
    return request.query_params.get("skip_merge_validation", "").lower() == "true"


async def list_members(request: Request) -> JSONResponse:
    """``GET /lists/{list_id}/members``: ``count``/``offset`` pages, optional ``status``.

    Archived members are only listed with ``status=archived`` (as in Mailchimp); order is
    the order members were first added (decision: Mailchimp documents no default order).
    """
    count, offset = page_params(request)
    status = request.query_params.get("status")
    if status is not None and status not in (*MEMBER_STATUSES, "archived"):
        raise field_error("status", f"Schema describes enum, value '{status}' is not allowed")
    emulator = emulator_of(request)
    with emulator.lock:
        lst = list_of(account_of(request), request.path_params["list_id"])
        chosen = [
            member
            for member in lst.members.values()
            if (member.status == status if status else member.status != "archived")
        ]
        return json(
            {
                "members": [render_member(lst, m) for m in chosen[offset : offset + count]],
                "list_id": lst.id,
                "total_items": len(chosen),
                "_links": [],
            }
        )


async def add_member(request: Request) -> JSONResponse:
    """``POST /lists/{list_id}/members``: add a new member; an existing one is ``Member Exists``."""
    body = await read_json_object(request)
    if body.get("status") is None:
        raise field_error("status", "This value should not be blank.")
    check_fault = email_fault_checker(request)
    emulator = emulator_of(request)
    with emulator.lock:
        account = account_of(request)
        lst = list_of(account, request.path_params["list_id"])
        member, _ = upsert_member(
            account,
            lst,
            None,
            body,
            update_existing=False,
            skip_merge_validation=_skip_merge_validation(request),
            check_fault=check_fault,
        )
        return json(render_member(lst, member))


async def get_member(request: Request) -> JSONResponse:
    """``GET /lists/{list_id}/members/{subscriber_hash}`` (archived members included)."""
    emulator = emulator_of(request)
    with emulator.lock:
        lst = list_of(account_of(request), request.path_params["list_id"])
        member = list_member(lst, request.path_params["subscriber_hash"])
        return json(render_member(lst, member))


async def put_member(request: Request) -> JSONResponse:
    """``PUT /lists/{list_id}/members/{subscriber_hash}``: add or update (see ``members``)."""
    body = await read_json_object(request)
    check_fault = email_fault_checker(request)
    emulator = emulator_of(request)
    with emulator.lock:
        account = account_of(request)
        lst = list_of(account, request.path_params["list_id"])
        member, _ = upsert_member(
            account,
            lst,
            request.path_params["subscriber_hash"].lower(),
            body,
            skip_merge_validation=_skip_merge_validation(request),
            check_fault=check_fault,
        )
        return json(render_member(lst, member))


async def patch_member(request: Request) -> JSONResponse:
    """``PATCH /lists/{list_id}/members/{subscriber_hash}``: update an existing member only."""
    body = await read_json_object(request)
    check_fault = email_fault_checker(request)
    emulator = emulator_of(request)
    with emulator.lock:
        account = account_of(request)
        lst = list_of(account, request.path_params["list_id"])
        member = list_member(lst, request.path_params["subscriber_hash"])
        body = {"email_address": member.email_address, **body}
        member, _ = upsert_member(
            account,
            lst,
            member.id,
            body,
            skip_merge_validation=True,
            check_fault=check_fault,
        )
        return json(render_member(lst, member))


async def archive_member(request: Request) -> Response:
    """``DELETE /lists/{list_id}/members/{subscriber_hash}``: archive (data is kept).

    Decision: archiving a member that is already archived answers 404, as the member is no
    longer in the audience (Mailchimp documents no answer for it).
    """
    emulator = emulator_of(request)
    with emulator.lock:
        lst = list_of(account_of(request), request.path_params["list_id"])
        member = list_member(lst, request.path_params["subscriber_hash"])
        if member.status == "archived":
            raise not_found()
        member.status = "archived"
        member.last_changed = now()
    return no_content()


async def delete_permanent(request: Request) -> Response:
    """``POST .../members/{subscriber_hash}/actions/delete-permanent``: erase the member.

    The address is remembered as forgotten: it cannot be re-imported except as ``pending``.
    """
    emulator = emulator_of(request)
    with emulator.lock:
        lst = list_of(account_of(request), request.path_params["list_id"])
        member = list_member(lst, request.path_params["subscriber_hash"])
        del lst.members[member.id]
        lst.forgotten.add(member.email_address.lower())
    return no_content()


async def get_tags(request: Request) -> JSONResponse:
    """``GET .../members/{subscriber_hash}/tags`` with ``count``/``offset``."""
    count, offset = page_params(request)
    emulator = emulator_of(request)
    with emulator.lock:
        lst = list_of(account_of(request), request.path_params["list_id"])
        member = list_member(lst, request.path_params["subscriber_hash"])
        tags = [
            {"id": lst.tag_id(name), "name": name, "date_added": added}
            for name, added in member.tags.items()
        ]
        return json({"tags": tags[offset : offset + count], "total_items": len(tags), "_links": []})


def _check_tags(raw: Any) -> list[tuple[str, str]]:
    if raw is None:
        raise field_error("tags", "This value should not be blank.")
    if not isinstance(raw, list):
        raise wrong_type("tags", "array", raw)
    out: list[tuple[str, str]] = []
    for index, item in enumerate(raw):
        where = f"tags[{index}]"
        if not isinstance(item, dict):
            raise wrong_type(where, "object", item)
        name = optional(item, "name", str, "string")
        if name is None or not name.strip():
            raise field_error(f"{where}.name", "This value should not be blank.")
        if len(name) > TAG_NAME_MAX:
            raise field_error(f"{where}.name", f"Tag names are at most {TAG_NAME_MAX} characters.")
        status = optional(item, "status", str, "string")
        if status not in ("active", "inactive"):
            raise field_error(f"{where}.status", "Schema describes enum: 'active' or 'inactive'")
        out.append((name.strip(), status))
    return out


async def update_tags(request: Request) -> Response:
    """``POST .../members/{subscriber_hash}/tags``: ``active`` adds, ``inactive`` removes; 204."""
    body = await read_json_object(request)
    tags = _check_tags(body.get("tags"))
    optional(body, "is_syncing", bool, "boolean")
    emulator = emulator_of(request)
    with emulator.lock:
        lst = list_of(account_of(request), request.path_params["list_id"])
        member = list_member(lst, request.path_params["subscriber_hash"])
        for name, status in tags:
            if status == "active":
                lst.tag_id(name)
                member.tags.setdefault(name, now())
            else:
                member.tags.pop(name, None)
    return no_content()


ROUTES = [
    Route(MEMBERS, list_members, methods=["GET"]),
    Route(MEMBERS, add_member, methods=["POST"]),
    Route(MEMBER, get_member, methods=["GET"]),
    Route(MEMBER, put_member, methods=["PUT"]),
    Route(MEMBER, patch_member, methods=["PATCH"]),
    Route(MEMBER, archive_member, methods=["DELETE"]),
    Route(MEMBER + "/actions/delete-permanent", delete_permanent, methods=["POST"]),
    Route(MEMBER + "/tags", get_tags, methods=["GET"]),
    Route(MEMBER + "/tags", update_tags, methods=["POST"]),
]
