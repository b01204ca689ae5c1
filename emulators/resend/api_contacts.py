"""``/contacts`` and the per-contact segment and topic endpoints."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .common import account_of, emulator_state, json, list_body
from .contacts import apply_fields, new_contact, render_contact, render_contact_item
from .errors import ApiError, missing_field, not_found, validation_error
from .pagination import OrderedIndex, parse_page_request
from .state import Account, Contact
from .validate import (
    check_email,
    check_properties,
    check_string_list,
    check_topic_subscriptions,
    optional_bool,
    optional_str,
    read_json_object,
)


def _contact(account: Account, id_or_email: str) -> Contact:
    contact = account.find_contact(id_or_email)
    if contact is None:
        raise not_found("Contact")
    return contact


def _check_segments(account: Account, raw: Any) -> list[str]:
    segments = check_string_list(raw, "segments")
    for segment_id in segments:
        if segment_id not in account.segments:
            raise validation_error(f"The segment `{segment_id}` does not exist.")
    return segments


def _check_email_fault(request: Request, email: str) -> None:
    emulator_state(request).check_email(email)


async def create_contact(request: Request) -> JSONResponse:
    """``POST /contacts``.

    Creating a contact whose email already exists is not an error in Resend: the
    emulator answers 201 with the *existing* id and applies the given fields to it
    (names and ``unsubscribed`` overwritten, properties merged, segments and topic
    subscriptions added). Clients can therefore use create as an upsert by email.
    """
    body = await read_json_object(request)
    if body.get("email") is None:
        raise missing_field("email")
    email = check_email(body["email"])
    _check_email_fault(request, email)
    first_name = optional_str(body, "first_name")
    last_name = optional_str(body, "last_name")
    unsubscribed = optional_bool(body, "unsubscribed")
    state = emulator_state(request)
    with state.lock:
        account = account_of(request)
        properties = check_properties(account, body["properties"]) if "properties" in body else None
        segments = _check_segments(account, body["segments"]) if "segments" in body else None
        topics = (
            check_topic_subscriptions(account, body["topics"], "topics")
            if "topics" in body
            else None
        )
        # ``audience_id`` is deprecated and contacts are global; it is accepted and ignored.
        contact = account.find_contact(email) or new_contact(account, email)
        apply_fields(
            contact,
            first_name=first_name,
            last_name=last_name,
            unsubscribed=unsubscribed,
            properties=properties,
            segments=segments,
            topics=topics,
        )
        return json({"object": "contact", "id": contact.id}, 201)


async def list_contacts(request: Request) -> JSONResponse:
    """``GET /contacts``: newest first; everything unless ``limit`` is given."""
    page = parse_page_request(request.query_params, paginate_by_default=False)
    segment_id = request.query_params.get("segment_id") or None
    with emulator_state(request).lock:
        account = account_of(request)
        predicate = None
        if segment_id is not None:
            if segment_id not in account.segments:
                raise not_found("Segment")
            contacts = account.contacts

            def predicate(contact_id: str) -> bool:
                return segment_id in contacts[contact_id].segments

        ids, has_more = account.contact_order.page(page, predicate)
        items = [account.contacts[i] for i in ids]
        return json(list_body(items, render_contact_item, has_more))


async def get_contact(request: Request) -> JSONResponse:
    """``GET /contacts/{id}`` by id or email."""
    with emulator_state(request).lock:
        contact = _contact(account_of(request), request.path_params["id"])
        return json(render_contact(contact))


async def update_contact(request: Request) -> JSONResponse:
    """``PATCH /contacts/{id}``; an ``email`` already used by another contact is a 409."""
    body = await read_json_object(request, required=False)
    new_email = check_email(body["email"]) if "email" in body else None
    first_name = optional_str(body, "first_name")
    last_name = optional_str(body, "last_name")
    unsubscribed = optional_bool(body, "unsubscribed")
    state = emulator_state(request)
    with state.lock:
        account = account_of(request)
        contact = _contact(account, request.path_params["id"])
        _check_email_fault(request, contact.email)
        if new_email is not None:
            _check_email_fault(request, new_email)
        properties = check_properties(account, body["properties"]) if "properties" in body else None
        if new_email is not None and new_email != contact.email:
            if new_email in account.contact_by_email:
                raise ApiError(
                    409, "conflict", f"A contact with the email `{new_email}` already exists."
                )
            del account.contact_by_email[contact.email]
            contact.email = new_email
            account.contact_by_email[new_email] = contact.id
        apply_fields(
            contact,
            first_name=first_name,
            last_name=last_name,
            unsubscribed=unsubscribed,
            properties=properties,
        )
        return json({"object": "contact", "id": contact.id})


async def delete_contact(request: Request) -> JSONResponse:
    """``DELETE /contacts/{id}`` by id or email."""
    with emulator_state(request).lock:
        account = account_of(request)
        contact = _contact(account, request.path_params["id"])
        account.remove_contact(contact)
        return json({"object": "contact", "id": contact.id, "deleted": True})


async def list_contact_segments(request: Request) -> JSONResponse:
    """``GET /contacts/{contact_id}/segments``: most recently joined first."""
    page = parse_page_request(request.query_params, paginate_by_default=True)
    with emulator_state(request).lock:
        account = account_of(request)
        contact = _contact(account, request.path_params["contact_id"])
        order = OrderedIndex()
        for segment_id in contact.segments:
            if segment_id in account.segments:
                order.add(segment_id)
        ids, has_more = order.page(page)
        data = [
            {
                "id": segment_id,
                "name": account.segments[segment_id].name,
                "created_at": contact.segments[segment_id],
            }
            for segment_id in ids
        ]
        return json({"object": "list", "has_more": has_more, "data": data})


def _contact_and_segment(request: Request) -> tuple[Account, Contact, str]:
    account = account_of(request)
    contact = _contact(account, request.path_params["contact_id"])
    segment_id = request.path_params["segment_id"]
    if segment_id not in account.segments:
        raise not_found("Segment")
    return account, contact, segment_id


async def add_contact_segment(request: Request) -> JSONResponse:
    """``POST /contacts/{contact_id}/segments/{segment_id}``; idempotent."""
    with emulator_state(request).lock:
        _, contact, segment_id = _contact_and_segment(request)
        apply_fields(contact, segments=[segment_id])
        return json(
            {"object": "contact_segment", "contact_id": contact.id, "segment_id": segment_id}
        )


async def remove_contact_segment(request: Request) -> JSONResponse:
    """``DELETE /contacts/{contact_id}/segments/{segment_id}``; idempotent."""
    with emulator_state(request).lock:
        _, contact, segment_id = _contact_and_segment(request)
        contact.segments.pop(segment_id, None)
        return json(
            {
                "object": "contact_segment",
                "contact_id": contact.id,
                "segment_id": segment_id,
                "deleted": True,
            }
        )


async def list_contact_topics(request: Request) -> JSONResponse:
    """``GET /contacts/{contact_id}/topics``: every topic with this contact's status.

    A contact without an explicit choice has the topic's ``default_subscription``.
    """
    page = parse_page_request(request.query_params, paginate_by_default=True)
    with emulator_state(request).lock:
        account = account_of(request)
        contact = _contact(account, request.path_params["contact_id"])
        ids, has_more = account.topic_order.page(page)
        data = []
        for topic_id in ids:
            topic = account.topics[topic_id]
            item: dict[str, Any] = {"id": topic.id, "name": topic.name}
            if topic.description is not None:
                item["description"] = topic.description
            item["subscription"] = contact.topics.get(topic.id, topic.default_subscription)
            data.append(item)
        return json({"object": "list", "has_more": has_more, "data": data})


async def update_contact_topics(request: Request) -> JSONResponse:
    """``PATCH /contacts/{contact_id}/topics``."""
    body = await read_json_object(request)
    if "topics" not in body:
        raise missing_field("topics")
    with emulator_state(request).lock:
        account = account_of(request)
        contact = _contact(account, request.path_params["contact_id"])
        topics = check_topic_subscriptions(account, body["topics"], "topics")
        contact.topics.update(topics)
        return json(
            {
                "object": "contact_topics",
                "contact_id": contact.id,
                "topics": [{"id": tid, "subscription": sub} for tid, sub in topics.items()],
            }
        )


ROUTES = [
    Route("/contacts", create_contact, methods=["POST"]),
    Route("/contacts", list_contacts, methods=["GET"]),
    Route("/contacts/{id}", get_contact, methods=["GET"]),
    Route("/contacts/{id}", update_contact, methods=["PATCH"]),
    Route("/contacts/{id}", delete_contact, methods=["DELETE"]),
    Route("/contacts/{contact_id}/segments", list_contact_segments, methods=["GET"]),
    Route("/contacts/{contact_id}/segments/{segment_id}", add_contact_segment, methods=["POST"]),
    Route(
        "/contacts/{contact_id}/segments/{segment_id}",
        remove_contact_segment,
        methods=["DELETE"],
    ),
    Route("/contacts/{contact_id}/topics", list_contact_topics, methods=["GET"]),
    Route("/contacts/{contact_id}/topics", update_contact_topics, methods=["PATCH"]),
]
"""Contact routes; the import routes must be mounted before ``/contacts/{id}``."""
