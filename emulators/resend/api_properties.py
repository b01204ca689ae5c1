"""``/contact-properties``: custom fields that must exist before contacts use them."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .common import account_of, emulator_state, json, list_body
from .errors import ApiError, missing_field, not_found, validation_error
from .pagination import parse_page_request
from .state import Account, ContactProperty, new_id, timestamp
from .validate import PROPERTY_KEY, check_property_value, read_json_object, required_str

TYPES = ("string", "number")


def _property(account: Account, property_id: str) -> ContactProperty:
    prop = account.properties.get(property_id)
    if prop is None:
        raise not_found("Contact property")
    return prop


def _render_item(prop: ContactProperty) -> dict[str, Any]:
    body: dict[str, Any] = {"id": prop.id, "key": prop.key, "type": prop.type}
    if prop.fallback_value is not None:
        body["fallback_value"] = prop.fallback_value
    body["created_at"] = prop.created_at
    return body


async def create_property(request: Request) -> JSONResponse:
    """``POST /contact-properties``.

    Keys are unique per account: a second property with the same key is answered
    409 ``conflict`` (not 422), because the request is well-formed but collides with
    existing state, and clients should treat it as "already there".
    """
    body = await read_json_object(request)
    key = required_str(body, "key")
    if not PROPERTY_KEY.match(key):
        raise validation_error(
            f"Invalid `key` field `{key}`: use at most 50 letters, digits or underscores."
        )
    if body.get("type") is None:
        raise missing_field("type")
    prop_type = body["type"]
    if prop_type not in TYPES:
        raise validation_error(f"The `type` field must be `string` or `number`; got `{prop_type}`.")
    with emulator_state(request).lock:
        account = account_of(request)
        if account.property_by(key) is not None:
            raise ApiError(409, "conflict", f"A contact property with key `{key}` already exists.")
        prop = ContactProperty(id=new_id(), key=key, type=prop_type, created_at=timestamp())
        if body.get("fallback_value") is not None:
            prop.fallback_value = check_property_value(prop, body["fallback_value"])
        account.properties[prop.id] = prop
        account.property_by_key[key] = prop.id
        account.property_order.add(prop.id)
        return json({"id": prop.id, "object": "contact_property"}, 201)


async def list_properties(request: Request) -> JSONResponse:
    """``GET /contact-properties``: a newer endpoint, 20 per page by default."""
    page = parse_page_request(request.query_params, paginate_by_default=True)
    with emulator_state(request).lock:
        account = account_of(request)
        ids, has_more = account.property_order.page(page)
        return json(list_body((account.properties[i] for i in ids), _render_item, has_more))


async def get_property(request: Request) -> JSONResponse:
    """``GET /contact-properties/{id}``."""
    with emulator_state(request).lock:
        prop = _property(account_of(request), request.path_params["id"])
        return json({"object": "contact_property", **_render_item(prop)})


async def update_property(request: Request) -> JSONResponse:
    """``PATCH /contact-properties/{id}``: only ``fallback_value`` may change."""
    body = await read_json_object(request, required=False)
    for immutable in ("key", "type"):
        if immutable in body:
            raise validation_error(f"The `{immutable}` of a contact property cannot be changed.")
    with emulator_state(request).lock:
        prop = _property(account_of(request), request.path_params["id"])
        if "fallback_value" in body:
            value = body["fallback_value"]
            prop.fallback_value = None if value is None else check_property_value(prop, value)
        return json({"id": prop.id, "object": "contact_property"})


async def delete_property(request: Request) -> JSONResponse:
    """``DELETE /contact-properties/{id}``; contacts lose their value for it."""
    with emulator_state(request).lock:
        account = account_of(request)
        prop = _property(account, request.path_params["id"])
        del account.properties[prop.id]
        del account.property_by_key[prop.key]
        account.property_order.remove(prop.id)
        for contact in account.contacts.values():
            contact.properties.pop(prop.key, None)
        return json({"id": prop.id, "object": "contact_property", "deleted": True})


ROUTES = [
    Route("/contact-properties", create_property, methods=["POST"]),
    Route("/contact-properties", list_properties, methods=["GET"]),
    Route("/contact-properties/{id}", get_property, methods=["GET"]),
    Route("/contact-properties/{id}", update_property, methods=["PATCH"]),
    Route("/contact-properties/{id}", delete_property, methods=["DELETE"]),
]
