"""The Klaviyo connector end to end through ``execute_run`` against the Klaviyo emulator.

Every request the connector sends and every answer it gets is validated against the bundled
Klaviyo spec; what the emulator holds afterwards is read through Klaviyo's own endpoints.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from emulators.klaviyo import create_app
from emulators.klaviyo.contract import validate_exchange
from emulators.klaviyo.specs import route_limits
from emulators.server import EmulatorServer
from shared.config import Settings, get_settings
from shared.db.models import AudienceSync, Destination, RunError, SyncRun
from shared.db.session import get_sessionmaker, session_scope
from shared.delivery.connector import DestinationError, Record
from shared.delivery.http import DeliveryClient, RetryPolicy
from shared.delivery.klaviyo import KlaviyoConnector
from shared.execution import execute_run
from shared.runs import create_run
from tests.conftest import WorkspaceClient, make_sync
from tests.integration.test_runs import load, people

KEY = "pk_test_key"
HEADERS = {
    "Authorization": f"Klaviyo-API-Key {KEY}",
    "revision": "2026-07-15",
    "Accept": "application/vnd.api+json",
}


@pytest.fixture
def klaviyo() -> Iterator[EmulatorServer]:
    with EmulatorServer(create_app()) as server:
        yield server
        server.app.state.emulator.wait_for_jobs()


def api(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers=HEADERS)


def new_list(url: str) -> str:
    with api(url) as client:
        response = client.post(
            "/api/lists",
            content=json.dumps({"data": {"type": "list", "attributes": {"name": "audience"}}}),
            headers={"Content-Type": "application/vnd.api+json"},
        )
    assert response.status_code == 201, response.text
    return str(response.json()["data"]["id"])


def list_members(url: str, list_id: str) -> dict[str, dict[str, Any]]:
    """Email -> profile attributes of every list member, through Klaviyo's pagination."""
    held: dict[str, dict[str, Any]] = {}
    with api(url) as client:
        next_url: str | None = f"/api/lists/{list_id}/profiles?page[size]=100"
        while next_url:
            page = client.get(next_url)
            assert page.status_code == 200, page.text
            for item in page.json()["data"]:
                held[item["attributes"]["email"]] = {"id": item["id"], **item["attributes"]}
            next_url = page.json()["links"].get("next")
    return held


def profile(url: str, email: str) -> dict[str, Any] | None:
    with api(url) as client:
        found = client.get(
            "/api/profiles",
            params={
                "filter": f"equals(email,'{email}')",
                "additional-fields[profile]": "subscriptions",
            },
        ).json()["data"]
    return {"id": found[0]["id"], **found[0]["attributes"]} if found else None


class Traffic:
    """Builds connectors whose every exchange is contract-checked and recorded."""

    def __init__(self) -> None:
        self.exchanges: list[tuple[str, str, int]] = []

    def check(self, response: httpx.Response) -> None:
        response.read()
        validate_exchange(response.request, response)
        request = response.request
        self.exchanges.append((request.method, request.url.path, response.status_code))

    def factory(self, destination: Destination, settings: Settings) -> KlaviyoConnector:
        policy = RetryPolicy.from_settings(settings)
        client = DeliveryClient(
            destination.config["base_url"],
            KlaviyoConnector.auth_headers({"api_key": KEY}),
            policy,
            event_hooks={"response": [self.check]},
        )
        connector = KlaviyoConnector(destination.config, {"api_key": KEY}, policy, client=client)
        connector.poll_initial = 0.05
        return connector

    def routes(self) -> set[str]:
        return {f"{method} {path.split('/')[2]}" for method, path, _ in self.exchanges}


def klaviyo_sync(ws: WorkspaceClient, url: str, list_id: str, **config: Any) -> str:
    sync = make_sync(ws, url, "mirror")
    with session_scope() as session:
        destination = session.get_one(AudienceSync, sync["id"]).destination
        destination.config = {"base_url": url, "list_id": list_id, **config}
    return str(sync["id"])


def run(sync_id: str, traffic: Traffic) -> tuple[str, SyncRun, list[RunError]]:
    with session_scope() as session:
        run_id = create_run(session, session.get_one(AudienceSync, sync_id), "api").id
    status = execute_run(
        run_id, get_settings(), get_sessionmaker(), connector_factory=traffic.factory
    )
    with session_scope() as session:
        finished = session.get_one(SyncRun, run_id)
        session.expunge(finished)
        errors = list(session.scalars(select(RunError).where(RunError.run_id == run_id)))
        for error in errors:
            session.expunge(error)
    return status, finished, errors


def test_mirror_bulk_import_then_updates_and_removals(
    ws: WorkspaceClient, klaviyo: EmulatorServer
) -> None:
    list_id = new_list(klaviyo.url)
    load(ws.id, people(30))
    sync_id = klaviyo_sync(ws, klaviyo.url, list_id)
    traffic = Traffic()

    status, first, errors = run(sync_id, traffic)
    assert status == "succeeded", errors
    assert first.delivery_paths == {"bulk": 30}
    held = list_members(klaviyo.url, list_id)
    assert len(held) == 30
    assert held["user0007@example.com"]["first_name"] == "First7"
    assert held["user0007@example.com"]["properties"] == {"plan": "free"}
    assert ("POST", "/api/profile-bulk-import-jobs", 202) in traffic.exchanges

    load(ws.id, people(3, start=27, active=False) + people(2, start=0, plan="pro"))
    status, second, errors = run(sync_id, traffic)
    assert status == "succeeded", errors
    assert (second.updated, second.removed) == (2, 3)
    held = list_members(klaviyo.url, list_id)
    assert sorted(held) == [f"user{i:04d}@example.com" for i in range(27)]
    assert held["user0001@example.com"]["properties"] == {"plan": "pro"}
    removed = profile(klaviyo.url, "user0028@example.com")
    assert removed is not None, "leaving the list never deletes the profile"
    assert {"POST profile-import", "DELETE lists", "POST lists", "GET lists"} <= traffic.routes()


def test_a_record_klaviyo_rejects_fails_alone(ws: WorkspaceClient, klaviyo: EmulatorServer) -> None:
    list_id = new_list(klaviyo.url)
    httpx.post(
        f"{klaviyo.url}/_emulator/faults",
        json={"status": 400, "reject_emails": ["user0004@example.com", "user0031@example.com"]},
    )
    load(ws.id, people(20))
    sync_id = klaviyo_sync(ws, klaviyo.url, list_id)
    traffic = Traffic()

    status, _, errors = run(sync_id, traffic)
    assert status == "partial"
    assert [(e.member_key, e.operation) for e in errors] == [("user0004@example.com", "add")]
    assert "user0004@example.com" in errors[0].message and "rejected" in errors[0].message
    assert len(list_members(klaviyo.url, list_id)) == 19

    # The per-record path: Klaviyo's 400 for the one record, the others delivered.
    load(ws.id, people(3, start=30))
    status, _, errors = run(sync_id, traffic)
    assert status == "partial"
    by_key = {e.member_key: e for e in errors}
    assert by_key["user0031@example.com"].status_code == 400
    assert "rejected" in by_key["user0031@example.com"].message
    held = list_members(klaviyo.url, list_id)
    assert {"user0030@example.com", "user0032@example.com"} <= set(held)
    assert "user0031@example.com" not in held


def test_rate_limits_are_waited_out(ws: WorkspaceClient, klaviyo: EmulatorServer) -> None:
    """Tight windows (the client paces itself on ``RateLimit-Remaining: 0``) plus 429s
    with ``Retry-After`` (injected, since a paced client does not run into the limiter)."""
    list_id = new_list(klaviyo.url)
    httpx.post(
        f"{klaviyo.url}/_emulator/config",
        json={
            "route_limits": {
                "POST /api/profile-import": [{"limit": 2, "seconds": 1}],
                "GET /api/profile-bulk-import-jobs/{job_id}": [{"limit": 1, "seconds": 1}],
            }
        },
    )
    for route in ("POST /api/profile-import", "POST /api/profile-bulk-import-jobs"):
        httpx.post(
            f"{klaviyo.url}/_emulator/faults", json={"status": 429, "count": 1, "route": route}
        )
    load(ws.id, people(5))
    sync_id = klaviyo_sync(ws, klaviyo.url, list_id)
    traffic = Traffic()
    status, _, errors = run(sync_id, traffic)
    assert status == "succeeded", errors
    assert len(list_members(klaviyo.url, list_id)) == 5
    load(ws.id, people(15, start=5))
    status, _, errors = run(sync_id, traffic)
    assert status == "succeeded", errors
    assert len(list_members(klaviyo.url, list_id)) == 20
    limited = [e for e in traffic.exchanges if e[2] == 429]
    assert {path for _, path, _ in limited} == {
        "/api/profile-import",
        "/api/profile-bulk-import-jobs",
    }
    stats = httpx.get(f"{klaviyo.url}/_emulator/stats").json()
    assert stats["by_route"]["POST /api/profile-import"] == 6


def test_server_errors_for_a_while_lose_nothing(
    ws: WorkspaceClient, klaviyo: EmulatorServer
) -> None:
    list_id = new_list(klaviyo.url)
    for route in (
        "POST /api/profile-bulk-import-jobs",
        "GET /api/profile-bulk-import-jobs/{job_id}",
    ):
        httpx.post(
            f"{klaviyo.url}/_emulator/faults", json={"status": 503, "count": 2, "route": route}
        )
    load(ws.id, people(25))
    sync_id = klaviyo_sync(ws, klaviyo.url, list_id)
    traffic = Traffic()
    status, _, errors = run(sync_id, traffic)
    assert status == "succeeded", errors
    assert len(list_members(klaviyo.url, list_id)) == 25
    assert sum(1 for e in traffic.exchanges if e[2] == 503) == 4


def test_subscribe_gives_and_withdraws_email_consent(
    ws: WorkspaceClient, klaviyo: EmulatorServer
) -> None:
    list_id = new_list(klaviyo.url)
    load(ws.id, people(12))
    sync_id = klaviyo_sync(ws, klaviyo.url, list_id, subscribe=True)
    traffic = Traffic()
    status, _, errors = run(sync_id, traffic)
    assert status == "succeeded", errors
    consent = profile(klaviyo.url, "user0005@example.com")
    assert consent is not None
    assert consent["subscriptions"]["email"]["marketing"]["consent"] == "SUBSCRIBED"

    load(ws.id, people(2, start=10, active=False))
    status, _, errors = run(sync_id, traffic)
    assert status == "succeeded", errors
    assert len(list_members(klaviyo.url, list_id)) == 10
    gone = profile(klaviyo.url, "user0011@example.com")
    assert gone is not None
    marketing = gone["subscriptions"]["email"]["marketing"]
    assert marketing["list_suppressions"][0]["list_id"] == list_id
    assert marketing["consent"] == "SUBSCRIBED", "unsubscribed from this list only"
    assert ("POST", "/api/profile-subscription-bulk-delete-jobs", 202) in traffic.exchanges


def test_a_cancelled_job_fails_its_records_with_the_reason(
    ws: WorkspaceClient, klaviyo: EmulatorServer
) -> None:
    list_id = new_list(klaviyo.url)
    httpx.post(f"{klaviyo.url}/_emulator/config", json={"cancel_jobs": "Import paused by admin."})
    load(ws.id, people(12))
    sync_id = klaviyo_sync(ws, klaviyo.url, list_id)
    status, finished, errors = run(sync_id, Traffic())
    assert status == "partial"
    assert finished.failed == 12
    assert {e.message for e in errors} == {"Import paused by admin."}
    httpx.post(f"{klaviyo.url}/_emulator/config", json={"cancel_jobs": None})
    status, finished, errors = run(sync_id, Traffic())
    assert status == "succeeded", errors
    assert len(list_members(klaviyo.url, list_id)) == 12


def test_check_refuses_a_missing_list_or_key(klaviyo: EmulatorServer) -> None:
    policy = RetryPolicy(max_attempts=2, backoff_initial=0.01)
    config = {"base_url": klaviyo.url, "list_id": "NoSuch"}
    missing = KlaviyoConnector(config, {"api_key": KEY}, policy)
    with pytest.raises(DestinationError, match="NoSuch does not exist"):
        missing.check()
    config["list_id"] = new_list(klaviyo.url)
    refused = KlaviyoConnector(config, {"api_key": "not-a-key"}, policy)
    with pytest.raises(DestinationError, match="refused the credentials"):
        refused.check()
    KlaviyoConnector(config, {"api_key": KEY}, policy).check()
    old = KlaviyoConnector({**config, "revision": "2019-01-01"}, {"api_key": KEY}, policy)
    with pytest.raises(DestinationError, match="revision"):
        old.check()


def test_settings_and_mapping_are_validated() -> None:
    with pytest.raises(ValueError, match="private API key"):
        KlaviyoConnector.validate_config({"list_id": "L"}, {"api_key": "abc"})
    with pytest.raises(ValueError, match="list_id"):
        KlaviyoConnector.validate_config({}, {"api_key": "pk_x"})
    with pytest.raises(ValueError, match="subscribe"):
        KlaviyoConnector.validate_config({"list_id": "L", "subscribe": "yes"}, {"api_key": "pk_x"})
    KlaviyoConnector.validate_config({"list_id": "L", "subscribe": True}, {"api_key": "pk_x"})
    with pytest.raises(ValueError, match="email, phone_number or external_id"):
        KlaviyoConnector.validate_mapping(["first_name", "plan"])
    KlaviyoConnector.validate_mapping(["external_id", "plan"])


def test_a_job_past_the_deadline_fails_its_records(klaviyo: EmulatorServer) -> None:
    """Polling is bounded: a job still queued at the deadline fails its records (they are
    sent again next run) instead of blocking the run."""
    list_id = new_list(klaviyo.url)
    httpx.post(f"{klaviyo.url}/_emulator/config", json={"job_delay": 3})
    policy = RetryPolicy(max_attempts=2, backoff_initial=0.01)
    config = {"base_url": klaviyo.url, "list_id": list_id}
    connector = KlaviyoConnector(config, {"api_key": KEY}, policy)
    connector.job_timeout = 0.5
    connector.poll_initial = 0.1
    records = [Record(f"k{i}", {"email": f"late{i}@example.com"}) for i in range(12)]
    outcomes = connector.upsert(records)
    assert [o.ok for o in outcomes] == [False] * 12
    assert "still queued" in outcomes[0].error
    assert 2 <= connector.request_count <= 8


def test_route_limits_follow_the_published_spec() -> None:
    """Each endpoint the connector paces on its own runs at the spec's steady rate (one short of
    the minute's budget), never above its burst."""
    published = route_limits()
    assert KlaviyoConnector.route_limits
    for limit in KlaviyoConnector.route_limits:
        windows = {window.seconds: window.limit for window in published[limit.bucket]}
        assert limit.rate == pytest.approx((windows[60.0] - 1) / 60), limit.bucket
        assert limit.rate * 1 <= windows[1.0] and limit.burst <= windows[1.0]
