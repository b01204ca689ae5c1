"""Run the emulator from a shell: ``python -m emulators.resend --port 8025 --rate 2``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from emulators.server import serve_forever

from .app import create_app


def serve(
    host: str = "127.0.0.1",
    port: int = 8025,
    rate: float = 2.0,
    api_keys: set[str] | None = None,
) -> None:
    """Serve a fresh emulator until interrupted (blocking)."""
    serve_forever(create_app(rate=rate, api_keys=api_keys), host, port)


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m emulators.resend", description="Local Resend Contacts API emulator."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--rate", type=float, default=2.0, help="requests per second per key")
    parser.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        help="accept only this key (repeatable); default: any key starting with re_",
    )
    args = parser.parse_args(argv)
    serve(args.host, args.port, args.rate, set(args.api_keys) if args.api_keys else None)
