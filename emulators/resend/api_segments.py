"""``/segments``: named groups of contacts."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .common import account_of, emulator_state, json, list_body
from .errors import not_found, validation_error
from .pagination import parse_page_request
from .state import Account, Segment, new_id, timestamp
from .validate import read_json_object, required_str


def _segment(account: Account, segment_id: str) -> Segment:
    segment = account.segments.get(segment_id)
    if segment is None:
        raise not_found("Segment")
    return segment


def _render(segment: Segment) -> dict[str, Any]:
    body: dict[str, Any] = {"id": segment.id, "object": "segment", "name": segment.name}
    if segment.filter is not None:
        body["filter"] = segment.filter
    body["created_at"] = segment.created_at
    return body


def _render_item(segment: Segment) -> dict[str, Any]:
    return {"id": segment.id, "name": segment.name, "created_at": segment.created_at}


async def create_segment(request: Request) -> JSONResponse:
    """``POST /segments``; names need not be unique (Resend does not require it)."""
    body = await read_json_object(request)
    name = required_str(body, "name")
    segment_filter = body.get("filter")
    if segment_filter is not None and not isinstance(segment_filter, dict):
        raise validation_error("The `filter` field must be an object.")
    with emulator_state(request).lock:
        account = account_of(request)
        segment = Segment(id=new_id(), name=name, created_at=timestamp(), filter=segment_filter)
        account.segments[segment.id] = segment
        account.segment_order.add(segment.id)
        return json({"id": segment.id, "object": "segment"}, 201)


async def list_segments(request: Request) -> JSONResponse:
    """``GET /segments``: an "existing" list endpoint, so unpaginated without ``limit``."""
    page = parse_page_request(request.query_params, paginate_by_default=False)
    with emulator_state(request).lock:
        account = account_of(request)
        ids, has_more = account.segment_order.page(page)
        return json(list_body((account.segments[i] for i in ids), _render_item, has_more))


async def get_segment(request: Request) -> JSONResponse:
    """``GET /segments/{id}``."""
    with emulator_state(request).lock:
        return json(_render(_segment(account_of(request), request.path_params["id"])))


async def delete_segment(request: Request) -> JSONResponse:
    """``DELETE /segments/{id}``; contacts stay, their membership goes."""
    with emulator_state(request).lock:
        account = account_of(request)
        segment = _segment(account, request.path_params["id"])
        del account.segments[segment.id]
        account.segment_order.remove(segment.id)
        for contact in account.contacts.values():
            contact.segments.pop(segment.id, None)
        return json({"id": segment.id, "object": "segment", "deleted": True})


ROUTES = [
    Route("/segments", create_segment, methods=["POST"]),
    Route("/segments", list_segments, methods=["GET"]),
    Route("/segments/{id}", get_segment, methods=["GET"]),
    Route("/segments/{id}", delete_segment, methods=["DELETE"]),
]
