"""Bulk subscribe / unsubscribe jobs for email marketing consent.

Klaviyo runs these asynchronously and offers no endpoint to read them, so the emulator
applies them before answering 202: the outcome is visible at once through
``GET /api/profiles/{id}?additional-fields[profile]=subscriptions`` and list membership.

Decisions where the docs are silent:

* The request is validated as a whole, like Klaviyo's synchronous validation: the first
  profile with an invalid email or phone (or an email an injected ``reject_emails`` fault
  refuses) makes the request a 400 (or the fault's status) pointing at that profile, and
  nothing is applied. A list that does not exist is a 400 pointing at its id.
* Subscribe: profiles are found by email (then phone) or created, get consent
  ``SUBSCRIBED`` and join the list when one is given. Double opt-in is not modelled: a
  ``double_opt_in`` list subscribes at once as well.
* Unsubscribe (at most 100 profiles): a profile that is a member of the given list leaves
  it and gets a list suppression; any other profile is unsubscribed globally (consent
  ``UNSUBSCRIBED``), as the endpoint's warning describes.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from emulators.kit import route_key

from .common import account_of
from .errors import invalid
from .jsonapi import accepted, read_body
from .profiles import check_attributes, upsert_profile
from .state import Account, KlaviyoEmulator, Profile, timestamp

MAX_SUBSCRIBE = 1000
MAX_UNSUBSCRIBE = 100


async def _validated(
    request: Request, template: str, maximum: int
) -> tuple[KlaviyoEmulator, Account, list[dict[str, Any]], str | None]:
    body = await read_body(request, template)
    data = body["data"]
    profiles: list[dict[str, Any]] = data["attributes"]["profiles"]["data"]
    if not profiles or len(profiles) > maximum:
        raise invalid(
            f"Between 1 and {maximum} profiles per call; got {len(profiles)}.",
            "/data/attributes/profiles/data",
        )
    emu, account = account_of(request)
    route = route_key(request.scope)
    for index, item in enumerate(profiles):
        pointer = f"/data/attributes/profiles/data/{index}/attributes"
        attributes = item["attributes"]
        identity = {k: attributes.get(k) for k in ("email", "phone_number")}
        if not any(identity.values()):
            raise invalid("Either `email` or `phone_number` is required.", pointer)
        check_attributes(identity, False, pointer)
        email = attributes.get("email")
        if isinstance(email, str):
            rule = emu.faults.for_email(email, route)
            if rule is not None:
                emu.stats.faulted += 1
                error = rule.email_error(email)
                error.details["source"] = {"pointer": f"{pointer}/email"}
                raise error
    list_data = ((data.get("relationships") or {}).get("list") or {}).get("data")
    list_id = list_data["id"] if list_data else None
    if list_id is not None and list_id not in account.lists:
        raise invalid(f"The list {list_id} does not exist.", "/data/relationships/list/data/id")
    return emu, account, profiles, list_id


def _profile(account: Account, item: dict[str, Any]) -> Profile:
    attributes = item["attributes"]
    identity = {k: attributes[k] for k in ("email", "phone_number") if attributes.get(k)}
    profile, _ = upsert_profile(account, identity, None, item.get("id"), "/data/attributes")
    return profile


async def subscribe(request: Request) -> Response:
    emu, account, profiles, list_id = await _validated(
        request, "/api/profile-subscription-bulk-create-jobs", MAX_SUBSCRIBE
    )
    with emu.lock:
        now = timestamp()
        for item in profiles:
            profile = _profile(account, item)
            marketing = ((item["attributes"].get("subscriptions") or {}).get("email") or {}).get(
                "marketing"
            )
            if marketing and marketing.get("consent") == "SUBSCRIBED":
                profile.email_consent = "SUBSCRIBED"
                profile.email_consent_timestamp = marketing.get("consented_at") or now
                profile.list_suppressions = [
                    s for s in profile.list_suppressions if s["list_id"] != list_id
                ]
            if list_id is not None:
                account.lists[list_id].members.setdefault(profile.id, now)
    return accepted()


async def unsubscribe(request: Request) -> Response:
    emu, account, profiles, list_id = await _validated(
        request, "/api/profile-subscription-bulk-delete-jobs", MAX_UNSUBSCRIBE
    )
    with emu.lock:
        now = timestamp()
        for item in profiles:
            profile = _profile(account, item)
            email = (item["attributes"].get("subscriptions") or {}).get("email")
            if not email:
                continue
            klist = account.lists.get(list_id) if list_id else None
            if klist is not None and profile.id in klist.members:
                del klist.members[profile.id]
                profile.list_suppressions.append(
                    {"list_id": klist.id, "reason": "UNSUBSCRIBE", "timestamp": now}
                )
            else:
                profile.email_consent = "UNSUBSCRIBED"
                profile.email_consent_timestamp = now
    return accepted()


ROUTES = [
    Route("/api/profile-subscription-bulk-create-jobs", subscribe, methods=["POST"]),
    Route("/api/profile-subscription-bulk-delete-jobs", unsubscribe, methods=["POST"]),
]
