"""``/topics``: subscription topics (CRUD only; no unsubscribe page)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .common import account_of, emulator_state, json, list_body
from .errors import missing_field, not_found, validation_error
from .pagination import parse_page_request
from .state import Account, Topic, new_id, timestamp
from .validate import optional_enum, optional_str, read_json_object, required_str

SUBSCRIPTIONS = ("opt_in", "opt_out")
VISIBILITIES = ("public", "private")


def _topic(account: Account, topic_id: str) -> Topic:
    topic = account.topics.get(topic_id)
    if topic is None:
        raise not_found("Topic")
    return topic


def _render_item(topic: Topic) -> dict[str, Any]:
    body: dict[str, Any] = {"id": topic.id, "name": topic.name}
    if topic.description is not None:
        body["description"] = topic.description
    body["default_subscription"] = topic.default_subscription
    body["visibility"] = topic.visibility
    body["created_at"] = topic.created_at
    return body


async def create_topic(request: Request) -> JSONResponse:
    """``POST /topics``."""
    body = await read_json_object(request)
    name = required_str(body, "name")
    if len(name) > 50:
        raise validation_error("The `name` field must be at most 50 characters.")
    if body.get("default_subscription") is None:
        raise missing_field("default_subscription")
    default = optional_enum(body, "default_subscription", SUBSCRIPTIONS)
    description = optional_str(body, "description", max_length=200)
    visibility = optional_enum(body, "visibility", VISIBILITIES) or "private"
    with emulator_state(request).lock:
        account = account_of(request)
        topic = Topic(
            id=new_id(),
            name=name,
            default_subscription=str(default),
            visibility=visibility,
            created_at=timestamp(),
            description=description,
        )
        account.topics[topic.id] = topic
        account.topic_order.add(topic.id)
        return json({"id": topic.id, "object": "topic"}, 201)


async def list_topics(request: Request) -> JSONResponse:
    """``GET /topics``."""
    page = parse_page_request(request.query_params, paginate_by_default=True)
    with emulator_state(request).lock:
        account = account_of(request)
        ids, has_more = account.topic_order.page(page)
        return json(list_body((account.topics[i] for i in ids), _render_item, has_more))


async def get_topic(request: Request) -> JSONResponse:
    """``GET /topics/{id}``."""
    with emulator_state(request).lock:
        topic = _topic(account_of(request), request.path_params["id"])
        return json({"id": topic.id, "object": "topic", **_render_item(topic)})


async def update_topic(request: Request) -> JSONResponse:
    """``PATCH /topics/{id}``; ``default_subscription`` cannot change after creation."""
    body = await read_json_object(request, required=False)
    if "default_subscription" in body:
        raise validation_error("The `default_subscription` of a topic cannot be changed.")
    name = optional_str(body, "name", max_length=50)
    description = optional_str(body, "description", max_length=200)
    visibility = optional_enum(body, "visibility", VISIBILITIES)
    with emulator_state(request).lock:
        topic = _topic(account_of(request), request.path_params["id"])
        if name is not None:
            topic.name = name
        if description is not None:
            topic.description = description
        if visibility is not None:
            topic.visibility = visibility
        return json({"id": topic.id, "object": "topic"})


async def delete_topic(request: Request) -> JSONResponse:
    """``DELETE /topics/{id}``; contacts' choices for it are forgotten."""
    with emulator_state(request).lock:
        account = account_of(request)
        topic = _topic(account, request.path_params["id"])
        del account.topics[topic.id]
        account.topic_order.remove(topic.id)
        for contact in account.contacts.values():
            contact.topics.pop(topic.id, None)
        return json({"id": topic.id, "object": "topic", "deleted": True})


ROUTES = [
    Route("/topics", create_topic, methods=["POST"]),
    Route("/topics", list_topics, methods=["GET"]),
    Route("/topics/{id}", get_topic, methods=["GET"]),
    Route("/topics/{id}", update_topic, methods=["PATCH"]),
    Route("/topics/{id}", delete_topic, methods=["DELETE"]),
]
