"""The FastAPI application. OpenAPI docs are served at ``/docs``.

Every module in ``api.routes`` that defines a ``router`` is mounted, so a new resource is one
new module.
"""

from __future__ import annotations

import importlib
import pkgutil

from fastapi import FastAPI

import api.routes
from api.errors import install_error_handlers


def create_app() -> FastAPI:
    app = FastAPI(
        title="audiencesync",
        version="0.1.0",
        description="Keep audiences in sync with the tools where marketing happens.",
    )
    install_error_handlers(app)
    for info in sorted(pkgutil.iter_modules(api.routes.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"api.routes.{info.name}")
        router = getattr(module, "router", None)
        if router is not None:
            app.include_router(router)
    return app


app = create_app()
