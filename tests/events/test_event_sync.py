"""Contact events end to end: API (202) -> outbox -> real worker -> Resend emulator, on SQLite
and PostgreSQL, with the per-contact status, the audit trail, retries and bulk sync."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from sqlalchemy import select, update

from shared.db.models import SyncRun, SyncState
from shared.db.session import session_scope
from shared.events import EventSettings
from tests.conftest import REDIS_URL, TEST_ENV, Processes, WorkspaceClient, wait_until
from tests.events.conftest import APP, event_sync
from tests.integration.test_runs import destination_contacts, emulator, people, run_once

ADA = "ada@example.com"


@pytest.fixture
def worker(processes: Processes) -> Processes:
    processes.worker()
    return processes


def held(url: str, email: str) -> dict[str, Any] | None:
    return destination_contacts(url).get(email)


def props(url: str, email: str) -> dict[str, Any]:
    contact = held(url, email)
    return dict(contact["properties"]) if contact else {}


def post(ws: WorkspaceClient, kind: str, body: dict[str, Any]) -> dict[str, Any]:
    response = ws.post(f"/events/{kind}", json=body)
    assert response.status_code == 202, response.text
    data: dict[str, Any] = response.json()
    return data


def test_signup_update_unsubscribe_reach_the_destination_namespaced_by_app(
    ws: WorkspaceClient, resend: Any, worker: Processes
) -> None:
    sync = event_sync(ws, resend.url)
    accepted = post(
        ws,
        "signup",
        {
            "email": "Ada@Example.com",
            "app": APP,
            "first_name": "Ada",
            "user_id": "u_1",
            "subscription_type": "waitlist",
        },
    )
    assert accepted["email"] == ADA and accepted["status"] == "pending"

    got = wait_until(lambda: props(resend.url, ADA).get(f"{APP}_subscriptionStatus") == "active")
    assert got
    contact = held(resend.url, ADA)
    assert contact is not None and contact["first_name"] == "Ada"
    assert contact["properties"][f"{APP}_subscriptionType"] == "waitlist"
    assert contact["properties"][f"{APP}_userId"] == "u_1"
    assert contact["properties"][f"{APP}_subscribedAt"].endswith("Z")
    assert wait_until(lambda: ws.get(f"/events/{accepted['event_id']}").json()["status"] == "done")

    post(
        ws,
        "update",
        {
            "email": ADA,
            "app": APP,
            "account_status": "paid",
            "billing_plan": "Professional",
            "billing_interval": "yearly",
            "user_role": "admin",
            "last_activity_at": "2025-01-15T10:30:00Z",
        },
    )
    wait_until(lambda: props(resend.url, ADA).get(f"{APP}_billingPlan") == "Professional")
    now = props(resend.url, ADA)
    assert now[f"{APP}_accountStatus"] == "paid"
    assert now[f"{APP}_billingInterval"] == "yearly"
    assert now[f"{APP}_userRole"] == "admin"
    assert now[f"{APP}_lastActivityAt"] == "2025-01-15T10:30:00Z"

    status = ws.get(f"/contacts/{ADA}/sync-status").json()
    assert [(s["sync_id"], s["status"]) for s in status] == [(sync["id"], "synced")]

    # A scheduled run finds nothing left to do for the contact.
    run = run_once(ws, sync["id"])
    assert (run["added"], run["updated"], run["unchanged"]) == (0, 0, 1), run
    assert run["destination_requests"] == 0

    post(ws, "unsubscribe", {"email": ADA, "app": APP})
    wait_until(lambda: props(resend.url, ADA).get(f"{APP}_subscriptionStatus") == "unsubscribed")
    post(ws, "resubscribe", {"email": ADA, "app": APP})
    wait_until(lambda: props(resend.url, ADA).get(f"{APP}_subscriptionStatus") == "active")

    audit = ws.get(f"/contacts/{ADA}/audit").json()["items"]
    assert [a["operation"] for a in audit] == ["add", "update", "update", "update"]
    assert all(a["result"] == "ok" and a["sync_id"] == sync["id"] for a in audit)
    assert all(a["target"] == "resend" and a["event_id"] for a in audit)


def test_gdpr_delete_removes_the_contact_everywhere_and_records_it(
    ws: WorkspaceClient, resend: Any, worker: Processes
) -> None:
    sync = event_sync(ws, resend.url, sync_mode="upsert")  # upsert never removes; erasure does
    post(ws, "signup", {"email": ADA, "app": APP, "first_name": "Ada"})
    wait_until(lambda: props(resend.url, ADA).get(f"{APP}_subscriptionStatus") == "active")

    post(ws, "delete", {"email": ADA})
    # With config.app, the contact belongs to every app on the account: this app's data goes.
    wait_until(lambda: not any(v for k, v in props(resend.url, ADA).items() if k.startswith(APP)))
    with session_scope() as session:
        assert session.get(SyncState, (sync["id"], ADA)) is None
    audit = ws.get(f"/contacts/{ADA}/audit").json()["items"]
    assert ("erase", "contact_store", "ok") in [
        (a["operation"], a["target"], a["result"]) for a in audit
    ]
    assert ("remove", "resend", "ok") in [(a["operation"], a["target"], a["result"]) for a in audit]

    # The contact is gone: events for it are refused and change nothing.
    for kind in ("update", "unsubscribe", "delete"):
        response = ws.post(f"/events/{kind}", json={"email": ADA, "app": APP})
        assert response.status_code == 410, response.text
        assert response.json()["error"]["code"] == "contact_deleted"
    assert ws.get(f"/contacts/{ADA}/sync-status").status_code == 404


def test_a_refused_contact_shows_failed_and_is_retried_on_demand(
    ws: WorkspaceClient, resend: Any, worker: Processes
) -> None:
    sync = event_sync(ws, resend.url)
    emulator(resend.url, "POST", "/faults", json={"reject_emails": [ADA], "status": 422})
    post(ws, "signup", {"email": ADA, "app": APP})

    def failed() -> list[dict[str, Any]]:
        page = ws.get(f"/audience-syncs/{sync['id']}/contacts", params={"status": "failed"})
        return list(page.json()["items"])

    [item] = wait_until(failed)
    assert item["email"] == ADA and "validation_error" in item["last_error"]
    assert item["updated_at"]
    [status] = ws.get(f"/contacts/{ADA}/sync-status").json()
    assert status["status"] == "failed"

    emulator(resend.url, "DELETE", "/faults")
    response = ws.post(f"/audience-syncs/{sync['id']}/contacts/retry-failed")
    assert response.status_code == 202 and response.json() == {"queued": 1}
    wait_until(lambda: held(resend.url, ADA))
    wait_until(lambda: not failed())
    [status] = ws.get(f"/contacts/{ADA}/sync-status").json()
    assert status["status"] == "synced"
    results = [a["result"] for a in ws.get(f"/contacts/{ADA}/audit").json()["items"]]
    assert results == ["failed", "ok"]


def test_status_lists_are_keyset_paginated(
    ws: WorkspaceClient, resend: Any, worker: Processes
) -> None:
    sync = event_sync(ws, resend.url)
    emails = [f"p{i}@example.com" for i in range(5)]
    for email in emails:
        post(ws, "signup", {"email": email, "app": APP})
    path = f"/audience-syncs/{sync['id']}/contacts"
    wait_until(
        lambda: len(ws.get(path, params={"status": "synced", "limit": 10}).json()["items"]) == 5
    )
    first = ws.get(path, params={"limit": 2}).json()
    second = ws.get(path, params={"limit": 2, "after": first["next_after"]}).json()
    third = ws.get(path, params={"limit": 2, "after": second["next_after"]}).json()
    seen = [i["email"] for page in (first, second, third) for i in page["items"]]
    assert seen == sorted(emails) and third["next_after"] is None


def test_an_event_waits_for_a_running_full_run_then_applies(
    ws: WorkspaceClient, resend: Any, worker: Processes
) -> None:
    sync = event_sync(ws, resend.url)
    with session_scope() as session:  # a run of this sync is going (never published: no beat)
        session.add(
            SyncRun(
                sync_id=sync["id"],
                workspace_id=ws.id,
                trigger="manual",
                status="running",
                sync_mode="mirror",
            )
        )
    post(ws, "signup", {"email": ADA, "app": APP})
    wait_until(lambda: ws.get(f"/contacts/{ADA}/sync-status").json()[0]["status"] == "pending", 10)
    assert held(resend.url, ADA) is None, "no push while a run of the sync is going"
    with session_scope() as session:
        session.execute(
            update(SyncRun).where(SyncRun.sync_id == sync["id"]).values(status="succeeded")
        )
    wait_until(lambda: held(resend.url, ADA))
    wait_until(lambda: ws.get(f"/contacts/{ADA}/sync-status").json()[0]["status"] == "synced")


def test_bulk_sync_resends_every_member_with_progress(
    ws: WorkspaceClient, resend: Any, worker: Processes
) -> None:
    sync = event_sync(ws, resend.url, rules={"all": [{"field": "email", "op": "is_not_null"}]})
    from tests.integration.test_runs import load

    load(ws.id, people(12))
    first = run_once(ws, sync["id"])
    assert first["added"] == 12
    response = ws.post(f"/audience-syncs/{sync['id']}/bulk-sync")
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["reset_contacts"] == 12
    run_id = body["run"]["id"]

    def finished() -> dict[str, Any] | None:
        run: dict[str, Any] = ws.get(f"/audience-syncs/{sync['id']}/runs/{run_id}").json()
        return run if run["status"] in ("succeeded", "partial", "failed") else None

    run = wait_until(finished)
    assert run["status"] == "succeeded"
    assert (run["updated"], run["processed"], run["planned_total"]) == (12, 12, 12)
    again = run_once(ws, sync["id"])
    assert again["destination_requests"] == 0
    with session_scope() as session:
        hashes = session.execute(
            select(SyncState.payload_hash).where(SyncState.sync_id == sync["id"])
        ).scalars()
        assert all(hashes)


def test_a_burst_of_events_queues_a_few_tasks_and_every_event_arrives(
    ws: WorkspaceClient, resend: Any, processes: Processes
) -> None:
    """A task not yet started sees every event committed before it claims, so a burst rings
    the doorbell only until ``queued_tasks`` are waiting; the worker then takes them all."""
    event_sync(ws, resend.url)
    broker = redis.Redis.from_url(REDIS_URL)
    queue = TEST_ENV["AUDIENCESYNC_QUEUE"]
    before = broker.llen(queue)
    emails = [f"burst{i}@example.com" for i in range(30)]
    for email in emails:
        post(ws, "signup", {"email": email, "app": APP})
    assert broker.llen(queue) - before == EventSettings().queued_tasks

    processes.worker()
    assert wait_until(lambda: set(emails) <= set(destination_contacts(resend.url)))
    assert wait_until(lambda: not broker.get(f"audiencesync:events:doorbell:{ws.id}"))


def test_a_full_run_leaves_an_audit_row_per_contact_it_touched(
    ws: WorkspaceClient, resend: Any, worker: Processes
) -> None:
    sync = event_sync(ws, resend.url, event_triggered=False)  # only runs deliver here
    for email in (ADA, "bob@example.com"):
        post(ws, "signup", {"email": email, "app": APP})
    run = run_once(ws, sync["id"])
    assert (run["status"], run["added"]) == ("succeeded", 2), run

    for email in (ADA, "bob@example.com"):
        items = ws.get(f"/contacts/{email}/audit").json()["items"]
        [row] = [item for item in items if item["run_id"] == run["id"]]
        assert (row["operation"], row["result"], row["target"]) == ("add", "ok", "resend")
        assert row["sync_id"] == sync["id"] and row["event_id"] is None
