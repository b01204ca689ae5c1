"""Run any ASGI app with uvicorn: in a background thread for tests, or in the foreground.

Tests need a real HTTP server (real sockets, real headers, real timing for rate limits)
that starts fast, picks a free port and shuts down cleanly; the CLI needs the same app
served in the foreground, with the same options for every service (:func:`cli_parser`).
"""

from __future__ import annotations

import argparse
import socket
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn


class EmulatorServer:
    """``with EmulatorServer(app) as server: httpx.get(server.url + "/...")``."""

    def __init__(
        self,
        app: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        log_level: str = "warning",
        startup_timeout: float = 10.0,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.log_level = log_level
        self.startup_timeout = startup_timeout
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321`` (valid once started)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> EmulatorServer:
        """Bind, start serving in a daemon thread and wait until it accepts connections."""
        if self._thread is not None:
            raise RuntimeError("server already started")
        # Binding here (not inside uvicorn) gives the real port before the thread runs.
        # IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on sockets that say TCP,
        # and without it every response waits ~40 ms for a delayed ACK.
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self._socket = sock
        config = uvicorn.Config(
            self.app, log_level=self.log_level, lifespan="off", access_log=False
        )
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="emulator-server", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + self.startup_timeout
        while not server.started:
            if not self._thread.is_alive():
                raise RuntimeError("emulator server thread exited during startup")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"emulator server did not start within {self.startup_timeout}s")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Ask uvicorn to exit and wait for the thread; safe to call twice."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        if self._socket is not None:
            self._socket.close()
        self._server = None
        self._thread = None
        self._socket = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve_forever(app: Any, host: str = "127.0.0.1", port: int = 8025) -> None:
    """Serve ``app`` in the foreground until interrupted (for the CLI)."""
    uvicorn.run(app, host=host, port=port, log_level="info")


def cli_parser(
    service: str,
    description: str,
    *,
    port: int,
    rate: float,
    rate_help: str = "requests per second per key",
    api_keys: str | None = None,
) -> argparse.ArgumentParser:
    """The options of ``python -m emulators.<service>``: ``--host``, ``--port``, ``--rate``
    and, when ``api_keys`` says which keys are accepted by default, a repeatable
    ``--api-key`` (read it with :func:`api_keys_of`)."""
    parser = argparse.ArgumentParser(prog=f"python -m emulators.{service}", description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=port)
    parser.add_argument("--rate", type=float, default=rate, help=rate_help)
    if api_keys is not None:
        parser.add_argument(
            "--api-key",
            action="append",
            dest="api_keys",
            help=f"accept only this key (repeatable); default: {api_keys}",
        )
    return parser


def api_keys_of(args: argparse.Namespace) -> set[str] | None:
    """The ``--api-key`` values, ``None`` when none was given (the default keys)."""
    return set(args.api_keys) if args.api_keys else None
