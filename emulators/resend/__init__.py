"""Emulator of Resend's Contacts API (contacts, segments, properties, topics, imports).

``create_app()`` returns an ASGI app; run it with :class:`emulators.server.EmulatorServer`
in tests or ``python -m emulators.resend`` from a shell. ``contract`` validates
traffic against the bundled OpenAPI spec (``resend.yaml``).
"""

from .app import create_app
from .cli import serve
from .state import ResendEmulatorState

__all__ = ["ResendEmulatorState", "create_app", "serve"]
