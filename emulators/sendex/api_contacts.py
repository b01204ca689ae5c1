"""``/api/v1/audiences/{id}/contacts``: paginated list, upsert by email, get, patch, delete."""

from __future__ import annotations

import itertools

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from . import validate
from .common import audience_of, emulator_of
from .errors import not_found, validation_error
from .state import Audience, Contact, new_id, timestamp

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


def _contact(request: Request, audience: Audience) -> Contact:
    contact = audience.contacts.get(request.path_params["contact_id"])
    if contact is None:
        raise not_found("Contact")
    return contact


async def list_contacts(request: Request) -> JSONResponse:
    """``limit`` 1-200 (default 50) and ``offset`` (default 0); out of range is a 422."""
    limit = validate.integer(request.query_params, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    offset = validate.integer(request.query_params, "offset", 0, 0, None)
    with emulator_of(request).lock:
        audience = audience_of(request)
        page = itertools.islice(audience.contacts.values(), offset, offset + limit)
        data = [contact.render() for contact in page]
        total = len(audience.contacts)
    return JSONResponse({"data": data, "total": total, "limit": limit, "offset": offset})


async def upsert_contact(request: Request) -> JSONResponse:
    """Create, or update in place when the email is already in the audience.

    Always 201, as documented. On an update only the supplied fields change: an omitted
    ``subscribed`` keeps the contact's status (the default ``true`` applies to new contacts).
    """
    body = await validate.read_object(request)
    email = validate.email(body)
    first_name = validate.name(body, "first_name")
    last_name = validate.name(body, "last_name")
    subscribed = validate.boolean(body, "subscribed")
    with emulator_of(request).lock:
        audience = audience_of(request)
        contact = audience.find_email(email)
        if contact is None:
            contact = Contact(id=new_id(), email=email, created_at=timestamp())
            audience.add(contact)
        if first_name is not None:
            contact.first_name = first_name
        if last_name is not None:
            contact.last_name = last_name
        if subscribed is not None:
            contact.subscribed = subscribed
        return JSONResponse(contact.render(), status_code=201)


async def get_contact(request: Request) -> JSONResponse:
    with emulator_of(request).lock:
        return JSONResponse(_contact(request, audience_of(request)).render())


async def update_contact(request: Request) -> JSONResponse:
    """Partial update of ``first_name``, ``last_name``, ``subscribed``.

    The email is the contact's identity in the audience: a body trying to change it is a
    422 rather than silently ignored. Other unknown fields are ignored.
    """
    body = await validate.read_object(request)
    if "email" in body:
        raise validation_error("`email` cannot be changed; add a new contact instead.")
    first_name = validate.name(body, "first_name")
    last_name = validate.name(body, "last_name")
    subscribed = validate.boolean(body, "subscribed")
    emulator = emulator_of(request)
    with emulator.lock:
        contact = _contact(request, audience_of(request))
        emulator.check_email(contact.email)
        if first_name is not None:
            contact.first_name = first_name
        if last_name is not None:
            contact.last_name = last_name
        if subscribed is not None:
            contact.subscribed = subscribed
        return JSONResponse(contact.render())


async def delete_contact(request: Request) -> JSONResponse:
    with emulator_of(request).lock:
        audience = audience_of(request)
        contact = _contact(request, audience)
        audience.remove(contact)
        return JSONResponse({"id": contact.id})


ROUTES = [
    Route("/api/v1/audiences/{id}/contacts", list_contacts, methods=["GET"]),
    Route("/api/v1/audiences/{id}/contacts", upsert_contact, methods=["POST"]),
    Route("/api/v1/audiences/{id}/contacts/{contact_id}", get_contact, methods=["GET"]),
    Route("/api/v1/audiences/{id}/contacts/{contact_id}", update_contact, methods=["PATCH"]),
    Route("/api/v1/audiences/{id}/contacts/{contact_id}", delete_contact, methods=["DELETE"]),
]
