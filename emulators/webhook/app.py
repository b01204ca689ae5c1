"""The webhook receiver as an ASGI app: the reference receiver of ``docs/webhooks.md``."""

from __future__ import annotations

from starlette.applications import Starlette

from . import routes
from .signature import DEFAULT_TOLERANCE
from .state import DEFAULT_RATE, DEFAULT_SECRET, WebhookReceiver


def create_app(
    rate: float = DEFAULT_RATE,
    secret: str = DEFAULT_SECRET,
    tolerance: float = DEFAULT_TOLERANCE,
) -> Starlette:
    """A fresh receiver; batches go to ``POST /webhook``, state is ``app.state.emulator``."""
    receiver = WebhookReceiver(secret=secret, rate=rate, tolerance=tolerance)
    return receiver.app(routes.ROUTES)
