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
from shared.delivery.limiter import AccountLimiter
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
            lim.acquire()
            stamps.append(time.monotonic())
            lim.release(None)

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
        lim.acquire()
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        time.sleep(0.2)  # a slow request being served
        with lock:
            in_flight -= 1
        lim.release(None)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak == 2


def test_a_429_blocks_the_whole_account() -> None:
    key = f"test:{uuid.uuid4().hex}"
    first, second = (AccountLimiter(REDIS_URL, key, rate=1000) for _ in range(2))
    first.acquire()
    first.release(httpx.Response(429, headers={"retry-after": "1"}))
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
    # Two workers at full speed would collect dozens of 429s; sharing the budget, almost none.
    assert stats["rate_limited"] <= 3, stats
    emulator(resend.url, "POST", "/config", json={"rate": 200})
    assert len(destination_contacts(resend.url)) == 30
