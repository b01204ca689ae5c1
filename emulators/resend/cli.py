"""Run the emulator from a shell: ``python -m emulators.resend --port 8025 --rate 2``."""

from __future__ import annotations

from collections.abc import Sequence

from emulators.server import api_keys_of, cli_parser, serve_forever

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
    parser = cli_parser(
        "resend",
        "Local Resend Contacts API emulator.",
        port=8025,
        rate=2.0,
        api_keys="any key starting with re_",
    )
    args = parser.parse_args(argv)
    serve(args.host, args.port, args.rate, api_keys_of(args))
