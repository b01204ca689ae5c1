"""Run the emulator from a shell: ``python -m emulators.sendex --port 8026 --rate 10``."""

from __future__ import annotations

from collections.abc import Sequence

from emulators.server import cli_parser, serve_forever

from .app import create_app
from .state import DEFAULT_RATE


def serve(host: str = "127.0.0.1", port: int = 8026, rate: float = DEFAULT_RATE) -> None:
    """Serve a fresh emulator until interrupted (blocking)."""
    serve_forever(create_app(rate=rate), host, port)


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point."""
    parser = cli_parser(
        "sendex", "Local Sendex audiences API emulator.", port=8026, rate=DEFAULT_RATE
    )
    args = parser.parse_args(argv)
    serve(args.host, args.port, args.rate)
