"""Fixtures for the emulator tests: one real HTTP server, contract-checking clients.

Every client made here validates each exchange against the bundled Resend OpenAPI
spec through an httpx response hook, so every answer any test receives is also a
contract check.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from emulators.resend import ResendEmulatorState, create_app
from emulators.resend.contract import in_spec, validate_exchange
from emulators.server import EmulatorServer

FAST_RATE = 1000.0
API_KEY = "re_test_key"


class Recorder:
    """Collects the exchanges that were contract-checked."""

    def __init__(self) -> None:
        self.checked: list[tuple[str, str, int]] = []

    def hook(self, response: httpx.Response) -> None:
        response.read()
        validate_exchange(response.request, response)
        if in_spec(response.request):
            request = response.request
            self.checked.append((request.method, request.url.path, response.status_code))


@pytest.fixture(scope="session")
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(create_app(rate=FAST_RATE)) as srv:
        yield srv


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
    clients: list[httpx.Client] = []

    def make(
        key: str | None = API_KEY, user_agent: str | None = "audiencesync-tests/1"
    ) -> httpx.Client:
        headers = {}
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        client = httpx.Client(
            base_url=emulator.url,
            headers=headers,
            event_hooks={"response": [recorder.hook]},
            timeout=30,
        )
        # httpx always sends its own User-Agent unless told otherwise.
        if user_agent is None:
            del client.headers["User-Agent"]
        else:
            client.headers["User-Agent"] = user_agent
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client: Callable[..., httpx.Client]) -> httpx.Client:
    return make_client()


@pytest.fixture
def admin(emulator: EmulatorServer) -> Iterator[httpx.Client]:
    """Client for the ``/_emulator`` control endpoints (no auth needed)."""
    with httpx.Client(base_url=emulator.url + "/_emulator", timeout=30) as client:
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
