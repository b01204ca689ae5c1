"""The Klaviyo API emulator as an ASGI app (plain Starlette through :mod:`emulators.kit`,
so every answer, validation failures included, is in Klaviyo's JSON:API error shape)."""

from __future__ import annotations

from starlette.applications import Starlette

from . import api_jobs, api_lists, api_profiles, api_subscriptions
from .state import KlaviyoEmulator


def create_app(
    rate: float = 100.0,
    api_keys: set[str] | None = None,
    spec_limits: bool = True,
    import_rate: float | None = 5000.0,
    job_delay: float = 0.0,
) -> Starlette:
    """Build an emulator with its own in-memory state on ``app.state.emulator``.

    ``spec_limits`` enforces the spec's per-endpoint burst/steady limits (``rate``, requests
    per second per key, covers routes without one, or all routes when ``spec_limits`` is
    off); ``api_keys=None`` accepts any key starting with ``pk_``; ``import_rate`` is the
    profiles per second a bulk job imports; ``job_delay`` keeps new jobs ``queued`` that long.
    """
    emulator = KlaviyoEmulator(
        rate=rate,
        api_keys=api_keys,
        spec_limits=spec_limits,
        import_rate=import_rate,
        job_delay=job_delay,
    )
    return emulator.app(
        [*api_jobs.ROUTES, *api_profiles.ROUTES, *api_lists.ROUTES, *api_subscriptions.ROUTES]
    )
