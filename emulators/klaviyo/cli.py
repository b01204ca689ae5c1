"""Run the emulator from a shell: ``python -m emulators.klaviyo --port 8026 --rate 100``."""

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
    spec_limits: bool = True,
) -> None:
    """Serve a fresh emulator until interrupted (blocking)."""
    app = create_app(rate=rate, api_keys=api_keys, spec_limits=spec_limits)
    serve_forever(app, host, port)


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m emulators.klaviyo", description="Local Klaviyo profiles/lists emulator."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8026)
    parser.add_argument(
        "--rate",
        type=float,
        default=100.0,
        help="requests per second per key on routes the spec gives no limit",
    )
    parser.add_argument(
        "--no-spec-limits",
        action="store_true",
        help="use --rate everywhere instead of the spec's per-endpoint burst/steady limits",
    )
    parser.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        help="accept only this key (repeatable); default: any key starting with pk_",
    )
    args = parser.parse_args(argv)
    keys = set(args.api_keys) if args.api_keys else None
    serve(args.host, args.port, args.rate, keys, spec_limits=not args.no_spec_limits)
