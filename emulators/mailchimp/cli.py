"""Run the emulator from a shell: ``python -m emulators.mailchimp --port 8026 --rate 100``."""

from __future__ import annotations

from collections.abc import Sequence

from emulators.server import api_keys_of, cli_parser, serve_forever

from .app import create_app


def serve(
    host: str = "127.0.0.1",
    port: int = 8026,
    rate: float = 100.0,
    api_keys: set[str] | None = None,
    datacenter: str | None = None,
) -> None:
    """Serve a fresh emulator until interrupted (blocking)."""
    serve_forever(create_app(rate=rate, api_keys=api_keys, datacenter=datacenter), host, port)


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point."""
    parser = cli_parser(
        "mailchimp",
        "Local Mailchimp Marketing API v3 emulator (paths under /3.0).",
        port=8026,
        rate=100.0,
        api_keys="any key shaped <hex>-<dc>",
    )
    parser.add_argument("--datacenter", help="refuse keys of other datacenters (e.g. us6)")
    args = parser.parse_args(argv)
    serve(args.host, args.port, args.rate, api_keys_of(args), args.datacenter)
