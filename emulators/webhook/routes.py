"""``POST /webhook`` (signed batches in) and ``GET /batches`` (what was accepted)."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from emulators.kit import ApiError

from .signature import verify
from .state import Batch, receiver_of

OPERATIONS = ("upsert", "remove", "ping")


def _parse(raw: bytes) -> dict[str, Any]:
    """The batch, checked against the documented shape (400 ``invalid_body`` otherwise)."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "invalid_body", "The body is not JSON.") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_body", "The body must be a JSON object.")
    for field in ("id", "sent_at"):
        if not isinstance(body.get(field), str) or not body[field]:
            raise ApiError(400, "invalid_body", f"`{field}` must be a non-empty string.")
    if body.get("operation") not in OPERATIONS:
        raise ApiError(400, "invalid_body", f"`operation` must be one of {', '.join(OPERATIONS)}.")
    records = body.get("records")
    if not isinstance(records, list) or not all(
        isinstance(r, dict) and isinstance(r.get("key"), str) and isinstance(r.get("payload"), dict)
        for r in records
    ):
        raise ApiError(400, "invalid_body", "`records` must be a list of {key, payload} objects.")
    return body


async def receive_batch(request: Request) -> JSONResponse:
    """Verify, then store once per batch id; a repeated id is acknowledged, not stored again."""
    receiver = receiver_of(request)
    raw = await request.body()
    verify(
        receiver.secret,
        request.headers.get("x-audiencesync-timestamp"),
        request.headers.get("x-audiencesync-signature"),
        raw,
        receiver.clock(),
        receiver.tolerance,
    )
    body = _parse(raw)
    if request.headers.get("x-audiencesync-batch-id") != body["id"]:
        raise ApiError(400, "invalid_body", "X-AudienceSync-Batch-Id differs from the body's id.")
    with receiver.lock:
        if body["operation"] == "ping":
            receiver.received.pings += 1
            return JSONResponse({"id": body["id"], "ok": True})
        known = receiver.received.batches.get(body["id"])
        if known is not None:
            known.deliveries += 1
            return JSONResponse({"id": body["id"], "duplicate": True})
        receiver.received.batches[body["id"]] = Batch(
            id=body["id"],
            operation=body["operation"],
            sent_at=body["sent_at"],
            records=body["records"],
            received_at=receiver.clock(),
            headers={k.lower(): v for k, v in request.headers.items()},
            query=request.url.query,
        )
        if receiver.fail_after_store > 0:
            receiver.fail_after_store -= 1
            raise ApiError(500, "internal_error", "Stored, then crashed before answering.")
    return JSONResponse({"id": body["id"], "accepted": len(body["records"])})


async def list_batches(request: Request) -> JSONResponse:
    """Accepted batches in arrival order; ``?operation=`` filters."""
    wanted = request.query_params.get("operation")
    receiver = receiver_of(request)
    with receiver.lock:
        data = [
            batch.render()
            for batch in receiver.received.batches.values()
            if wanted is None or batch.operation == wanted
        ]
        pings = receiver.received.pings
    return JSONResponse({"data": data, "total": len(data), "pings": pings})


ROUTES = [
    Route("/webhook", receive_batch, methods=["POST"]),
    Route("/batches", list_batches, methods=["GET"]),
]
