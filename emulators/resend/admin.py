"""``/_emulator/*``: test-only controls (faults, config, stats, reset).

Not part of Resend; no auth and no rate limit, so a test can always steer the
emulator even while its API key is throttled or faulted.

* ``POST /_emulator/faults`` adds a rule (rules stack, first match wins):

  - ``{"status": 500, "count": 3}``: the next 3 API requests fail; without ``count``
    every request fails until the rules are cleared;
  - ``{"status": 500, "fail_probability": 0.05}``: that share fails at random
    (reproducible after ``POST /_emulator/config {"seed": 1}``);
  - ``{"status": 422, "reject_emails": ["bad@x.com"]}``: creating or updating those
    contacts fails with ``validation_error``; in a CSV import the row counts as failed;
  - optional ``"route": "POST /contacts"`` narrows a rule to one route template,
    ``"name"``/``"message"`` override the error body, ``"retry_after"`` adds that
    header (429 and 503 get ``retry-after: 1`` by default).

  Faults apply after auth and the rate limit (a faulted request still uses rate
  budget, as a real failed request would) and before any handler, so they change
  no data.
* ``GET``/``DELETE /_emulator/faults``: list / clear the rules.
* ``GET``/``POST /_emulator/config``: ``rate`` (requests per second per key),
  ``import_delay`` (seconds a new import stays ``queued``), ``require_user_agent``,
  ``seed``.
* ``GET /_emulator/stats``: ``requests`` (all API requests, rejected ones included),
  ``by_route`` (keyed ``"METHOD /template"``), ``by_status``, ``rate_limited``, ``faulted``.
* ``GET /_emulator/accounts``: collection sizes per API key.
* ``POST /_emulator/reset``: drop data, faults, stats and rate history; config stays.
* ``GET /_emulator/health``: ``{"ok": true}``.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .common import emulator_state
from .errors import ApiError
from .faults import parse_rule


async def _body(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        raise ApiError(400, "validation_error", "The body must be JSON.") from None


async def add_fault(request: Request) -> JSONResponse:
    """Add a fault rule, e.g. ``{"status": 500, "count": 3}``."""
    try:
        rule = parse_rule(await _body(request))
    except ValueError as exc:
        raise ApiError(400, "validation_error", str(exc)) from None
    state = emulator_state(request)
    state.faults.add(rule)
    return JSONResponse({"faults": state.faults.describe()}, status_code=201)


async def list_faults(request: Request) -> JSONResponse:
    """The active fault rules."""
    return JSONResponse({"faults": emulator_state(request).faults.describe()})


async def clear_faults(request: Request) -> JSONResponse:
    """Drop every fault rule."""
    state = emulator_state(request)
    state.faults.clear()
    return JSONResponse({"faults": []})


def _config(request: Request) -> dict[str, Any]:
    state = emulator_state(request)
    return {
        "rate": state.rate,
        "import_delay": state.import_delay,
        "require_user_agent": state.require_user_agent,
    }


async def get_config(request: Request) -> JSONResponse:
    """Current run-time settings."""
    return JSONResponse(_config(request))


async def set_config(request: Request) -> JSONResponse:
    """Change ``rate``, ``import_delay``, ``require_user_agent`` or the fault ``seed``."""
    body = await _body(request)
    if not isinstance(body, dict):
        raise ApiError(400, "validation_error", "The body must be a JSON object.")
    state = emulator_state(request)
    rate = body.get("rate")
    if rate is not None:
        if isinstance(rate, bool) or not isinstance(rate, int | float) or rate <= 0:
            raise ApiError(400, "validation_error", "`rate` must be a positive number.")
        state.limiter.set_rate(float(rate))
    delay = body.get("import_delay")
    if delay is not None:
        if isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0:
            raise ApiError(400, "validation_error", "`import_delay` must be >= 0 seconds.")
        state.import_delay = float(delay)
    if "require_user_agent" in body:
        state.require_user_agent = bool(body["require_user_agent"])
    if "seed" in body:
        state.random.seed(body["seed"])
    return JSONResponse(_config(request))


async def stats(request: Request) -> JSONResponse:
    """Traffic counters since start or the last reset."""
    return JSONResponse(emulator_state(request).stats.as_dict())


async def accounts(request: Request) -> JSONResponse:
    """Collection sizes per API key."""
    state = emulator_state(request)
    with state.lock:
        return JSONResponse({key: acc.counts() for key, acc in state.accounts.items()})


async def reset(request: Request) -> JSONResponse:
    """Forget all data, faults, counters and rate-limit history (config is kept)."""
    emulator_state(request).reset()
    return JSONResponse({"reset": True})


async def health(request: Request) -> JSONResponse:
    """Liveness probe for scripts that start the emulator as a process."""
    return JSONResponse({"ok": True})


ROUTES = [
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
