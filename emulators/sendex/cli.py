"""Run the emulator from a shell: ``python -m emulators.sendex --port 8026 --rate 10``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from emulators.server import serve_forever

from .app import create_app
from .state import DEFAULT_RATE


def serve(host: str = "127.0.0.1", port: int = 8026, rate: float = DEFAULT_RATE) -> None:
    """Serve a fresh emulator until interrupted (blocking)."""
    serve_forever(create_app(rate=rate), host, port)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m emulators.sendex", description="Local Sendex audiences API emulator."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8026)
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE, help="requests/s per key")
    args = parser.parse_args(argv)
    serve(args.host, args.port, args.rate)
