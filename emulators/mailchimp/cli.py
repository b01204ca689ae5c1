"""Run the emulator from a shell: ``python -m emulators.mailchimp --port 8026 --rate 100``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from emulators.server import serve_forever

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
    parser = argparse.ArgumentParser(
        prog="python -m emulators.mailchimp",
        description="Local Mailchimp Marketing API v3 emulator (paths under /3.0).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8026)
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second per key")
    parser.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        help="accept only this key (repeatable); default: any key shaped <hex>-<dc>",
    )
    parser.add_argument("--datacenter", help="refuse keys of other datacenters (e.g. us6)")
    args = parser.parse_args(argv)
    keys = set(args.api_keys) if args.api_keys else None
    serve(args.host, args.port, args.rate, keys, args.datacenter)
