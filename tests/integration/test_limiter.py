"""The account limiter shared through Redis: rate, in-flight cap, and the service's own word."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import httpx
import pytest

from shared.db.models import Destination
from shared.db.session import session_scope
from shared.delivery.limiter import AccountLimiter, RouteLimit
from tests.conftest import REDIS_URL, Processes, WorkspaceClient, make_sync
from tests.integration.test_runs import (
    destination_contacts,
    emulator,
    load,
    people,
    trigger,
    wait_run,
)


def test_requests_are_spaced_at_the_rate_across_limiters_of_one_account() -> None:
    key = f"test:{uuid.uuid4().hex}"
    limiters = [AccountLimiter(REDIS_URL, key, rate=20) for _ in range(2)]  # two "workers"
    stamps: list[float] = []

    def work(lim: AccountLimiter) -> None:
        for _ in range(10):
            admission = lim.acquire()
            stamps.append(time.monotonic())
            lim.release(admission, None)

    threads = [threading.Thread(target=work, args=(lim,)) for lim in limiters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stamps.sort()
    assert stamps[-1] - stamps[0] >= 19 / 20 * 0.9, "20 requests at 20/s take about a second"


def test_in_flight_requests_are_capped_per_account() -> None:
    key = f"test:{uuid.uuid4().hex}"
    in_flight, peak, lock = 0, 0, threading.Lock()

    def work() -> None:
        nonlocal in_flight, peak
        lim = AccountLimiter(REDIS_URL, key, rate=1000, concurrency=2)
        admission = lim.acquire()
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        time.sleep(0.2)  # a slow request being served
        with lock:
            in_flight -= 1
        lim.release(admission, None)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak == 2


def test_a_429_blocks_the_whole_account() -> None:
    key = f"test:{uuid.uuid4().hex}"
    first, second = (AccountLimiter(REDIS_URL, key, rate=1000) for _ in range(2))
    first.release(first.acquire(), httpx.Response(429, headers={"retry-after": "1"}))
    started = time.monotonic()
    second.acquire()
    assert time.monotonic() - started >= 0.9


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_workers_syncing_to_one_account_share_its_limit(
    ws: WorkspaceClient, resend: Any, processes: Processes
) -> None:
    emulator(resend.url, "POST", "/config", json={"rate": 5})
    load(ws.id, people(30))
    first = make_sync(ws, resend.url, "upsert")
    second = make_sync(ws, resend.url, "upsert")
    with session_scope() as session:
        for sync in (first, second):
            destination = session.get_one(Destination, sync["destination_id"])
            destination.config = {**destination.config, "rate_limit": 5}
    processes.worker()
    processes.worker()
    runs = [trigger(ws, sync["id"]) for sync in (first, second)]
    done = [
        wait_run(ws, sync["id"], run["id"], timeout=120)
        for sync, run in zip((first, second), runs, strict=True)
    ]
    assert [run["status"] for run in done] == ["succeeded", "succeeded"]
    stats = emulator(resend.url, "GET", "/stats")
    # Two workers at full speed would collect dozens of 429s; sharing the budget, a handful at
    # most (requests paced exactly at the rate can bunch up on the wire into the emulator's
    # sliding window).
    assert stats["rate_limited"] <= 6, stats
    emulator(resend.url, "POST", "/config", json={"rate": 200})
    assert len(destination_contacts(resend.url)) == 30


def test_an_endpoint_with_its_own_limit_neither_spends_nor_waits_for_the_accounts() -> None:
    """Klaviyo limits each endpoint on its own: a slow endpoint's pace holds back only itself."""
    key = f"test:{uuid.uuid4().hex}"
    slow = RouteLimit("POST", "/api/lists/{id}/relationships/profiles", rate=2)
    limiter = AccountLimiter(REDIS_URL, key, rate=1000, routes=[slow])
    started = time.monotonic()
    for _ in range(3):  # 3 at 2/s: the third waits about a second
        limiter.release(limiter.acquire("POST", "/api/lists/L1/relationships/profiles"), None)
    slow_took = time.monotonic() - started
    started = time.monotonic()
    for _ in range(20):
        limiter.release(limiter.acquire("POST", "/api/profile-import"), None)
    assert slow_took >= 0.9
    assert time.monotonic() - started < 0.5, "the account's rate was not spent by the slow route"


def test_a_429_on_one_endpoint_blocks_only_that_endpoint() -> None:
    key = f"test:{uuid.uuid4().hex}"
    route = RouteLimit("GET", "/api/lists/{id}/profiles", rate=1000)
    limiter = AccountLimiter(REDIS_URL, key, rate=1000, routes=[route])
    refused = limiter.acquire("GET", "/api/lists/L1/profiles?page[size]=100")
    limiter.release(refused, httpx.Response(429, headers={"retry-after": "1"}))
    started = time.monotonic()
    limiter.release(limiter.acquire("POST", "/api/profile-import"), None)
    assert time.monotonic() - started < 0.5
    limiter.release(limiter.acquire("GET", "/api/lists/L2/profiles"), None)
    assert time.monotonic() - started >= 0.9


@pytest.mark.parametrize(
    ("method", "path", "matches"),
    [
        ("GET", "/api/lists/abc/profiles", True),
        ("get", "/api/lists/abc/profiles", True),
        ("POST", "/api/lists/abc/profiles", False),
        ("GET", "/api/lists/abc/def/profiles", False),
        ("GET", "/api/lists//profiles", False),
        ("GET", "/api/lists/abc/profiles/x", False),
    ],
)
def test_a_route_template_matches_one_segment_per_placeholder(
    method: str, path: str, matches: bool
) -> None:
    assert RouteLimit("GET", "/api/lists/{id}/profiles", 1).matches(method, path) is matches
