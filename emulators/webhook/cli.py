"""Run the receiver from a shell: ``python -m emulators.webhook --port 8027 --secret s``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from emulators.server import serve_forever

from .app import create_app
from .state import DEFAULT_RATE, DEFAULT_SECRET


def serve(
    host: str = "127.0.0.1",
    port: int = 8027,
    rate: float = DEFAULT_RATE,
    secret: str = DEFAULT_SECRET,
) -> None:
    """Serve a fresh receiver until interrupted (blocking)."""
    serve_forever(create_app(rate=rate, secret=secret), host, port)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m emulators.webhook", description="Local audiencesync webhook receiver."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8027)
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE, help="requests per second")
    parser.add_argument("--secret", default=DEFAULT_SECRET, help="the signing secret")
    args = parser.parse_args(argv)
    serve(args.host, args.port, args.rate, args.secret)
