"""``POST /api/profile-import`` (create or update one profile) and the profile reads.

``GET /api/profiles`` lists profiles in creation order and supports ``filter`` with
``equals``/``any`` on ``id``, ``email``, ``phone_number`` and ``external_id``;
``additional-fields[profile]=subscriptions`` adds the email consent.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .common import account_of
from .errors import not_found
from .jsonapi import (
    answer,
    base_url,
    check_include,
    page_links,
    page_offset,
    page_size,
    parse_filter,
    read_body,
)
from .profiles import check_attributes, normalized, representation, upsert_profile

FILTER_FIELDS = ("id", "email", "phone_number", "external_id")


def _wants_subscriptions(request: Request) -> bool:
    wanted = request.query_params.get("additional-fields[profile]", "")
    return "subscriptions" in wanted.split(",")


async def profile_import(request: Request) -> JSONResponse:
    """Create (201) or update (200) one profile."""
    body = await read_body(request, "/api/profile-import")
    emu, account = account_of(request)
    data = body["data"]
    attributes = data["attributes"]
    check_attributes(attributes, bool(data.get("id")), "/data/attributes")
    with emu.lock:
        profile, created = upsert_profile(
            account, attributes, data.get("meta"), data.get("id"), "/data/attributes"
        )
        document = representation(profile, base_url(request), _wants_subscriptions(request))
    return answer({"data": document, "links": {"self": str(request.url)}}, 201 if created else 200)


async def get_profiles(request: Request) -> JSONResponse:
    """Profiles of the account, oldest first, paginated."""
    check_include(request)
    size = page_size(request)
    offset = page_offset(request)
    wanted = parse_filter(request, FILTER_FIELDS)
    emu, account = account_of(request)
    with emu.lock:
        profiles = list(account.profiles.values())
        if wanted is not None:
            field, values = wanted
            if field == "id":
                profiles = [account.profiles[v] for v in values if v in account.profiles]
            else:
                ids = [account.by_identifier[field].get(normalized(field, v)) for v in values]
                profiles = [account.profiles[i] for i in dict.fromkeys(ids) if i is not None]
        page = profiles[offset : offset + size]
        data = [representation(p, base_url(request), _wants_subscriptions(request)) for p in page]
    return answer({"data": data, "links": page_links(request, offset, size, len(profiles))})


async def get_profile(request: Request) -> JSONResponse:
    """One profile by id."""
    check_include(request)
    emu, account = account_of(request)
    profile_id = request.path_params["id"]
    with emu.lock:
        profile = account.profiles.get(profile_id)
        if profile is None:
            raise not_found(f"A profile with id {profile_id} does not exist.")
        document = representation(profile, base_url(request), _wants_subscriptions(request))
    return answer({"data": document, "links": {"self": str(request.url)}})


ROUTES = [
    Route("/api/profile-import", profile_import, methods=["POST"]),
    Route("/api/profiles", get_profiles, methods=["GET"]),
    Route("/api/profiles/{id}", get_profile, methods=["GET"]),
]
