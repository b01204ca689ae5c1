"""Emulator of Sendex's audiences and contacts API (seed document 004).

``create_app()`` returns an ASGI app; run it with :class:`emulators.server.EmulatorServer`
in tests or ``python -m emulators.sendex`` from a shell. ``contract`` checks traffic against
the documented request and response shapes.
"""

from .app import create_app
from .cli import serve
from .state import SendexEmulator

__all__ = ["SendexEmulator", "create_app", "serve"]
