"""A receiver for audiencesync's webhook destination (protocol: ``docs/webhooks.md``).

It verifies signatures and timestamps, stores each accepted batch once per batch id, shows
them at ``GET /batches``, and supports the kit's ``/_emulator`` faults so tests can make it
answer 500, 429 or reject a batch.
"""

from .app import create_app
from .cli import serve
from .state import WebhookReceiver

__all__ = ["WebhookReceiver", "create_app", "serve"]
