"""Profiles: validation, matching, create-or-update and the JSON:API representation.

One set of rules serves ``POST /api/profile-import`` and every profile of a bulk import job
(the bulk endpoint is documented as creating or updating profiles the same way).

Decisions where Klaviyo's docs are silent:

* Emails are stored trimmed and lower-cased and must look like ``local@domain.tld``;
  phone numbers must be E.164 (``+`` and 7 to 15 digits). A profile needs at least one of
  ``email``, ``phone_number``, ``external_id`` (or an ``id``).
* Matching without an ``id``: email first, then phone number, then external id. Setting an
  identifier another profile already holds is a 409 ``duplicate_profile`` whose ``meta``
  names that profile (an import error of code ``duplicate_profile`` inside a job).
* An unknown ``id`` is a 404 ``not_found`` (an import error inside a job).
* As documented for profile-import, ``null`` clears an attribute and a missing one is left
  alone; ``properties`` merge key by key and ``meta.patch_properties.unset`` removes keys.
"""

from __future__ import annotations

import re
from typing import Any

from emulators.kit import ApiError, normalize_email

from .errors import api_error, invalid
from .state import Account, Profile, new_ulid, timestamp

IDENTIFIERS = ("email", "phone_number", "external_id")
SCALARS = (
    "email",
    "phone_number",
    "external_id",
    "first_name",
    "last_name",
    "organization",
    "locale",
    "title",
    "image",
)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
_PHONE = re.compile(r"^\+[1-9]\d{6,14}$")


def is_valid_email(value: str) -> bool:
    return bool(_EMAIL.match(value.strip()))


def normalized(kind: str, value: str) -> str:
    return normalize_email(value) if kind == "email" else value.strip()


def check_attributes(attributes: dict[str, Any], has_id: bool, pointer: str) -> None:
    """400 for what Klaviyo refuses in one profile's attributes (``pointer`` = its
    ``attributes`` object)."""
    email = attributes.get("email")
    if isinstance(email, str) and not is_valid_email(email):
        raise invalid(f"Invalid email address: '{email}'.", pointer=f"{pointer}/email")
    phone = attributes.get("phone_number")
    if isinstance(phone, str) and not _PHONE.match(phone.strip()):
        raise invalid(
            f"Invalid phone number: '{phone}'. Phone numbers must be in E.164 format.",
            pointer=f"{pointer}/phone_number",
        )
    if not has_id and not any(attributes.get(kind) for kind in IDENTIFIERS):
        raise invalid(
            "One of `email`, `phone_number` or `external_id` is required to identify a profile.",
            pointer=pointer,
        )


def _match(account: Account, attributes: dict[str, Any]) -> Profile | None:
    for kind in IDENTIFIERS:
        value = attributes.get(kind)
        if isinstance(value, str) and value.strip():
            profile_id = account.by_identifier[kind].get(normalized(kind, value))
            if profile_id is not None:
                return account.profiles[profile_id]
    return None


def upsert_profile(
    account: Account,
    attributes: dict[str, Any],
    meta: dict[str, Any] | None,
    profile_id: str | None,
    pointer: str,
) -> tuple[Profile, bool]:
    """Create or update one (already checked) profile; returns it and whether it is new.

    Call with the emulator's lock held. Raises :class:`ApiError` (404/409) before changing
    anything.
    """
    if profile_id:
        profile = account.profiles.get(profile_id)
        if profile is None:
            raise api_error(
                404,
                "not_found",
                f"Profile with id {profile_id} does not exist.",
                pointer="/data/id",
            )
    else:
        profile = _match(account, attributes)
    for kind in IDENTIFIERS:
        value = attributes.get(kind)
        if isinstance(value, str) and value.strip():
            holder = account.by_identifier[kind].get(normalized(kind, value))
            if holder is not None and (profile is None or holder != profile.id):
                raise api_error(
                    409,
                    "duplicate_profile",
                    f"A profile already exists with the {kind} '{value}'.",
                    pointer=f"{pointer}/{kind}",
                    meta={"duplicate_profile_id": holder},
                )
    created = profile is None
    now = timestamp()
    if profile is None:
        profile = Profile(id=new_ulid(), created=now, updated=now)
        account.profiles[profile.id] = profile
    _apply(account, profile, attributes, meta or {})
    profile.updated = now
    return profile, created


def _apply(
    account: Account, profile: Profile, attributes: dict[str, Any], meta: dict[str, Any]
) -> None:
    for name in SCALARS:
        if name not in attributes:
            continue
        value = attributes[name]
        if name in IDENTIFIERS:
            old = profile.attributes.get(name)
            if old:
                account.by_identifier[name].pop(normalized(name, old), None)
            if isinstance(value, str) and value.strip():
                value = normalized(name, value)
                account.by_identifier[name][value] = profile.id
            else:
                value = None
        profile.attributes[name] = value
    if "location" in attributes:
        location = attributes["location"]
        profile.attributes["location"] = dict(location) if isinstance(location, dict) else None
    properties = attributes.get("properties")
    if isinstance(properties, dict):
        profile.properties.update(properties)
    elif "properties" in attributes and properties is None:
        profile.properties.clear()
    patch = meta.get("patch_properties") or {}
    unset = patch.get("unset")
    for key in [unset] if isinstance(unset, str) else unset or []:
        profile.properties.pop(key, None)


def representation(profile: Profile, base: str, subscriptions: bool = False) -> dict[str, Any]:
    """The profile as Klaviyo's ``profile`` resource object."""
    attrs = {name: profile.attributes.get(name) for name in SCALARS}
    location = profile.attributes.get("location")
    attributes: dict[str, Any] = {
        **attrs,
        "created": profile.created,
        "updated": profile.updated,
        "last_event_date": None,
        "location": location or {},
        "properties": dict(profile.properties),
    }
    if subscriptions:
        attributes["subscriptions"] = {
            "email": {
                "marketing": {
                    "can_receive_email_marketing": profile.email_consent == "SUBSCRIBED",
                    "consent": profile.email_consent,
                    "consent_timestamp": profile.email_consent_timestamp,
                    "last_updated": profile.email_consent_timestamp,
                    "method": "API" if profile.email_consent_timestamp else None,
                    "list_suppressions": list(profile.list_suppressions),
                }
            }
        }
    link = f"{base}/api/profiles/{profile.id}/"
    return {
        "type": "profile",
        "id": profile.id,
        "attributes": attributes,
        "relationships": {
            "lists": {"links": {"self": f"{link}relationships/lists/", "related": f"{link}lists/"}},
            "segments": {
                "links": {"self": f"{link}relationships/segments/", "related": f"{link}segments/"}
            },
        },
        "links": {"self": link},
    }


__all__ = ["ApiError", "check_attributes", "representation", "upsert_profile"]
