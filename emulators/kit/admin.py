"""``/_emulator/*``: the test-only control surface, identical for every emulator.

Not part of any real service; no auth and no rate limit, so a test can always steer
the emulator even while its key is throttled or faulted. Shared tests and benchmarks
drive every emulator through exactly these routes:

* ``POST /_emulator/faults`` adds a rule (rules stack, first match wins), answering 201
  ``{"faults": [...]}``:

  - ``{"status": 500, "count": 3}``: the next 3 API requests fail; without ``count``
    every request fails until the rules are cleared;
  - ``{"status": 500, "fail_probability": 0.05}``: that share fails at random
    (reproducible after ``POST /_emulator/config {"seed": 1}``);
  - ``{"status": 422, "reject_emails": ["bad@x.com"]}``: writes of those emails fail
    (in a batch or import, only that item fails);
  - optional ``"route": "POST /contacts"`` narrows a rule to one route template,
    ``"name"``/``"message"`` override the error's code and message, ``"retry_after"``
    adds that header (429 and 503 get ``retry-after: 1`` by default).

* ``GET``/``DELETE /_emulator/faults``: list / clear the rules (``{"faults": [...]}``).
* ``GET``/``POST /_emulator/config``: ``rate``, ``route_limits``, ``concurrency``,
  ``require_user_agent``, ``seed`` (write-only) and the service's own options.
* ``GET /_emulator/stats``: ``requests``, ``by_route`` (keyed ``"METHOD /template"``),
  ``by_status``, ``rate_limited``, ``faulted``.
* ``GET /_emulator/accounts``: per-account summary (the service decides what).
* ``POST /_emulator/reset``: drop data, faults, stats and rate history; config stays.
* ``GET /_emulator/health``: ``{"ok": true}``.

Malformed admin requests are 400s in the service's own error shape.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .faults import parse_rule

if TYPE_CHECKING:
    from .emulator import Emulator


def admin_routes(emulator: Emulator) -> list[Route]:
    """The ``/_emulator`` routes controlling ``emulator``."""

    async def body_of(request: Request) -> Any:
        raw = await request.body()
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except ValueError:
            raise emulator.errors.error(400, message="The body must be JSON.") from None

    async def add_fault(request: Request) -> JSONResponse:
        """Add a fault rule, e.g. ``{"status": 500, "count": 3}``."""
        try:
            rule = parse_rule(await body_of(request), emulator.errors)
        except ValueError as exc:
            raise emulator.errors.error(400, message=str(exc)) from None
        emulator.faults.add(rule)
        return JSONResponse({"faults": emulator.faults.describe()}, status_code=201)

    async def list_faults(request: Request) -> JSONResponse:
        """The active fault rules."""
        return JSONResponse({"faults": emulator.faults.describe()})

    async def clear_faults(request: Request) -> JSONResponse:
        """Drop every fault rule."""
        emulator.faults.clear()
        return JSONResponse({"faults": []})

    async def get_config(request: Request) -> JSONResponse:
        """Current run-time settings."""
        return JSONResponse(emulator.config())

    async def set_config(request: Request) -> JSONResponse:
        """Change settings; see :meth:`Emulator.configure`."""
        body = await body_of(request)
        if not isinstance(body, dict):
            raise emulator.errors.error(400, message="The body must be a JSON object.")
        try:
            return JSONResponse(emulator.configure(body))
        except ValueError as exc:
            raise emulator.errors.error(400, message=str(exc)) from None

    async def stats(request: Request) -> JSONResponse:
        """Traffic counters since start or the last reset."""
        return JSONResponse(emulator.stats.as_dict())

    async def accounts(request: Request) -> JSONResponse:
        """Per-account summary, as the service defines it."""
        with emulator.lock:
            return JSONResponse(dict(emulator.describe_accounts()))

    async def reset(request: Request) -> JSONResponse:
        """Forget all data, faults, counters and rate-limit history (config is kept)."""
        emulator.reset()
        return JSONResponse({"reset": True})

    async def health(request: Request) -> JSONResponse:
        """Liveness probe for scripts that start the emulator as a process."""
        return JSONResponse({"ok": True})

    return [
        Route("/_emulator/faults", add_fault, methods=["POST"]),
        Route("/_emulator/faults", list_faults, methods=["GET"]),
        Route("/_emulator/faults", clear_faults, methods=["DELETE"]),
        Route("/_emulator/config", get_config, methods=["GET"]),
        Route("/_emulator/config", set_config, methods=["POST"]),
        Route("/_emulator/stats", stats, methods=["GET"]),
        Route("/_emulator/accounts", accounts, methods=["GET"]),
        Route("/_emulator/reset", reset, methods=["POST"]),
        Route("/_emulator/health", health, methods=["GET"]),
    ]
