"""``/api/v1/audiences``: list per domain, create, retrieve, delete."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from . import validate
from .common import account_of, audience_of, emulator_of
from .errors import ApiError
from .state import Audience, new_id, timestamp


async def list_audiences(request: Request) -> JSONResponse:
    """All audiences of one domain (no pagination is documented), oldest first."""
    domain = validate.domain(request.query_params.get("domain"), "The `domain` query parameter")
    with emulator_of(request).lock:
        data = [
            audience.render()
            for audience in account_of(request).audiences.values()
            if audience.domain == domain
        ]
    return JSONResponse({"data": data, "total": len(data)})


async def create_audience(request: Request) -> JSONResponse:
    """201 with the new audience. Names need not be unique (the docs ask for no uniqueness)."""
    body = await validate.read_object(request)
    name = validate.name(body, "name", required=True)
    assert name is not None
    domain = validate.domain(body.get("domain"))
    emulator = emulator_of(request)
    if not emulator.is_verified(domain):
        raise ApiError(
            422, "domain_not_verified", f"The domain `{domain}` is not verified on your account."
        )
    audience = Audience(id=new_id(), name=name, domain=domain, created_at=timestamp())
    with emulator.lock:
        account_of(request).audiences[audience.id] = audience
        return JSONResponse(audience.render(), status_code=201)


async def get_audience(request: Request) -> JSONResponse:
    with emulator_of(request).lock:
        return JSONResponse(audience_of(request).render())


async def delete_audience(request: Request) -> JSONResponse:
    """Deletes the audience and every contact in it."""
    with emulator_of(request).lock:
        audience = audience_of(request)
        del account_of(request).audiences[audience.id]
        return JSONResponse({"id": audience.id})


ROUTES = [
    Route("/api/v1/audiences", list_audiences, methods=["GET"]),
    Route("/api/v1/audiences", create_audience, methods=["POST"]),
    Route("/api/v1/audiences/{id}", get_audience, methods=["GET"]),
    Route("/api/v1/audiences/{id}", delete_audience, methods=["DELETE"]),
]
