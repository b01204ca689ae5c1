"""Run the emulator from a shell: ``python -m emulators.klaviyo --port 8026 --rate 100``."""

from __future__ import annotations

from collections.abc import Sequence

from emulators.server import api_keys_of, cli_parser, serve_forever

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
    parser = cli_parser(
        "klaviyo",
        "Local Klaviyo profiles/lists emulator.",
        port=8026,
        rate=100.0,
        rate_help="requests per second per key on routes the spec gives no limit",
        api_keys="any key starting with pk_",
    )
    parser.add_argument(
        "--no-spec-limits",
        action="store_true",
        help="use --rate everywhere instead of the spec's per-endpoint burst/steady limits",
    )
    args = parser.parse_args(argv)
    serve(args.host, args.port, args.rate, api_keys_of(args), spec_limits=not args.no_spec_limits)
