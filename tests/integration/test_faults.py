"""Faults: a worker killed mid-run, a run never published, duplicate and poison deliveries."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx

from shared.config import get_settings
from shared.db.models import AudienceSync, SyncRun
from shared.db.session import get_sessionmaker, session_scope
from shared.db.types import utcnow
from shared.execution import execute_run
from shared.runs import create_run
from tests.conftest import Processes, WorkspaceClient, make_sync, wait_until
from tests.integration.test_runs import (
    destination_contacts,
    emulator,
    load,
    people,
    trigger,
    wait_run,
)


def run_row(run_id: str) -> SyncRun:
    with session_scope() as session:
        return session.get_one(SyncRun, run_id)


def test_a_worker_killed_mid_run_is_replaced_and_the_destination_ends_exact(
    ws: WorkspaceClient, resend: Any, processes: Processes
) -> None:
    emulator(resend.url, "POST", "/config", json={"rate": 4})
    load(ws.id, people(30))
    sync = make_sync(ws, resend.url, "mirror")
    first = processes.worker()
    processes.beat()

    run = trigger(ws, sync["id"])
    wait_until(lambda: run_row(run["id"]).processed >= 10, timeout=60)
    processes.kill(first)  # SIGKILL, the whole process group, mid-run
    assert run_row(run["id"]).status == "running"

    processes.worker()
    done = wait_run(ws, sync["id"], run["id"], timeout=120)
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 2, "a second delivery resumed the run"
    assert done["added"] == 30 and done["failed"] == 0
    held = destination_contacts(resend.url)
    assert set(held) == {f"user{i:04d}@example.com" for i in range(30)}
    creates = emulator(resend.url, "GET", "/stats")["by_route"].get("POST /contacts", 0)
    # Confirmed batches are never sent again; at most the batch in flight at the kill is.
    assert 30 <= creates <= 30 + 10


def test_a_run_that_was_never_published_is_picked_up_by_the_sweeper(
    ws: WorkspaceClient, resend: Any, processes: Processes
) -> None:
    """The outbox: the run row committed, then the process died before publishing."""
    load(ws.id, people(4))
    sync = make_sync(ws, resend.url, "mirror")
    with session_scope() as session:
        run_id = create_run(session, session.get_one(AudienceSync, sync["id"]), "api").id
    processes.worker()
    processes.beat()
    done = wait_run(ws, sync["id"], run_id, timeout=60)
    assert done["status"] == "succeeded" and done["added"] == 4
    assert len(destination_contacts(resend.url)) == 4


def test_a_duplicate_delivery_of_a_finished_run_does_nothing(
    ws: WorkspaceClient, resend: Any
) -> None:
    load(ws.id, people(3))
    sync = make_sync(ws, resend.url, "mirror")
    with session_scope() as session:
        run_id = create_run(session, session.get_one(AudienceSync, sync["id"]), "api").id
    settings, sessions = get_settings(), get_sessionmaker()
    assert execute_run(run_id, settings, sessions) == "succeeded"
    requests = emulator(resend.url, "GET", "/stats")["requests"]
    assert execute_run(run_id, settings, sessions) == "not_claimed"
    assert emulator(resend.url, "GET", "/stats")["requests"] == requests
    assert run_row(run_id).attempts == 1


def test_a_run_delivered_too_many_times_is_failed_not_looped(
    ws: WorkspaceClient, resend: Any
) -> None:
    load(ws.id, people(2))
    sync = make_sync(ws, resend.url, "mirror")
    settings = get_settings()
    with session_scope() as session:
        run = create_run(session, session.get_one(AudienceSync, sync["id"]), "api")
        run.status = "running"
        run.attempts = settings.max_deliveries
        run.heartbeat_at = utcnow() - timedelta(minutes=5)
        run_id = run.id
    assert execute_run(run_id, settings, get_sessionmaker()) == "failed"
    failed = run_row(run_id)
    assert "gave up" in failed.error
    assert httpx.get(f"{resend.url}/_emulator/stats").json()["requests"] == 0
    # The sync is runnable again.
    assert ws.post(f"/audience-syncs/{sync['id']}/trigger").status_code == 201
