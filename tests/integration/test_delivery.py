"""Delivery features a user relies on: the bulk path, apps sharing one Resend account, the
removal guard, and checking a destination's credentials."""

from __future__ import annotations

from typing import Any

import httpx

from shared.db.models import Destination
from shared.db.session import session_scope
from tests.conftest import Processes, WorkspaceClient, make_sync
from tests.integration.test_runs import (
    destination_contacts,
    emulator,
    load,
    people,
    run_once,
    wait_run,
)

HEADERS = {"Authorization": "Bearer re_test_key", "User-Agent": "tests"}


def test_a_large_diff_goes_through_one_contact_import(
    ws: WorkspaceClient, resend: Any, processes: Processes
) -> None:
    processes.worker()
    emulator(resend.url, "POST", "/config", json={"rate": 2})
    load(ws.id, people(300))
    sync = make_sync(ws, resend.url, "mirror")
    run = run_once(ws, sync["id"])
    assert run["status"] == "succeeded", run
    assert run["added"] == 300 and run["delivery_paths"] == {"bulk": 300}
    # At 2 requests/s, 300 single writes would need 150 s; the import needs a handful.
    assert run["destination_requests"] < 20
    emulator(resend.url, "POST", "/config", json={"rate": 200})
    held = destination_contacts(resend.url)
    assert len(held) == 300 and held["user0042@example.com"]["properties"]["plan"] == "free"

    load(ws.id, people(5, plan="pro"))
    emulator(resend.url, "POST", "/config", json={"rate": 2})
    small = run_once(ws, sync["id"])
    emulator(resend.url, "POST", "/config", json={"rate": 200})
    assert (small["updated"], small["delivery_paths"]) == (5, {"per_record": 5})
    assert destination_contacts(resend.url)["user0001@example.com"]["properties"]["plan"] == "pro"


def test_an_import_with_a_bad_row_falls_back_to_finding_it(
    ws: WorkspaceClient, resend: Any, processes: Processes
) -> None:
    processes.worker()
    rows = people(120)
    rows[7]["email"] = "not-an-email"
    load(ws.id, rows)
    sync = make_sync(ws, resend.url, "upsert")
    run = run_once(ws, sync["id"])
    assert run["status"] == "partial"
    assert (run["added"], run["failed"]) == (119, 1)
    assert run["errors"][0]["member_key"] == "not-an-email"
    assert len(destination_contacts(resend.url)) == 119


def test_two_apps_share_one_account_without_touching_each_other(
    ws: WorkspaceClient, resend: Any, processes: Processes
) -> None:
    processes.worker()
    load(ws.id, people(4))
    syncs = {}
    for app in ("tinykit", "otherapp"):
        sync = make_sync(ws, resend.url, "mirror")
        with session_scope() as session:
            destination = session.get_one(Destination, sync["destination_id"])
            destination.config = {**destination.config, "app": app}
        syncs[app] = sync
        assert run_once(ws, sync["id"])["added"] == 4
    contact = destination_contacts(resend.url)["user0000@example.com"]
    assert contact["properties"] == {"tinykit_plan": "free", "otherapp_plan": "free"}

    # user0000 leaves the audience; tinykit's sync runs: only tinykit's property goes, and the
    # contact stays for otherapp (whose sync has not run since).
    load(ws.id, people(1, active=False))
    assert run_once(ws, syncs["tinykit"]["id"])["removed"] == 1
    contact = destination_contacts(resend.url)["user0000@example.com"]
    assert contact["properties"] == {"otherapp_plan": "free"}


def test_the_removal_guard_stops_a_mirror_from_emptying_the_destination(
    ws: WorkspaceClient, resend: Any, processes: Processes
) -> None:
    processes.worker()
    load(ws.id, people(20))
    sync = make_sync(ws, resend.url, "mirror")
    assert run_once(ws, sync["id"])["added"] == 20
    load(ws.id, people(15, active=False))  # the source "suddenly" loses most of the audience

    stopped = run_once(ws, sync["id"])
    assert stopped["status"] == "failed"
    assert "removal guard" in stopped["error"] and "15 of the 20" in stopped["error"]
    assert stopped["removed"] == 0 and stopped["destination_requests"] == 0
    assert len(destination_contacts(resend.url)) == 20

    response = ws.post(f"/audience-syncs/{sync['id']}/trigger", json={"allow_mass_removal": True})
    assert response.status_code == 201 and response.json()["allow_mass_removal"] is True
    confirmed = wait_run(ws, sync["id"], response.json()["id"])
    assert confirmed["status"] == "succeeded" and confirmed["removed"] == 15
    assert len(destination_contacts(resend.url)) == 5


def test_checking_a_destination_says_whether_the_service_accepts_it(
    ws: WorkspaceClient, resend: Any
) -> None:
    good = make_sync(ws, resend.url, "mirror")["destination_id"]
    bad = make_sync(ws, resend.url, "mirror", api_key="sk_wrong_secret_123")["destination_id"]
    ok = ws.post(f"/destinations/{good}/test")
    assert ok.status_code == 200 and ok.json()["ok"] is True
    refused = ws.post(f"/destinations/{bad}/test").json()
    assert refused["ok"] is False and "invalid_api_key" in refused["message"]
    assert "sk_wrong_secret_123" not in refused["message"]
    assert httpx.get(f"{resend.url}/contacts", headers=HEADERS).status_code == 200
