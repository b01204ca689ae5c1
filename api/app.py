"""The FastAPI application. OpenAPI docs are served at ``/docs``."""

from __future__ import annotations

from fastapi import FastAPI

from api.errors import install_error_handlers
from api.routes import audiences, destinations, health, syncs


def create_app() -> FastAPI:
    app = FastAPI(
        title="audiencesync",
        version="0.1.0",
        description="Keep audiences in sync with the tools where marketing happens.",
    )
    install_error_handlers(app)
    for module in (health, audiences, destinations, syncs):
        app.include_router(module.router)
    return app


app = create_app()
