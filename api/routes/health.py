"""``/healthz``: the API is only healthy if it can reach the database and the broker."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from shared.db.session import get_engine
from worker.app import celery_app

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Check the database and the broker")
def healthz() -> JSONResponse:
    checks = {"database": "ok", "broker": "ok"}
    try:
        with get_engine().connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        with celery_app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:
        checks["broker"] = f"error: {type(exc).__name__}"
    healthy = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ok" if healthy else "unhealthy", **checks}, 200 if healthy else 503
    )
