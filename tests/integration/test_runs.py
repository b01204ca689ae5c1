"""Runs end to end: API -> Redis -> a real Celery worker process -> Resend emulator -> history.

Each test runs on SQLite and on PostgreSQL (the ``db`` fixture), with real Redis.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from shared.contacts import upsert_contacts
from shared.db.models import AudienceSync, SyncState
from shared.db.session import session_scope
from tests.conftest import DATA_DIR, Processes, WorkspaceClient, make_sync, wait_until

NOW = datetime.now(UTC)
FINISHED = {"succeeded", "partial", "failed"}


def people(
    count: int, start: int = 0, active: bool = True, plan: str = "free"
) -> list[dict[str, Any]]:
    seen = NOW - (timedelta(days=1) if active else timedelta(days=90))
    return [
        {
            "email": f"user{i:04d}@example.com",
            "first_name": f"First{i}",
            "last_active_at": seen,
            "properties": {"plan": plan},
        }
        for i in range(start, start + count)
    ]


def load(workspace_id: str, rows: list[dict[str, Any]]) -> None:
    with session_scope() as session:
        upsert_contacts(session, workspace_id, rows)


def trigger(ws: WorkspaceClient, sync_id: str) -> dict[str, Any]:
    response = ws.post(f"/audience-syncs/{sync_id}/trigger")
    assert response.status_code == 201, response.text
    run: dict[str, Any] = response.json()
    return run


def wait_run(ws: WorkspaceClient, sync_id: str, run_id: str, timeout: float = 90) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        run: dict[str, Any] = ws.get(f"/audience-syncs/{sync_id}/runs/{run_id}").json()
        return run if run["status"] in FINISHED else None

    result: dict[str, Any] = wait_until(finished, timeout=timeout, interval=0.2)
    return result


def run_once(ws: WorkspaceClient, sync_id: str) -> dict[str, Any]:
    return wait_run(ws, sync_id, trigger(ws, sync_id)["id"])


def destination_contacts(url: str, key: str = "re_test_key") -> dict[str, dict[str, Any]]:
    """Everything the emulator holds, read through Resend's own endpoints (waiting out its
    rate limit as the service asks)."""
    headers = {"Authorization": f"Bearer {key}", "User-Agent": "tests"}

    def get(client: httpx.Client, path: str, **params: Any) -> Any:
        while True:
            response = client.get(path, params=params)
            if response.status_code != 429:
                assert response.status_code == 200, response.text
                return response.json()
            time.sleep(float(response.headers["retry-after"]))

    contacts: dict[str, dict[str, Any]] = {}
    after = None
    with httpx.Client(base_url=url, headers=headers) as client:
        while True:
            body = get(client, "/contacts", limit=100, **({"after": after} if after else {}))
            for item in body["data"]:
                contacts[item["email"]] = get(client, f"/contacts/{item['id']}")
            if not body["has_more"]:
                return contacts
            after = body["data"][-1]["id"]


def emulator(url: str, method: str, path: str, **kwargs: Any) -> Any:
    response = httpx.request(method, f"{url}/_emulator{path}", **kwargs)
    assert response.status_code < 300, response.text
    return response.json()


@pytest.fixture
def worker(processes: Processes) -> Processes:
    processes.worker()
    return processes


def test_mirror_runs_keep_the_destination_equal_to_the_audience(
    ws: WorkspaceClient, resend: Any, worker: Processes
) -> None:
    load(ws.id, people(30) + people(10, start=30, active=False))
    sync = make_sync(ws, resend.url, "mirror")

    first = run_once(ws, sync["id"])
    assert first["status"] == "succeeded", first
    assert (first["added"], first["updated"], first["removed"], first["failed"]) == (30, 0, 0, 0)
    held = destination_contacts(resend.url)
    assert set(held) == {f"user{i:04d}@example.com" for i in range(30)}
    assert held["user0003@example.com"]["first_name"] == "First3"
    assert held["user0003@example.com"]["properties"]["plan"] == "free"

    # 5 leave, 5 join, 5 change plan.
    load(ws.id, people(5, active=False) + people(5, start=30) + people(5, start=10, plan="pro"))
    second = run_once(ws, sync["id"])
    assert second["status"] == "succeeded", second
    assert (second["added"], second["updated"], second["removed"]) == (5, 5, 5)
    assert second["unchanged"] == 20
    held = destination_contacts(resend.url)
    assert set(held) == {f"user{i:04d}@example.com" for i in range(5, 35)}
    assert held["user0012@example.com"]["properties"]["plan"] == "pro"

    third = run_once(ws, sync["id"])
    assert third["status"] == "succeeded"
    assert third["destination_requests"] == 0, "an unchanged audience makes no call"
    assert third["unchanged"] == 30

    sync_now = ws.get(f"/audience-syncs/{sync['id']}").json()
    assert sync_now["last_run_id"] == third["id"]
    assert sync_now["last_synced_at"] is not None
    history = ws.get(f"/audience-syncs/{sync['id']}/runs").json()
    assert [run["id"] for run in history] == [third["id"], second["id"], first["id"]]


def test_a_contact_the_destination_refuses_fails_alone_and_is_retried(
    ws: WorkspaceClient, resend: Any, worker: Processes
) -> None:
    load(ws.id, people(12))
    sync = make_sync(ws, resend.url, "upsert")
    emulator(
        resend.url,
        "POST",
        "/faults",
        json={"reject_emails": ["user0004@example.com"], "status": 422},
    )

    run = run_once(ws, sync["id"])
    assert run["status"] == "partial"
    assert (run["added"], run["failed"]) == (11, 1)
    [error] = run["errors"]
    assert error["member_key"] == "user0004@example.com"
    assert error["status_code"] == 422
    assert "validation_error" in error["message"]
    assert "user0004@example.com" not in destination_contacts(resend.url)
    with session_scope() as session:
        state = session.get_one(SyncState, (sync["id"], "user0004@example.com"))
        assert state.status == "failed" and "validation_error" in state.last_error

    emulator(resend.url, "DELETE", "/faults")
    retry = run_once(ws, sync["id"])
    assert retry["status"] == "succeeded"
    assert (retry["added"], retry["failed"], retry["unchanged"]) == (1, 0, 11)
    assert "user0004@example.com" in destination_contacts(resend.url)


def test_a_destination_failing_for_a_while_loses_nothing(
    ws: WorkspaceClient, resend: Any, worker: Processes
) -> None:
    load(ws.id, people(15))
    sync = make_sync(ws, resend.url, "mirror")
    emulator(resend.url, "POST", "/faults", json={"status": 500, "count": 6})

    run = run_once(ws, sync["id"])
    assert run["status"] == "succeeded", run
    assert (run["added"], run["failed"]) == (15, 0)
    assert len(destination_contacts(resend.url)) == 15
    assert emulator(resend.url, "GET", "/stats")["faulted"] == 6


def test_rate_limits_are_waited_out_not_failed(
    ws: WorkspaceClient, resend: Any, worker: Processes
) -> None:
    emulator(resend.url, "POST", "/config", json={"rate": 5})
    load(ws.id, people(20))
    sync = make_sync(ws, resend.url, "mirror")
    run = run_once(ws, sync["id"])
    assert run["status"] == "succeeded"
    assert (run["added"], run["failed"]) == (20, 0)
    assert len(destination_contacts(resend.url)) == 20


def test_refused_credentials_fail_the_run_and_flag_the_sync(
    ws: WorkspaceClient, resend: Any, worker: Processes
) -> None:
    load(ws.id, people(3))
    secret = "sk_not_a_resend_key_42"
    sync = make_sync(ws, resend.url, "mirror", api_key=secret)
    run = run_once(ws, sync["id"])
    assert run["status"] == "failed"
    assert "invalid_api_key" in run["error"]
    flagged = ws.get(f"/audience-syncs/{sync['id']}").json()
    assert flagged["status"] == "error"
    assert "invalid_api_key" in flagged["status_error"]
    assert secret not in str(run) and secret not in str(flagged)
    logs = "".join(path.read_text() for path in DATA_DIR.glob("worker-*.log"))
    assert "run.finished" in logs, "the worker logs structured events"
    assert secret not in logs, "secrets never reach the logs"


def test_remove_mode_only_removes_members_who_leave(
    ws: WorkspaceClient, resend: Any, worker: Processes
) -> None:
    load(ws.id, people(6))
    mirror = make_sync(ws, resend.url, "mirror")
    assert run_once(ws, mirror["id"])["added"] == 6
    # A remove-mode sync to the same account: it starts by noting who is in the audience.
    remover = make_sync(ws, resend.url, "remove")
    with session_scope() as session:
        session.get_one(AudienceSync, mirror["id"]).status = "paused"
    baseline = run_once(ws, remover["id"])
    assert (baseline["added"], baseline["removed"], baseline["destination_requests"]) == (0, 0, 0)
    load(ws.id, people(2, active=False))
    run = run_once(ws, remover["id"])
    assert (run["added"], run["removed"]) == (0, 2)
    assert set(destination_contacts(resend.url)) == {
        f"user{i:04d}@example.com" for i in range(2, 6)
    }
    with session_scope() as session:
        keys = session.execute(
            select(SyncState.member_key).where(SyncState.sync_id == remover["id"])
        ).scalars()
        assert sorted(keys) == [f"user{i:04d}@example.com" for i in range(2, 6)]
