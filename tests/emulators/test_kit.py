"""The emulator toolkit on its own, through a tiny made-up service over real HTTP.

The service ("Thingy") deliberately differs from Resend in every pluggable aspect:
``application/problem+json`` errors, a custom auth header, no budget headers, a
different email field, so these tests show the kit does not assume Resend anywhere.
"""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from emulators.kit import (
    RETRY_AFTER_ONLY,
    ApiError,
    ConfigOption,
    Emulator,
    ErrorFormat,
    RateLimiter,
    Window,
    account_key,
    basic_credentials,
)
from emulators.server import EmulatorServer

PROBLEM = "application/problem+json"


def problem(error: ApiError) -> dict[str, Any]:
    return {
        "type": f"https://errors.example/{error.code}",
        "title": error.code,
        "status": error.status,
        "detail": error.message,
        "instance": "",
    }


class Thingy(Emulator):
    """A made-up service: ``X-Key`` auth, problem+json errors, ``email_address`` fields."""

    def __init__(self, **limits: Any) -> None:
        self.flavour = "plain"
        self.release = threading.Event()
        self.things: dict[str, list[str]] = {}
        super().__init__(
            errors=ErrorFormat(problem, media_type=PROBLEM, codes={404: "Resource Not Found"}),
            authenticate=self._auth,
            rate_headers=RETRY_AFTER_ONLY,
            emails_of=lambda route, body: self._emails(body),
            options=[ConfigOption("flavour", lambda: self.flavour, self._set_flavour)],
            on_reset=self.things.clear,
            describe_accounts=lambda: {key: len(v) for key, v in self.things.items()},
            **limits,
        )

    def _auth(self, request: Request) -> str:
        key = request.headers.get("x-key")
        if not key:
            raise self.errors.error(401, "Unauthorized", "No key.")
        return key

    def _set_flavour(self, value: Any) -> None:
        if not isinstance(value, str):
            raise ValueError("`flavour` must be a string.")
        self.flavour = value

    @staticmethod
    def _emails(body: Any) -> Iterable[str]:
        members = body.get("members", []) if isinstance(body, dict) else []
        return [m["email_address"] for m in members if isinstance(m, dict)]


async def add_things(request: Request) -> JSONResponse:
    emu: Thingy = request.app.state.emulator
    body = await request.json()
    emails = [m["email_address"] for m in body["members"]]
    emu.things.setdefault(account_key(request), []).extend(emails)
    return JSONResponse({"added": emails})


async def slow(request: Request) -> JSONResponse:
    emu: Thingy = request.app.state.emulator
    while not emu.release.is_set():
        await asyncio.sleep(0.005)
    return JSONResponse({"ok": True})


async def crash(request: Request) -> JSONResponse:
    raise RuntimeError("boom")


ROUTES = [
    Route("/things", add_things, methods=["POST"]),
    Route("/things", slow, methods=["GET"]),
    Route("/crash", crash, methods=["GET"]),
]


@pytest.fixture
def thingy() -> Iterator[tuple[Thingy, EmulatorServer]]:
    emu = Thingy(rate=1000, concurrency=2)
    with EmulatorServer(emu.app(ROUTES)) as server:
        yield emu, server


def client(server: EmulatorServer, key: str = "k1") -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"X-Key": key}, timeout=10)


def assert_problem(response: httpx.Response, status: int, title: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status and body["title"] == title and body["detail"]


def test_errors_use_the_service_renderer_everywhere(
    thingy: tuple[Thingy, EmulatorServer],
) -> None:
    _emu, server = thingy
    assert_problem(httpx.get(server.url + "/things"), 401, "Unauthorized")
    with client(server) as c:
        assert_problem(c.get("/nowhere"), 404, "Resource Not Found")
        assert_problem(c.get("/crash"), 500, "internal_server_error")
        assert "ratelimit-limit" not in c.post("/things", json={"members": []}).headers
    assert_problem(
        httpx.post(server.url + "/_emulator/faults", json={"status": 200}), 400, "bad_request"
    )


def test_concurrency_cap_refuses_the_extra_request(thingy: tuple[Thingy, EmulatorServer]) -> None:
    emu, server = thingy
    with client(server) as c, client(server, "k2") as other, ThreadPoolExecutor(2) as pool:
        held = [pool.submit(c.get, "/things") for _ in range(2)]
        deadline = 200
        while emu.limiter.in_flight("k1") < 2 and deadline:
            threading.Event().wait(0.01)
            deadline -= 1
        refused = c.get("/things")
        assert_problem(refused, 429, "too_many_requests")
        assert refused.headers["retry-after"] == "1"
        assert other.post("/things", json={"members": []}).status_code == 200  # per account
        emu.release.set()
        assert [f.result().status_code for f in held] == [200, 200]
        assert emu.limiter.in_flight("k1") == 0
        assert c.get("/things").status_code == 200
    stats = httpx.get(server.url + "/_emulator/stats").json()
    assert stats["rate_limited"] == 1
    assert stats["by_status"]["429"] == 1


def test_route_windows_over_http(thingy: tuple[Thingy, EmulatorServer]) -> None:
    emu, server = thingy
    emu.release.set()
    limits = {"GET /things": [{"limit": 2, "seconds": 1}, {"limit": 3, "seconds": 60}]}
    config = httpx.post(server.url + "/_emulator/config", json={"route_limits": limits}).json()
    assert config["route_limits"] == {
        "GET /things": [{"limit": 2, "seconds": 1.0}, {"limit": 3, "seconds": 60.0}]
    }
    with client(server) as c:
        assert [c.get("/things").status_code for _ in range(2)] == [200, 200]
        refused = c.get("/things")
        assert_problem(refused, 429, "too_many_requests")
        assert refused.headers["retry-after"] == "1"
        assert "ratelimit-remaining" not in refused.headers
        # Other routes keep the default rate.
        assert c.post("/things", json={"members": []}).status_code == 200


def test_multi_window_arithmetic() -> None:
    now = [0.0]
    limiter = RateLimiter(
        1000, routes={"GET /x": [Window(2, 1), Window(3, 60)]}, clock=lambda: now[0]
    )
    assert [limiter.check("a", "GET /x").allowed for _ in range(3)] == [True, True, False]
    burst = limiter.check("a", "GET /x")
    assert (burst.limit, burst.retry_after) == (2, 1)
    now[0] = 1.0
    third = limiter.check("a", "GET /x")
    assert third.allowed and (third.limit, third.remaining) == (3, 0)
    now[0] = 2.0
    steady = limiter.check("a", "GET /x")
    assert not steady.allowed and steady.limit == 3 and steady.retry_after == 58
    assert limiter.check("b", "GET /x").allowed  # per account
    assert limiter.check("a", "GET /y").allowed  # other routes use the default rate
    now[0] = 60.5
    assert limiter.check("a", "GET /x").allowed


def test_email_rules_read_the_service_field_and_keep_the_body(
    thingy: tuple[Thingy, EmulatorServer],
) -> None:
    _emu, server = thingy
    admin = server.url + "/_emulator"
    httpx.post(admin + "/faults", json={"status": 400, "reject_emails": ["Bad@X.com"]})
    with client(server) as c:
        rejected = c.post("/things", json={"members": [{"email_address": "bad@x.com"}]})
        assert_problem(rejected, 400, "bad_request")
        assert "bad@x.com" in rejected.json()["detail"]
        ok = c.post("/things", json={"members": [{"email_address": "ok@x.com"}]})
        assert ok.json() == {"added": ["ok@x.com"]}
    assert httpx.get(admin + "/accounts").json() == {"k1": 1}
    assert httpx.get(admin + "/stats").json()["faulted"] == 1


def test_admin_shape_and_service_options(thingy: tuple[Thingy, EmulatorServer]) -> None:
    _emu, server = thingy
    admin = server.url + "/_emulator"
    config = httpx.get(admin + "/config").json()
    assert config == {
        "rate": 1000,
        "route_limits": {},
        "concurrency": 2,
        "require_user_agent": False,
        "flavour": "plain",
    }
    changed = httpx.post(admin + "/config", json={"flavour": "spicy", "concurrency": None})
    assert changed.json()["flavour"] == "spicy" and changed.json()["concurrency"] is None
    assert httpx.post(admin + "/config", json={"flavour": 3}).status_code == 400
    assert httpx.post(admin + "/config", json={"concurrency": 0}).status_code == 400
    assert httpx.post(admin + "/faults", json={"status": 503, "count": 1}).status_code == 201
    with client(server) as c:
        faulted = c.post("/things", json={"members": []})
        assert_problem(faulted, 503, "service_unavailable")
        assert faulted.headers["retry-after"] == "1"
        c.post("/things", json={"members": [{"email_address": "a@x.com"}]})
    assert httpx.post(admin + "/reset").json() == {"reset": True}
    assert httpx.get(admin + "/accounts").json() == {}
    assert httpx.get(admin + "/health").json() == {"ok": True}


def test_basic_credentials() -> None:
    token = base64.b64encode(b"any:key-us1").decode()
    assert basic_credentials(Headers({"Authorization": f"Basic {token}"})) == ("any", "key-us1")
    assert basic_credentials(Headers({"Authorization": "Basic !!"})) is None
    assert basic_credentials(Headers({"Authorization": f"Bearer {token}"})) is None
