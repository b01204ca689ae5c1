"""The Audience Syncs API as a client sees it: shapes, auth, validation, nothing half-written."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from shared.db.models import AudienceSync, Destination, SyncRun
from shared.db.session import session_scope
from tests.conftest import ACTIVE_RULES, EMAIL_MAPPING, WorkspaceClient, make_sync, new_workspace

SYNC_FIELDS = {
    "id", "workspace_id", "audience_id", "destination_id", "name", "description", "field_mapping",
    "sync_mode", "schedule", "config", "status", "status_error", "created_by", "created_at",
    "updated_at", "last_synced_at", "last_run_id", "split_group_id",
}  # fmt: skip
URL = "http://127.0.0.1:9"


def count(model: Any) -> int:
    with session_scope() as session:
        return int(session.execute(select(func.count()).select_from(model)).scalar_one())


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code:
        assert body["error"]["code"] == code
    return body["error"]


def test_sync_lifecycle_has_every_field_of_the_seed_object(ws: WorkspaceClient) -> None:
    sync = make_sync(ws, URL, schedule="0 */4 * * *", description="to the newsletter")
    assert set(sync) == SYNC_FIELDS | {"timezone", "catch_up", "next_run_at"}
    assert sync["sync_mode"] == "mirror"
    assert sync["schedule"] == "0 */4 * * *"
    assert sync["status"] == "active"
    assert sync["field_mapping"] == EMAIL_MAPPING
    assert sync["last_run_id"] is None and sync["last_synced_at"] is None

    listed = ws.get("/audience-syncs").json()
    assert [item["id"] for item in listed] == [sync["id"]]
    assert ws.get(f"/audience-syncs/{sync['id']}").json() == sync

    updated = ws.put(f"/audience-syncs/{sync['id']}", json={"status": "paused", "name": "renamed"})
    assert updated.status_code == 200, updated.text
    assert updated.json()["status"] == "paused"
    assert updated.json()["name"] == "renamed"
    assert updated.json()["sync_mode"] == "mirror"

    deleted = ws.delete(f"/audience-syncs/{sync['id']}")
    assert deleted.status_code == 200
    assert deleted.json() == {"status": "deleted"}
    assert_error(ws.get(f"/audience-syncs/{sync['id']}"), 404, "not_found")


def test_trigger_returns_the_run_and_a_second_trigger_answers_409(ws: WorkspaceClient) -> None:
    sync = make_sync(ws, URL)
    response = ws.post(f"/audience-syncs/{sync['id']}/trigger")
    assert response.status_code == 201, response.text
    run = response.json()
    assert run["status"] in {"pending", "running"}
    assert run["sync_id"] == sync["id"] and run["trigger"] == "manual"

    again = ws.post(f"/audience-syncs/{sync['id']}/trigger")
    assert_error(again, 409, "run_in_progress")
    assert count(SyncRun) == 1
    assert ws.get(f"/audience-syncs/{sync['id']}").json()["last_run_id"] == run["id"]
    runs = ws.get(f"/audience-syncs/{sync['id']}/runs").json()
    assert [item["id"] for item in runs] == [run["id"]]
    detail = ws.get(f"/audience-syncs/{sync['id']}/runs/{run['id']}").json()
    assert detail["id"] == run["id"] and detail["errors"] == []
    assert_error(ws.delete(f"/audience-syncs/{sync['id']}"), 409)


def test_paused_sync_cannot_be_triggered(ws: WorkspaceClient) -> None:
    sync = make_sync(ws, URL, status="paused")
    assert_error(ws.post(f"/audience-syncs/{sync['id']}/trigger"), 409, "sync_paused")
    assert count(SyncRun) == 0


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"sync_mode": "replace"}, "sync_mode"),
        ({"schedule": "61 * * * *"}, "invalid cron expression"),
        ({"schedule": "every day"}, "invalid cron expression"),
        ({"field_mapping": None}, "field_mapping"),
        ({"field_mapping": []}, "field_mapping"),
        ({"name": ""}, "name"),
        ({"audience_id": "not-a-uuid"}, "audience_id"),
        ({"surprise": 1}, "surprise"),
        (
            {"field_mapping": [{"source_column": "shoe_size", "destination_field": "x"}]},
            "shoe_size",
        ),
        (
            {
                "field_mapping": [
                    *EMAIL_MAPPING,
                    {"source_column": "email", "destination_field": "a-b"},
                ]
            },
            "a-b",
        ),
        ({"field_mapping": [{"source_column": "first_name", "destination_field": "x"}]}, "email"),
        (
            {
                "field_mapping": [
                    *EMAIL_MAPPING,
                    {"source_column": "email", "destination_field": "h", "transforms": ["rot13"]},
                ]
            },
            "unknown transform",
        ),
        ({"field_mapping": [*EMAIL_MAPPING, {"destination_field": "src"}]}, "constant"),
    ],
)
def test_bad_sync_input_is_a_422_and_writes_nothing(
    ws: WorkspaceClient, change: dict[str, Any], fragment: str
) -> None:
    destination = ws.create(
        "/destinations",
        {
            "name": "r",
            "type": "resend",
            "config": {"base_url": URL},
            "credentials": {"api_key": "re_x"},
        },
    )
    audience = ws.create("/audiences", {"name": "a", "rules": ACTIVE_RULES})
    body = {
        "name": "s",
        "audience_id": audience["id"],
        "destination_id": destination["id"],
        "field_mapping": EMAIL_MAPPING,
        "sync_mode": "mirror",
    }
    for key, value in change.items():
        if value is None:
            body.pop(key)
        else:
            body[key] = value
    error = assert_error(ws.post("/audience-syncs", json=body), 422, "validation_error")
    assert fragment in error["message"]
    assert count(AudienceSync) == 0


def test_update_validates_like_create_and_changes_nothing_on_error(ws: WorkspaceClient) -> None:
    sync = make_sync(ws, URL, schedule="0 * * * *")
    assert_error(ws.put(f"/audience-syncs/{sync['id']}", json={"schedule": "0 25 * * *"}), 422)
    assert_error(ws.put(f"/audience-syncs/{sync['id']}", json={"sync_mode": "all"}), 422)
    assert_error(ws.put(f"/audience-syncs/{sync['id']}", json={"status": "error"}), 422)
    assert ws.get(f"/audience-syncs/{sync['id']}").json() == sync


def test_auth_and_workspace_isolation(api: Any, ws: WorkspaceClient) -> None:
    other = new_workspace(api, "other")
    theirs = make_sync(other, URL)

    assert_error(api.get(ws.url("/audience-syncs")), 401, "unauthorized")
    assert_error(api.get(ws.url("/audience-syncs"), headers={"Authorization": "Bearer nope"}), 401)
    # Another workspace's ids look like they do not exist.
    assert_error(ws.get(f"/audience-syncs/{theirs['id']}"), 404)
    assert_error(ws.post(f"/audience-syncs/{theirs['id']}/trigger"), 404)
    assert_error(api.get(other.url("/audience-syncs"), headers=ws.headers), 404)
    # A sync may not point at another workspace's audience or destination.
    mine = make_sync(ws, URL)
    body = {
        "name": "steal",
        "audience_id": theirs["audience_id"],
        "destination_id": mine["destination_id"],
        "field_mapping": EMAIL_MAPPING,
        "sync_mode": "add",
    }
    assert_error(ws.post("/audience-syncs", json=body), 404)
    assert count(AudienceSync) == 2
    # X-Workspace-ID, when sent, must match.
    ok = ws.get("/audience-syncs", headers={"X-Workspace-ID": ws.id})
    assert ok.status_code == 200
    assert_error(ws.get("/audience-syncs", headers={"X-Workspace-ID": other.id}), 400)


def test_destination_credentials_never_come_back(ws: WorkspaceClient) -> None:
    secret = "re_super_secret_value_123456"
    created = ws.create(
        "/destinations",
        {
            "name": "r",
            "type": "resend",
            "config": {"base_url": URL},
            "credentials": {"api_key": secret},
        },
    )
    for response in (
        ws.get("/destinations"),
        ws.get(f"/destinations/{created['id']}"),
    ):
        assert secret not in response.text
        assert "api_key" not in response.text
    assert secret not in str(created)
    with session_scope() as session:
        stored = session.get_one(Destination, created["id"])
        assert secret not in stored.credentials_encrypted


@pytest.mark.parametrize(
    "body",
    [
        {"name": "r", "type": "carrier-pigeon", "credentials": {"api_key": "x"}},
        {"name": "r", "type": "resend", "credentials": {}},
        {
            "name": "r",
            "type": "resend",
            "config": {"base_url": "ftp://x"},
            "credentials": {"api_key": "re_x"},
        },
        {  # Resend limits requests per second, not connections
            "name": "r",
            "type": "resend",
            "config": {"max_connections": 2},
            "credentials": {"api_key": "re_x"},
        },
        {  # Mailchimp allows 10 connections per account
            "name": "m",
            "type": "mailchimp",
            "config": {"list_id": "l1", "max_connections": 11},
            "credentials": {"api_key": "abc-us6"},
        },
    ],
)
def test_bad_destination_is_a_422(ws: WorkspaceClient, body: dict[str, Any]) -> None:
    assert_error(ws.post("/destinations", json=body), 422)
    assert count(Destination) == 0


@pytest.mark.parametrize(
    ("rules", "fragment"),
    [
        ({"all": [{"field": "shoe_size", "op": "eq", "value": 1}]}, "unknown field"),
        ({"all": [{"field": "last_active_at", "op": "within_last_days", "value": "x"}]}, "number"),
        ({"all": [{"field": "email", "op": "explode", "value": 1}]}, "unknown operator"),
        (
            {"all": [{"field": "email; DROP TABLE contacts", "op": "eq", "value": "x"}]},
            "unknown field",
        ),
    ],
)
def test_bad_audience_rules_are_a_422(
    ws: WorkspaceClient, rules: dict[str, Any], fragment: str
) -> None:
    error = assert_error(ws.post("/audiences", json={"name": "a", "rules": rules}), 422)
    assert fragment in error["message"]
    assert "rules.all[0]" in error["message"]
    assert ws.get("/audiences").json() == []


def test_audience_and_destination_in_use_cannot_be_deleted(ws: WorkspaceClient) -> None:
    sync = make_sync(ws, URL)
    assert_error(ws.delete(f"/audiences/{sync['audience_id']}"), 409)
    assert_error(ws.delete(f"/destinations/{sync['destination_id']}"), 409)
    assert ws.delete(f"/audience-syncs/{sync['id']}").status_code == 200
    assert ws.delete(f"/audiences/{sync['audience_id']}").json() == {"status": "deleted"}
    assert ws.delete(f"/destinations/{sync['destination_id']}").json() == {"status": "deleted"}
    assert ws.get("/audiences").json() == []


def test_healthz_checks_database_and_broker(api: Any) -> None:
    response = api.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok"}


def test_openapi_docs_are_served(api: Any) -> None:
    assert api.get("/docs").status_code == 200
    paths = api.get("/openapi.json").json()["paths"]
    assert "/api/v1/workspaces/{id}/audience-syncs/{sync_id}/trigger" in paths
