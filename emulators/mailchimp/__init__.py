"""Emulator of Mailchimp's Marketing API v3 (lists, members, merge fields, tags).

``create_app()`` returns an ASGI app; run it with :class:`emulators.server.EmulatorServer`
in tests or ``python -m emulators.mailchimp`` from a shell. ``contract`` validates traffic
against the documented request and response shapes.
"""

from .app import create_app
from .cli import serve
from .members import subscriber_hash
from .state import MailchimpEmulator

__all__ = ["MailchimpEmulator", "create_app", "serve", "subscriber_hash"]
