"""Emulator of Klaviyo's profiles and lists APIs (profile import, bulk import jobs and their
import errors, list membership, bulk subscribe/unsubscribe), revision 2026-07-15.

``create_app()`` returns an ASGI app; run it with :class:`emulators.server.EmulatorServer`
in tests or ``python -m emulators.klaviyo`` from a shell. ``contract`` validates traffic
against the bundled OpenAPI spec copies in ``spec/``.
"""

from .app import create_app
from .cli import serve
from .state import KlaviyoEmulator

__all__ = ["KlaviyoEmulator", "create_app", "serve"]
