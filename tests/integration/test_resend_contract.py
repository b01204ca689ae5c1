"""Every request the Resend connector sends, and every answer it gets, matches Resend's spec."""

from __future__ import annotations

from typing import Any

import httpx

from emulators.resend.contract import validate_exchange
from shared.config import Settings, get_settings
from shared.db.models import AudienceSync, Destination
from shared.db.session import get_sessionmaker, session_scope
from shared.delivery.http import DeliveryClient, RetryPolicy
from shared.delivery.resend import ResendConnector
from shared.execution import execute_run
from shared.runs import create_run
from shared.secrets import decrypt_json
from tests.conftest import WorkspaceClient, make_sync
from tests.integration.test_runs import destination_contacts, load, people


def checked_connector(exchanges: list[str]) -> Any:
    def check(response: httpx.Response) -> None:
        response.read()
        validate_exchange(response.request, response)
        exchanges.append(f"{response.request.method} {response.status_code}")

    def factory(destination: Destination, settings: Settings) -> ResendConnector:
        policy = RetryPolicy.from_settings(settings)
        api_key = decrypt_json(destination.credentials_encrypted)["api_key"]
        client = DeliveryClient(
            destination.config["base_url"],
            {"Authorization": f"Bearer {api_key}"},
            policy,
            event_hooks={"response": [check]},
        )
        return ResendConnector(destination.config, {}, policy, client=client)

    return factory


def run(sync_id: str, factory: Any) -> str:
    with session_scope() as session:
        run_id = create_run(session, session.get_one(AudienceSync, sync_id), "api").id
    return execute_run(run_id, get_settings(), get_sessionmaker(), connector_factory=factory)


def test_connector_traffic_matches_the_published_spec(ws: WorkspaceClient, resend: Any) -> None:
    rows = people(8)
    rows[0]["first_name"] = None  # Resend refuses null names: the connector must not send one
    load(ws.id, rows)
    segment = httpx.post(
        f"{resend.url}/segments",
        json={"name": "newsletter"},
        headers={"Authorization": "Bearer re_test_key", "User-Agent": "tests"},
    ).json()["id"]
    sync = make_sync(ws, resend.url, "mirror")
    with session_scope() as session:
        destination = session.get_one(AudienceSync, sync["id"]).destination
        destination.config = {**destination.config, "segment_id": segment}
    exchanges: list[str] = []

    assert run(sync["id"], checked_connector(exchanges)) == "succeeded"
    load(ws.id, people(2, start=6, active=False) + people(2, start=4, plan="pro"))
    rows[0]["first_name"] = "Named"
    load(ws.id, rows[:1])
    assert run(sync["id"], checked_connector(exchanges)) == "succeeded"

    methods = {exchange.split()[0] for exchange in exchanges}
    assert {"GET", "POST", "PATCH", "DELETE"} <= methods, exchanges
    held = destination_contacts(resend.url)
    assert len(held) == 8, "removal from a segment keeps the contact"
    in_segment = httpx.get(
        f"{resend.url}/contacts",
        params={"segment_id": segment},
        headers={"Authorization": "Bearer re_test_key", "User-Agent": "tests"},
    ).json()["data"]
    assert sorted(item["email"] for item in in_segment) == [
        f"user{i:04d}@example.com" for i in range(6)
    ]
    assert held["user0000@example.com"]["first_name"] == "Named"
    assert held["user0004@example.com"]["properties"]["plan"] == "pro"
