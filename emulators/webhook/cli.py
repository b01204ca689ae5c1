"""Run the receiver from a shell: ``python -m emulators.webhook --port 8027 --secret s``."""

from __future__ import annotations

from collections.abc import Sequence

from emulators.server import cli_parser, serve_forever

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
    """Command-line entry point."""
    parser = cli_parser(
        "webhook",
        "Local audiencesync webhook receiver.",
        port=8027,
        rate=DEFAULT_RATE,
        rate_help="requests per second",
    )
    parser.add_argument("--secret", default=DEFAULT_SECRET, help="the signing secret")
    args = parser.parse_args(argv)
    serve(args.host, args.port, args.rate, args.secret)
