"""One JSON error shape for the whole API: ``{"error": {"code", "message", "details"?}}``.

Nothing returns a stack trace; unexpected exceptions are logged and answered with a 500 that
says only that something went wrong.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)

CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    422: "validation_error",
    503: "unavailable",
}


class ApiError(Exception):
    def __init__(
        self, status: int, message: str, code: str | None = None, details: Any = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or CODES.get(status, "error")
        self.message = message
        self.details = details


def not_found(what: str) -> ApiError:
    return ApiError(404, f"{what} not found")


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return {"error": error}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message, exc.details), exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        return JSONResponse(
            error_body(code, message), exc.status_code, headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {
                "field": ".".join(str(part) for part in error["loc"] if part != "body"),
                "message": error["msg"],
            }
            for error in exc.errors()
        ]
        summary = "; ".join(
            f"{item['field']}: {item['message']}" if item["field"] else item["message"]
            for item in details
        )
        return JSONResponse(error_body("validation_error", summary, details), 422)

    @app.exception_handler(DataError)
    async def _data_error(_request: Request, exc: DataError) -> JSONResponse:
        # PostgreSQL's text cannot hold NUL: such input is refused as bad input, not a fault
        # (the transaction rolled back, so nothing changed). SQLite would have stored it.
        untranslatable = getattr(exc.orig, "sqlstate", None) == "22P05"  # \u0000 in JSON
        if untranslatable or "NUL (0x00)" in str(exc.orig):
            message = "text may not contain NUL characters (\\u0000)"
            return JSONResponse(error_body("validation_error", message), 422)
        logger.error("api.data_error", exc_info=exc)
        return JSONResponse(error_body("internal_error", "internal server error"), 500)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        logger.error("api.unhandled_error", exc_info=exc)
        return JSONResponse(error_body("internal_error", "internal server error"), 500)
