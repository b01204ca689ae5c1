"""Contact rules shared by the JSON endpoints and the CSV importer."""

from __future__ import annotations

from typing import Any

from .state import Account, Contact, PropertyValue, new_id, timestamp


def render_contact(contact: Contact) -> dict[str, Any]:
    """``GetContactResponseSuccess``; unset names are omitted (the spec has no nulls)."""
    body: dict[str, Any] = {"object": "contact", "id": contact.id, "email": contact.email}
    if contact.first_name is not None:
        body["first_name"] = contact.first_name
    if contact.last_name is not None:
        body["last_name"] = contact.last_name
    body["created_at"] = contact.created_at
    body["unsubscribed"] = contact.unsubscribed
    body["properties"] = dict(contact.properties)
    return body


def render_contact_item(contact: Contact) -> dict[str, Any]:
    """One item of ``ListContactsResponseSuccess`` (no properties, as in the spec)."""
    body: dict[str, Any] = {"id": contact.id, "email": contact.email}
    if contact.first_name is not None:
        body["first_name"] = contact.first_name
    if contact.last_name is not None:
        body["last_name"] = contact.last_name
    body["created_at"] = contact.created_at
    body["unsubscribed"] = contact.unsubscribed
    return body


def apply_fields(
    contact: Contact,
    *,
    first_name: str | None = None,
    last_name: str | None = None,
    unsubscribed: bool | None = None,
    properties: dict[str, PropertyValue | None] | None = None,
    segments: list[str] | None = None,
    topics: dict[str, str] | None = None,
) -> None:
    """Apply already-validated changes; ``None`` means "leave unchanged".

    An empty first/last name clears it. Properties merge into the existing map and a
    ``None`` value removes the key. Segments and topic subscriptions are added, never
    removed, because the create payload cannot express removal.
    """
    if first_name is not None:
        contact.first_name = first_name or None
    if last_name is not None:
        contact.last_name = last_name or None
    if unsubscribed is not None:
        contact.unsubscribed = unsubscribed
    for key, value in (properties or {}).items():
        if value is None:
            contact.properties.pop(key, None)
        else:
            contact.properties[key] = value
    added_at = timestamp()
    for segment_id in segments or ():
        contact.segments.setdefault(segment_id, added_at)
    if topics:
        contact.topics.update(topics)


def new_contact(account: Account, email: str) -> Contact:
    """Create and index an empty contact for a normalized ``email``."""
    contact = Contact(id=new_id(), email=email, created_at=timestamp())
    account.add_contact(contact)
    return contact
