"""Fixtures and helpers for the emulator tests: real HTTP servers, contract-checking clients.

The fixtures here serve the Resend emulator (``emulator``, ``client``, ``admin``...). Every
client validates each exchange against the service's contract through an httpx response
hook (:class:`Recorder`), so every answer any test receives is also a contract check. Test
modules of other services override ``server`` with their own emulator, which ``admin``
then controls, and build their clients with :class:`Clients`.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

import httpx
import pytest

from emulators.resend import ResendEmulatorState, create_app
from emulators.resend.contract import in_spec, validate_exchange
from emulators.server import EmulatorServer
from tests.conftest import ROOT

FAST_RATE = 1000.0
API_KEY = "re_test_key"


class Recorder:
    """A response hook validating every exchange with a service's ``validate_exchange``,
    collecting those its ``in_spec`` documents."""

    def __init__(
        self,
        validate: Callable[[httpx.Request, httpx.Response], None] = validate_exchange,
        documented: Callable[[httpx.Request], bool] = in_spec,
    ) -> None:
        self.validate = validate
        self.documented = documented
        self.checked: list[tuple[str, str, int]] = []

    def hook(self, response: httpx.Response) -> None:
        response.read()
        self.validate(response.request, response)
        if self.documented(response.request):
            request = response.request
            self.checked.append((request.method, request.url.path, response.status_code))


class Clients:
    """Makes httpx clients of one server that share response hooks; closes them all on exit."""

    def __init__(self, base_url: str, *hooks: Callable[[httpx.Response], None]) -> None:
        self.base_url = base_url
        self.hooks = list(hooks)
        self.clients: list[httpx.Client] = []

    def make(self, headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Client:
        client = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            event_hooks={"response": self.hooks},
            timeout=30,
            **kwargs,
        )
        self.clients.append(client)
        return client

    def __enter__(self) -> Clients:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for client in self.clients:
            client.close()


def admin_client(server: EmulatorServer) -> httpx.Client:
    """A client of the ``/_emulator`` control endpoints (no auth needed)."""
    return httpx.Client(base_url=server.url + "/_emulator", timeout=30)


def cli_config(module: str, *args: str) -> dict[str, Any]:
    """Start ``python -m <module> --port <free> *args``; its ``/_emulator/config`` once up."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", module, "--port", str(port), *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                config: dict[str, Any] = httpx.get(
                    f"http://127.0.0.1:{port}/_emulator/config"
                ).json()
                return config
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.1)
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(create_app(rate=FAST_RATE)) as srv:
        yield srv


@pytest.fixture
def server(emulator: EmulatorServer) -> EmulatorServer:
    """The emulator under test; modules of other services override it with their own."""
    return emulator


@pytest.fixture
def emulator_state(emulator: EmulatorServer) -> ResendEmulatorState:
    """The in-memory state behind the session's emulator, for direct inspection."""
    state: ResendEmulatorState = emulator.app.state.emulator
    return state


@pytest.fixture(autouse=True)
def _clean_emulator(emulator: EmulatorServer) -> Iterator[None]:
    """Each test starts from an empty emulator with the fast default config."""
    state: ResendEmulatorState = emulator.app.state.emulator
    state.reset()
    state.limiter.set_rate(FAST_RATE)
    state.require_user_agent = True
    state.import_delay = 0.0
    yield
    state.wait_for_imports()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def make_client(
    emulator: EmulatorServer, recorder: Recorder
) -> Iterator[Callable[..., httpx.Client]]:
    """``make_client(key=..., user_agent=...)``: a contract-checked client."""
    with Clients(emulator.url, recorder.hook) as clients:

        def make(
            key: str | None = API_KEY, user_agent: str | None = "audiencesync-tests/1"
        ) -> httpx.Client:
            client = clients.make({"Authorization": f"Bearer {key}"} if key is not None else {})
            # httpx always sends its own User-Agent unless told otherwise.
            if user_agent is None:
                del client.headers["User-Agent"]
            else:
                client.headers["User-Agent"] = user_agent
            return client

        yield make


@pytest.fixture
def client(make_client: Callable[..., httpx.Client]) -> httpx.Client:
    return make_client()


@pytest.fixture
def admin(server: EmulatorServer) -> Iterator[httpx.Client]:
    """Client for the ``/_emulator`` control endpoints of ``server``."""
    with admin_client(server) as client:
        yield client


def wait_for_import(client: httpx.Client, import_id: str, timeout: float = 30.0) -> dict[str, Any]:
    """Poll an import until it is completed or failed, failing past ``timeout``."""
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while True:
        body: dict[str, Any] = client.get(f"/contacts/imports/{import_id}").json()
        seen.append(body["status"])
        if body["status"] in ("completed", "failed"):
            body["_seen_statuses"] = seen
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"import {import_id} still {body['status']} after {timeout}s")
        time.sleep(0.02)


@pytest.fixture
def await_import() -> Callable[..., dict[str, Any]]:
    return wait_for_import
