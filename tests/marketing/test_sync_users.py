"""Seed 000's marketing endpoint, end to end: API -> Resend emulator (segment) -> database ->
a real Celery worker -> the emulator's segment, read back through Resend's own endpoints.

Every test runs on SQLite and PostgreSQL (the ``db`` fixture behind ``ws``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from shared.contacts import upsert_contacts
from shared.db.models import Audience, AudienceSync, Destination, SyncRun, SyncState
from shared.db.session import session_scope
from tests.conftest import Processes, WorkspaceClient, wait_until

SECRET = "mk_marketing_secret_0123456789"
RESEND_KEY = "re_marketing_key"
NOW = datetime.now(UTC)
FINISHED = {"succeeded", "partial", "failed"}
PATH = "/api/v1/marketing/sync-users"


@dataclass
class Marketing:
    ws: WorkspaceClient
    resend_url: str
    destination_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {SECRET}"}

    def get(self, **params: Any) -> httpx.Response:
        response: httpx.Response = self.ws.client.get(PATH, params=params, headers=self.headers)
        return response

    def post(self, body: dict[str, Any], **params: Any) -> httpx.Response:
        response: httpx.Response = self.ws.client.post(
            PATH, json=body, params=params, headers=self.headers
        )
        return response


@pytest.fixture
def marketing(ws: WorkspaceClient, resend: Any, monkeypatch: pytest.MonkeyPatch) -> Marketing:
    destination = ws.create(
        "/destinations",
        {
            "name": "resend",
            "type": "resend",
            "config": {"base_url": resend.url, "rate_limit": 200},
            "credentials": {"api_key": RESEND_KEY},
        },
    )
    monkeypatch.setenv("MARKETING_API_SECRET", SECRET)
    monkeypatch.setenv("MARKETING_WORKSPACE_ID", ws.id)
    monkeypatch.setenv("MARKETING_DESTINATION_ID", destination["id"])
    monkeypatch.setenv("MARKETING_RESEND_ATTEMPTS", "2")
    return Marketing(ws, resend.url, destination["id"])


@pytest.fixture
def worker(processes: Processes) -> Processes:
    processes.worker()
    return processes


def users(count: int, start: int = 0, active: bool = True) -> list[dict[str, Any]]:
    seen = NOW - (timedelta(days=2) if active else timedelta(days=100))
    return [
        {
            "email": f"user{i:03d}@example.com",
            "first_name": f"First{i}",
            "last_name": f"Last{i}",
            "user_id": f"u{i}",
            "last_active_at": seen,
        }
        for i in range(start, start + count)
    ]


def load(workspace_id: str, rows: list[dict[str, Any]]) -> None:
    with session_scope() as session:
        upsert_contacts(session, workspace_id, rows)


def resend_get(url: str, path: str, **params: Any) -> Any:
    """One read through Resend's own API, waiting out its rate limit as the service asks."""
    headers = {"Authorization": f"Bearer {RESEND_KEY}", "User-Agent": "tests"}
    while True:
        response = httpx.get(f"{url}{path}", params=params, headers=headers)
        if response.status_code != 429:
            assert response.status_code == 200, response.text
            return response.json()
        time.sleep(float(response.headers["retry-after"]))


def segment_members(url: str, segment_id: str) -> dict[str, dict[str, Any]]:
    """Contacts of one segment, through ``GET /contacts?segment_id=`` (paginated)."""
    members: dict[str, dict[str, Any]] = {}
    after: str | None = None
    while True:
        params: dict[str, Any] = {"segment_id": segment_id, "limit": 100}
        if after:
            params["after"] = after
        page = resend_get(url, "/contacts", **params)
        for item in page["data"]:
            members[item["email"]] = item
        if not page["has_more"]:
            return members
        after = page["data"][-1]["id"]


def segments(url: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = resend_get(url, "/segments")["data"]
    return data


def emulator(url: str, method: str, path: str, **kwargs: Any) -> Any:
    response = httpx.request(method, f"{url}/_emulator{path}", **kwargs)
    assert response.status_code < 300, response.text
    return response.json()


def wait_run(ws: WorkspaceClient, sync_id: str, run_id: str) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        run: dict[str, Any] = ws.get(f"/audience-syncs/{sync_id}/runs/{run_id}").json()
        return run if run["status"] in FINISHED else None

    result: dict[str, Any] = wait_until(finished, timeout=90, interval=0.2)
    return result


def row_counts() -> dict[str, int]:
    with session_scope() as session:
        return {
            model.__name__: session.execute(select(func.count()).select_from(model)).scalar_one()
            for model in (Audience, AudienceSync, Destination, SyncRun, SyncState)
        }


def emails(*numbers: int) -> set[str]:
    return {f"user{i:03d}@example.com" for i in numbers}


# --- preview ----------------------------------------------------------------------------------


def test_preview_counts_the_filtered_users_and_shows_the_first_five(marketing: Marketing) -> None:
    load(marketing.ws.id, users(7) + users(4, start=7, active=False))
    load(marketing.ws.id, [{"email": "nameless@example.com", "last_active_at": NOW}])
    before = row_counts()

    active = marketing.get(filterActive="true")
    assert active.status_code == 200, active.text
    body = active.json()
    assert body["success"] is True
    assert body["count"] == 8
    assert [user["email"] for user in body["sample"]] == [
        "nameless@example.com",
        *sorted(emails(0, 1, 2, 3)),
    ]
    assert body["sample"][0] == {
        "email": "nameless@example.com",
        "full_name": None,
        "first_name": None,
        "last_name": None,
    }
    assert body["sample"][1] == {
        "email": "user000@example.com",
        "full_name": "First0 Last0",
        "first_name": "First0",
        "last_name": "Last0",
    }

    assert marketing.get().json()["count"] == 12, "without filterActive everyone counts"
    assert marketing.get(filterActive="true", activeDays=365).json()["count"] == 12
    assert marketing.get(filterActive="true", activeDays=1).json()["count"] == 1
    assert marketing.get(filterActive="false", activeDays=1).json()["count"] == 12
    bad = marketing.get(filterActive="true", activeDays=-3)
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "validation_error"
    assert row_counts() == before, "a preview writes nothing"
    assert segments(marketing.resend_url) == [], "and creates nothing on Resend"


def test_preview_of_an_empty_store(marketing: Marketing) -> None:
    body = marketing.get(filterActive="true").json()
    assert (body["success"], body["count"], body["sample"]) == (True, 0, [])


# --- authentication ---------------------------------------------------------------------------


def test_the_marketing_secret_is_required_and_nothing_else_will_do(
    marketing: Marketing, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = marketing.ws.client
    wrong_keys: list[dict[str, Any]] = [
        {},
        {"Authorization": "Bearer mk_wrong"},
        {"Authorization": f"Bearer {SECRET}x"},
        {"Authorization": f"Basic {SECRET}"},
        {"Authorization": f"Bearer {marketing.ws.token}"},  # a workspace token is not the key
        {"Authorization": "Bearer ünïcode".encode("latin-1")},
    ]
    for headers in wrong_keys:
        for response in (
            client.get(PATH, headers=headers),
            client.post(PATH, json={}, headers=headers),
        ):
            assert response.status_code == 401, (headers, response.text)
            assert response.json()["error"]["code"] == "unauthorized"
            assert SECRET not in response.text
    assert segments(marketing.resend_url) == []

    monkeypatch.delenv("MARKETING_API_SECRET")
    off = client.get(PATH, headers=marketing.headers)
    assert off.status_code == 503
    assert off.json()["error"]["code"] == "not_configured"
    assert "MARKETING_API_SECRET" in off.json()["error"]["message"]


def test_a_misconfigured_endpoint_says_which_variable(
    marketing: Marketing, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MARKETING_DESTINATION_ID", "no-such-destination")
    response = marketing.post({})
    assert response.status_code == 503, response.text
    assert "MARKETING_DESTINATION_ID" in response.json()["error"]["message"]
    monkeypatch.delenv("MARKETING_WORKSPACE_ID")
    response = marketing.get()
    assert response.status_code == 503
    assert "MARKETING_WORKSPACE_ID" in response.json()["error"]["message"]


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"sync_type": "specific"}, ["user_ids", "specific"]),
        ({"sync_type": "specific", "user_ids": []}, ["user_ids"]),
        ({"platform": "mailchimp"}, ["mailchimp", "resend"]),
        ({"sync_type": "some"}, ["sync_type"]),
        ({"activeDays": "many", "filterActive": True}, ["activeDays"]),
        ({"audienceName": "   "}, ["audienceName"]),
        ({"tags": ["a,b"]}, ["comma"]),
        ({"user_ids": ["u1"]}, ["specific"]),
        ({"unknownField": 1}, ["unknownField"]),
    ],
)
def test_bad_input_is_a_422_that_says_why_and_writes_nothing(
    marketing: Marketing, body: dict[str, Any], words: list[str]
) -> None:
    before = row_counts()
    response = marketing.post(body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    for word in words:
        assert word in error["message"], (word, error)
    assert row_counts() == before
    assert segments(marketing.resend_url) == []


def test_an_unknown_list_id_is_a_422(marketing: Marketing) -> None:
    before = row_counts()
    response = marketing.post({"list_id": "0b6c2f5e-0000-4000-8000-000000000000"})
    assert response.status_code == 422, response.text
    assert "list_id" in response.json()["error"]["message"]
    assert row_counts() == before


# --- Resend failing ---------------------------------------------------------------------------


def test_resend_down_is_a_clear_5xx_with_nothing_half_written(marketing: Marketing) -> None:
    load(marketing.ws.id, users(3))
    emulator(
        marketing.resend_url, "POST", "/faults", json={"status": 500, "route": "POST /segments"}
    )
    before = row_counts()

    response = marketing.post({"audienceName": "Never"})
    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert error["code"] == "destination_unavailable"
    assert "Resend" in error["message"] and "POST /segments" in error["message"]
    assert RESEND_KEY not in response.text and SECRET not in response.text
    assert row_counts() == before, "no audience, destination, sync or run left behind"
    assert emulator(marketing.resend_url, "GET", "/stats")["faulted"] == 2, "retried, bounded"

    emulator(marketing.resend_url, "DELETE", "/faults")
    assert segments(marketing.resend_url) == []


def test_refused_resend_credentials_are_a_502_without_the_key(
    marketing: Marketing, ws: WorkspaceClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk_not_a_resend_key_42"
    bad = ws.create(
        "/destinations",
        {
            "name": "bad",
            "type": "resend",
            "config": {"base_url": marketing.resend_url},
            "credentials": {"api_key": secret},
        },
    )
    monkeypatch.setenv("MARKETING_DESTINATION_ID", bad["id"])
    before = row_counts()
    response = marketing.post({})
    assert response.status_code == 502, response.text
    assert response.json()["error"]["code"] == "destination_error"
    assert "credentials" in response.json()["error"]["message"]
    assert secret not in response.text
    assert row_counts() == before


# --- the sync, with a real worker -------------------------------------------------------------


def test_post_creates_a_segment_and_syncs_the_active_users_into_it(
    marketing: Marketing, worker: Processes
) -> None:
    load(marketing.ws.id, users(6) + users(3, start=6, active=False))
    response = marketing.post(
        {
            "audienceName": "Spring launch",
            "audienceDescription": "active in the last 30 days",
            "filterActive": True,
            "activeDays": 30,
            "platform": "resend",
            "tags": ["onlyautomator-user", "active"],
        }
    )
    assert response.status_code == 202, response.text
    started = response.json()
    segment = started["audience"]
    assert segment["name"] == "Spring launch"
    assert started["run"]["status"] in ("pending", "running", "succeeded")
    assert started["run"]["trigger"] == "api"

    run = wait_run(marketing.ws, started["sync_id"], started["run"]["id"])
    assert run["status"] == "succeeded", run
    assert (run["added"], run["failed"]) == (6, 0)

    [held] = segments(marketing.resend_url)
    assert (held["id"], held["name"]) == (segment["id"], "Spring launch")
    members = segment_members(marketing.resend_url, segment["id"])
    assert set(members) == emails(*range(6))
    contact = resend_get(marketing.resend_url, "/contacts/user002@example.com")
    assert (contact["first_name"], contact["last_name"]) == ("First2", "Last2")
    assert contact["properties"]["tags"] == "onlyautomator-user,active"

    audience = marketing.ws.get(f"/audiences/{started['audience_id']}").json()
    assert audience["name"] == "Spring launch"
    assert audience["rules"] == {
        "all": [{"field": "last_active_at", "op": "within_last_days", "value": 30}]
    }
    sync = marketing.ws.get(f"/audience-syncs/{started['sync_id']}").json()
    assert sync["sync_mode"] == "add" and sync["destination_id"] == started["destination_id"]
    destination = marketing.ws.get(f"/destinations/{started['destination_id']}").json()
    assert destination["config"]["segment_id"] == segment["id"]


def test_wait_true_answers_with_the_seed_shape(marketing: Marketing, worker: Processes) -> None:
    load(marketing.ws.id, users(4) + users(2, start=4, active=False))
    # Every field has a default: a POST without a body is a whole request.
    response = marketing.ws.client.post(PATH, params={"wait": "true"}, headers=marketing.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    today = datetime.now(UTC).date().isoformat()
    assert body["success"] is True
    assert body["audience"]["name"] == f"Audience {today}"
    assert body["contactsAdded"] == 6, "no filter: everyone"
    assert "6" in body["message"]
    assert body["run"]["status"] == "succeeded"
    assert set(segment_members(marketing.resend_url, body["audience"]["id"])) == emails(*range(6))


def test_new_and_specific_sync_types(marketing: Marketing, worker: Processes) -> None:
    load(marketing.ws.id, users(5))
    first = marketing.post({"audienceName": "everyone"}, wait="true").json()
    assert first["contactsAdded"] == 5

    load(marketing.ws.id, users(2, start=5))
    new = marketing.post({"audienceName": "newcomers", "sync_type": "new"}, wait="true")
    assert new.status_code == 200, new.text
    assert new.json()["contactsAdded"] == 2
    assert new.json()["run"]["unchanged"] == 5
    assert set(segment_members(marketing.resend_url, new.json()["audience"]["id"])) == emails(5, 6)

    again = marketing.post({"sync_type": "new"}, wait="true").json()
    assert again["contactsAdded"] == 0, "every user was delivered by a marketing sync already"

    specific = marketing.post(
        {"audienceName": "picked", "sync_type": "specific", "user_ids": ["u1", "u3", "nobody"]},
        wait="true",
    )
    assert specific.status_code == 200, specific.text
    assert specific.json()["contactsAdded"] == 2
    picked = segment_members(marketing.resend_url, specific.json()["audience"]["id"])
    assert set(picked) == emails(1, 3)


def test_list_id_syncs_into_an_existing_segment(marketing: Marketing, worker: Processes) -> None:
    load(marketing.ws.id, users(3))
    headers = {"Authorization": f"Bearer {RESEND_KEY}"}
    made = httpx.post(f"{marketing.resend_url}/segments", json={"name": "VIP"}, headers=headers)
    assert made.status_code == 201, made.text
    segment_id = made.json()["id"]

    body = marketing.post({"list_id": segment_id}, wait="true").json()
    assert body["audience"] == {"id": segment_id, "name": "VIP"}
    assert body["contactsAdded"] == 3
    assert len(segments(marketing.resend_url)) == 1, "no new segment"
    assert set(segment_members(marketing.resend_url, segment_id)) == emails(0, 1, 2)


def test_a_run_that_fails_on_resend_is_a_502_with_the_run_to_follow(
    marketing: Marketing, worker: Processes
) -> None:
    load(marketing.ws.id, users(2))
    emulator(
        marketing.resend_url, "POST", "/faults", json={"status": 500, "route": "POST /contacts"}
    )
    response = marketing.post({"audienceName": "doomed"}, wait="true")
    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert error["code"] == "destination_error"
    assert "unavailable" in error["message"]
    assert error["details"]["contactsAdded"] == 0
    assert RESEND_KEY not in response.text
    with session_scope() as session:
        run = session.get_one(SyncRun, error["details"]["run_id"])
        assert run.status == "failed"
