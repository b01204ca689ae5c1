"""Lists and list membership.

Decisions where Klaviyo's docs are silent:

* Adding profiles is all or nothing: an unknown profile id is a 400 ``invalid`` pointing
  at it and adds nobody. Removing ignores ids that are not members (or do not exist), so a
  removal can be repeated safely; both accept at most 1,000 profiles (documented).
* ``GET /api/lists/{id}/profiles`` lists members in the order they joined and supports
  ``filter`` with ``equals``/``any`` on ``email`` and ``phone_number``.
* ``GET /api/lists`` answers at most 10 lists per page, as documented.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .common import account_of
from .errors import invalid, not_found
from .jsonapi import (
    answer,
    base_url,
    check_include,
    no_content,
    page_links,
    page_offset,
    page_size,
    parse_filter,
    read_body,
)
from .profiles import normalized, representation
from .state import Account, KList, new_list_id, timestamp

MAX_MEMBERS_PER_CALL = 1000


def list_document(klist: KList, base: str, profile_count: bool = False) -> dict[str, Any]:
    """The ``list`` resource object."""
    link = f"{base}/api/lists/{klist.id}/"
    attributes: dict[str, Any] = {
        "name": klist.name,
        "created": klist.created,
        "updated": klist.updated,
        "opt_in_process": klist.opt_in_process,
    }
    if profile_count:
        attributes["profile_count"] = len(klist.members)
    return {
        "type": "list",
        "id": klist.id,
        "attributes": attributes,
        "relationships": {
            "profiles": {
                "links": {"self": f"{link}relationships/profiles/", "related": f"{link}profiles/"}
            },
        },
        "links": {"self": link},
    }


def _list(account: Account, list_id: str) -> KList:
    klist = account.lists.get(list_id)
    if klist is None:
        raise not_found(f"A list with id {list_id} does not exist.")
    return klist


async def create_list(request: Request) -> JSONResponse:
    body = await read_body(request, "/api/lists")
    attributes = body["data"]["attributes"]
    name = attributes["name"].strip()
    if not name:
        raise invalid("A list needs a name.", "/data/attributes/name")
    emu, account = account_of(request)
    now = timestamp()
    klist = KList(
        id=new_list_id(),
        name=name,
        created=now,
        updated=now,
        opt_in_process=attributes.get("opt_in_process") or "single_opt_in",
    )
    with emu.lock:
        account.lists[klist.id] = klist
    document = list_document(klist, base_url(request))
    return answer({"data": document, "links": {"self": str(request.url)}}, 201)


async def get_lists(request: Request) -> JSONResponse:
    check_include(request)
    size = page_size(request, default=10, maximum=10)
    offset = page_offset(request)
    emu, account = account_of(request)
    with emu.lock:
        lists = list(account.lists.values())
        data = [list_document(k, base_url(request)) for k in lists[offset : offset + size]]
    return answer({"data": data, "links": page_links(request, offset, size, len(lists))})


async def get_list(request: Request) -> JSONResponse:
    check_include(request)
    emu, account = account_of(request)
    count = "profile_count" in request.query_params.get("additional-fields[list]", "")
    with emu.lock:
        klist = _list(account, request.path_params["id"])
        document = list_document(klist, base_url(request), profile_count=count)
    return answer({"data": document, "links": {"self": str(request.url)}})


def _members(request: Request, account: Account, klist: KList) -> list[str]:
    ids = list(klist.members)
    wanted = parse_filter(request, ("email", "phone_number"))
    if wanted is not None:
        field, values = wanted
        found = {account.by_identifier[field].get(normalized(field, v)) for v in values}
        ids = [i for i in ids if i in found]
    if request.query_params.get("sort") == "-joined_group_at":
        ids.reverse()
    return ids


async def get_list_profiles(request: Request) -> JSONResponse:
    size = page_size(request)
    offset = page_offset(request)
    emu, account = account_of(request)
    with emu.lock:
        klist = _list(account, request.path_params["id"])
        ids = _members(request, account, klist)
        data = []
        for profile_id in ids[offset : offset + size]:
            document = representation(account.profiles[profile_id], base_url(request))
            document["attributes"]["joined_group_at"] = klist.members[profile_id]
            data.append(document)
    return answer({"data": data, "links": page_links(request, offset, size, len(ids))})


async def get_list_profile_ids(request: Request) -> JSONResponse:
    size = page_size(request)
    offset = page_offset(request)
    emu, account = account_of(request)
    with emu.lock:
        klist = _list(account, request.path_params["id"])
        ids = _members(request, account, klist)
    data = [{"type": "profile", "id": i} for i in ids[offset : offset + size]]
    return answer({"data": data, "links": page_links(request, offset, size, len(ids))})


async def _member_ids(request: Request) -> list[str]:
    body = await read_body(request, "/api/lists/{id}/relationships/profiles")
    items = body["data"]
    if len(items) > MAX_MEMBERS_PER_CALL:
        raise invalid(
            f"At most {MAX_MEMBERS_PER_CALL} profiles per call; got {len(items)}.", "/data"
        )
    return [item["id"] for item in items]


async def add_members(request: Request) -> Response:
    ids = await _member_ids(request)
    emu, account = account_of(request)
    with emu.lock:
        klist = _list(account, request.path_params["id"])
        for index, profile_id in enumerate(ids):
            if profile_id not in account.profiles:
                raise invalid(
                    f"A profile with id {profile_id} does not exist.", f"/data/{index}/id"
                )
        now = timestamp()
        for profile_id in ids:
            klist.members.setdefault(profile_id, now)
    return no_content()


async def remove_members(request: Request) -> Response:
    ids = await _member_ids(request)
    emu, account = account_of(request)
    with emu.lock:
        klist = _list(account, request.path_params["id"])
        for profile_id in ids:
            klist.members.pop(profile_id, None)
    return no_content()


ROUTES = [
    Route("/api/lists", create_list, methods=["POST"]),
    Route("/api/lists", get_lists, methods=["GET"]),
    Route("/api/lists/{id}", get_list, methods=["GET"]),
    Route("/api/lists/{id}/profiles", get_list_profiles, methods=["GET"]),
    Route("/api/lists/{id}/relationships/profiles", get_list_profile_ids, methods=["GET"]),
    Route("/api/lists/{id}/relationships/profiles", add_members, methods=["POST"]),
    Route("/api/lists/{id}/relationships/profiles", remove_members, methods=["DELETE"]),
]
