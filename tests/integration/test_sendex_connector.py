"""The Sendex connector end to end: runs through ``execute_run`` against the Sendex emulator.

Every request the connector sends and every answer it gets is checked against the documented
API (``emulators.sendex.contract``); what the audience holds afterwards is read through
Sendex's own endpoints.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from emulators.sendex import SendexEmulator, create_app
from emulators.sendex.contract import validate_exchange
from emulators.sendex.state import Contact, new_id, timestamp
from emulators.server import EmulatorServer
from shared.config import Settings, get_settings
from shared.db.models import AudienceSync, Destination, RunError, SyncRun
from shared.db.session import get_sessionmaker, session_scope
from shared.delivery.connector import DestinationError, Record
from shared.delivery.http import DeliveryClient, RetryPolicy
from shared.delivery.sendex import SendexConnector
from shared.execution import execute_run
from shared.runs import create_run
from shared.secrets import decrypt_json, encrypt_json
from tests.conftest import WorkspaceClient, make_sync
from tests.integration.test_runs import load, people

KEY = "sk_test_sync"
MAPPING = [
    {"source_column": "email", "destination_field": "email"},
    {"source_column": "first_name", "destination_field": "first_name"},
    {"source_column": "last_name", "destination_field": "last_name"},
]


@pytest.fixture
def sendex() -> Iterator[EmulatorServer]:
    with EmulatorServer(create_app(rate=500)) as server:
        yield server


class Api:
    """Sendex's own endpoints, for setting up and reading back what the audience holds."""

    def __init__(self, url: str, key: str = KEY) -> None:
        self.client = httpx.Client(
            base_url=url + "/api/v1", headers={"Authorization": f"Bearer {key}"}, timeout=30
        )
        self.admin = httpx.Client(base_url=url + "/_emulator", timeout=30)

    def audience(self, name: str = "Newsletter", domain: str = "example.com") -> str:
        response = self.client.post("/audiences", json={"name": name, "domain": domain})
        assert response.status_code == 201, response.text
        audience_id: str = response.json()["id"]
        return audience_id

    def audiences(self, domain: str = "example.com") -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = self.client.get(
            "/audiences", params={"domain": domain}
        ).json()["data"]
        return data

    def contacts(self, audience: str) -> dict[str, dict[str, Any]]:
        held: dict[str, dict[str, Any]] = {}
        offset = 0
        while True:
            page = self.client.get(
                f"/audiences/{audience}/contacts", params={"limit": 200, "offset": offset}
            ).json()
            held.update({item["email"]: item for item in page["data"]})
            offset += len(page["data"])
            if not page["data"] or offset >= page["total"]:
                return held

    def control(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.admin.request(method, path, **kwargs)
        assert response.status_code < 300, response.text
        return response.json()


@pytest.fixture
def held_api(sendex: EmulatorServer) -> Iterator[Api]:
    client = Api(sendex.url)
    yield client
    client.client.close()
    client.admin.close()


def sendex_sync(
    ws: WorkspaceClient,
    url: str,
    mode: str,
    config: dict[str, Any],
    key: str = KEY,
    mapping: list[dict[str, str]] = MAPPING,
) -> str:
    """A sync whose destination is Sendex (the row is switched to the sendex type, which the
    lead registers separately)."""
    sync = make_sync(ws, url, mode, field_mapping=mapping)
    with session_scope() as session:
        destination = session.get_one(AudienceSync, sync["id"]).destination
        destination.type = "sendex"
        destination.config = {"base_url": url, **config}
        destination.credentials_encrypted = encrypt_json({"api_key": key})
    sync_id: str = sync["id"]
    return sync_id


class Traffic:
    """Builds connectors whose every exchange is contract-checked and recorded."""

    def __init__(self) -> None:
        self.exchanges: list[tuple[str, str, int]] = []

    def check(self, response: httpx.Response) -> None:
        response.read()
        validate_exchange(response.request, response)
        request = response.request
        self.exchanges.append((request.method, str(request.url), response.status_code))

    def __call__(self, destination: Destination, settings: Settings) -> SendexConnector:
        assert destination.type == "sendex"
        credentials = decrypt_json(destination.credentials_encrypted)
        SendexConnector.validate_config(destination.config, credentials)
        policy = RetryPolicy.from_settings(settings)
        client = DeliveryClient(
            SendexConnector.base_url(destination.config, credentials),
            SendexConnector.auth_headers(credentials),
            policy,
            event_hooks={"response": [self.check]},
        )
        return SendexConnector(destination.config, credentials, policy, client=client)

    def methods(self) -> set[str]:
        return {method for method, _, _ in self.exchanges}


def run(sync_id: str, traffic: Traffic) -> SyncRun:
    with session_scope() as session:
        run_id = create_run(session, session.get_one(AudienceSync, sync_id), "api").id
    execute_run(run_id, get_settings(), get_sessionmaker(), connector_factory=traffic)
    with session_scope() as session:
        finished = session.get_one(SyncRun, run_id)
        session.expunge(finished)
        return finished


def counts(run_row: SyncRun) -> tuple[int, int, int, int]:
    return (run_row.added, run_row.updated, run_row.removed, run_row.failed)


def emails(numbers: range | list[int]) -> set[str]:
    return {f"user{i:04d}@example.com" for i in numbers}


def test_mirror_runs_add_update_and_delete(ws: WorkspaceClient, held_api: Api, sendex: Any) -> None:
    audience = held_api.audience()
    rows = people(12)
    rows[0]["last_name"] = "Smith"
    load(ws.id, rows)
    sync = sendex_sync(ws, sendex.url, "mirror", {"audience_id": audience})
    traffic = Traffic()

    first = run(sync, traffic)
    assert first.status == "succeeded", first.error
    assert counts(first) == (12, 0, 0, 0)
    held = held_api.contacts(audience)
    assert set(held) == emails(range(12))
    assert (
        held["user0000@example.com"]["first_name"],
        held["user0000@example.com"]["last_name"],
    ) == (
        "First0",
        "Smith",
    )
    assert held["user0001@example.com"]["last_name"] is None, "no name is sent for a new contact"
    assert held["user0003@example.com"]["subscribed"] is True

    # 3 leave, 2 join, 2 renamed, and user0000 loses the last name.
    rows[0]["last_name"] = None
    renamed = people(2, start=4)
    for row in renamed:
        row["first_name"] = "Renamed"
    load(ws.id, people(3, start=9, active=False) + people(2, start=12) + renamed + rows[:1])
    second = run(sync, traffic)
    assert second.status == "succeeded", second.error
    assert counts(second) == (2, 3, 3, 0)
    held = held_api.contacts(audience)
    assert set(held) == emails([*range(9), 12, 13])
    assert held["user0004@example.com"]["first_name"] == "Renamed"
    assert held["user0000@example.com"]["last_name"] == "", "a cleared name is cleared"
    assert {"POST", "DELETE"} <= traffic.methods()
    assert all(status < 400 for _, _, status in traffic.exchanges), traffic.exchanges

    third = run(sync, traffic)
    assert (third.status, third.destination_requests) == ("succeeded", 0)


def test_an_audience_named_on_a_domain_is_created_once_then_reused(
    ws: WorkspaceClient, held_api: Api, sendex: Any
) -> None:
    other = held_api.audience("Other", "example.com")
    load(ws.id, people(4))
    config = {"domain": "example.com", "audience_name": "Customers"}
    sync = sendex_sync(ws, sendex.url, "mirror", config)
    traffic = Traffic()

    first = run(sync, traffic)
    assert first.status == "succeeded", first.error
    named = [a for a in held_api.audiences() if a["name"] == "Customers"]
    assert len(named) == 1 and named[0]["contact_count"] == 4
    assert held_api.contacts(other) == {}

    load(ws.id, people(1, start=4))
    second = run(sync, traffic)
    assert counts(second) == (1, 0, 0, 0)
    assert [a["contact_count"] for a in held_api.audiences() if a["name"] == "Customers"] == [5]
    creates = [e for e in traffic.exchanges if e[0] == "POST" and e[1].endswith("/audiences")]
    assert len(creates) == 1, "created once, found by name afterwards"


def test_an_unverified_domain_fails_the_run_with_sendex_words(
    ws: WorkspaceClient, held_api: Api, sendex: Any
) -> None:
    held_api.control("POST", "/config", json={"verified_domains": ["example.com"]})
    load(ws.id, people(2))
    config = {"domain": "elsewhere.io", "audience_name": "Customers"}
    sync = sendex_sync(ws, sendex.url, "mirror", config)
    failed = run(sync, Traffic())
    assert failed.status == "failed"
    assert "domain_not_verified" in failed.error and "elsewhere.io" in failed.error


def test_unsubscribe_mode_keeps_leavers_unsubscribed(
    ws: WorkspaceClient, held_api: Api, sendex: Any
) -> None:
    audience = held_api.audience()
    load(ws.id, people(5))
    config = {"audience_id": audience, "remove_mode": "unsubscribe"}
    sync = sendex_sync(ws, sendex.url, "mirror", config)
    traffic = Traffic()
    assert run(sync, traffic).status == "succeeded"
    load(ws.id, people(2, active=False))
    second = run(sync, traffic)
    assert counts(second) == (0, 0, 2, 0)
    held = held_api.contacts(audience)
    assert set(held) == emails(range(5)), "unsubscribing keeps the contact"
    assert {e: c["subscribed"] for e, c in held.items() if not c["subscribed"]} == {
        "user0000@example.com": False,
        "user0001@example.com": False,
    }
    assert "DELETE" not in traffic.methods() and "PATCH" in traffic.methods()


def test_remove_mode_finds_contacts_by_email_across_pages(
    ws: WorkspaceClient, held_api: Api, sendex: EmulatorServer
) -> None:
    audience = held_api.audience()
    for row in people(6):
        held_api.client.post(f"/audiences/{audience}/contacts", json={"email": row["email"]})
    state: SendexEmulator = sendex.app.state.emulator
    with state.lock:  # others in the audience, so the lookup has to page (200 per page)
        held = state.account(KEY).audiences[audience]
        for i in range(450):
            held.add(Contact(id=new_id(), email=f"other{i}@example.com", created_at=timestamp()))
    load(ws.id, people(6))
    sync = sendex_sync(ws, sendex.url, "remove", {"audience_id": audience})
    traffic = Traffic()
    baseline = run(sync, traffic)
    assert (baseline.status, baseline.destination_requests) == ("succeeded", 0)

    load(ws.id, people(2, start=4, active=False))
    removing = run(sync, traffic)
    assert counts(removing) == (0, 0, 2, 0)
    remaining = held_api.contacts(audience)
    assert len(remaining) == 454
    assert not emails([4, 5]) & set(remaining)
    listings = [e for e in traffic.exchanges if e[0] == "GET" and "/contacts" in e[1]]
    assert len(listings) == 3, "one paged listing per run: 456 contacts, 200 per page"


def test_a_contact_sendex_rejects_fails_alone_and_is_retried(
    ws: WorkspaceClient, held_api: Api, sendex: Any
) -> None:
    audience = held_api.audience()
    load(ws.id, people(8))
    sync = sendex_sync(ws, sendex.url, "upsert", {"audience_id": audience})
    held_api.control(
        "POST", "/faults", json={"status": 422, "reject_emails": ["user0003@example.com"]}
    )
    partial = run(sync, Traffic())
    assert partial.status == "partial"
    assert counts(partial) == (7, 0, 0, 1)
    with session_scope() as session:
        [error] = session.execute(select(RunError).where(RunError.run_id == partial.id)).scalars()
        assert error.member_key == "user0003@example.com"
        assert error.status_code == 422
        assert error.message.startswith("validation_error: ")
        assert "user0003@example.com" in error.message
    assert set(held_api.contacts(audience)) == emails(range(8)) - {"user0003@example.com"}

    held_api.control("DELETE", "/faults")
    retry = run(sync, Traffic())
    assert counts(retry) == (1, 0, 0, 0)
    assert set(held_api.contacts(audience)) == emails(range(8))


def test_rate_limits_are_waited_out(ws: WorkspaceClient, held_api: Api, sendex: Any) -> None:
    audience = held_api.audience()
    held_api.control("POST", "/config", json={"rate": 5})
    load(ws.id, people(12))
    sync = sendex_sync(ws, sendex.url, "mirror", {"audience_id": audience})
    done = run(sync, Traffic())
    assert (done.status, done.failed) == ("succeeded", 0)
    assert len(held_api.contacts(audience)) == 12
    assert held_api.control("GET", "/stats")["rate_limited"] >= 1


def test_server_errors_for_a_while_lose_nothing(
    ws: WorkspaceClient, held_api: Api, sendex: Any
) -> None:
    audience = held_api.audience()
    load(ws.id, people(10))
    sync = sendex_sync(ws, sendex.url, "mirror", {"audience_id": audience})
    held_api.control("POST", "/faults", json={"status": 500, "count": 5})
    done = run(sync, Traffic())
    assert done.status == "succeeded", done.error
    assert counts(done) == (10, 0, 0, 0)
    assert len(held_api.contacts(audience)) == 10
    assert held_api.control("GET", "/stats")["faulted"] == 5


def test_a_sending_only_key_fails_the_run_and_flags_the_sync(
    ws: WorkspaceClient, held_api: Api, sendex: Any
) -> None:
    audience = held_api.audience()
    load(ws.id, people(3))
    sync = sendex_sync(ws, sendex.url, "mirror", {"audience_id": audience}, key="sk_send_x")
    failed = run(sync, Traffic())
    assert failed.status == "failed"
    assert "forbidden" in failed.error and "full access" in failed.error
    assert ws.get(f"/audience-syncs/{sync}").json()["status"] == "error"
    assert held_api.contacts(audience) == {}


def test_check_reports_refused_keys_and_missing_audiences(held_api: Api, sendex: Any) -> None:
    audience = held_api.audience()
    policy = RetryPolicy(max_attempts=2, backoff_initial=0.01)

    def check(config: dict[str, Any], key: str = KEY) -> None:
        connector = SendexConnector({"base_url": sendex.url, **config}, {"api_key": key}, policy)
        try:
            connector.check()
        finally:
            connector.close()

    check({"audience_id": audience})
    check({"domain": "example.com", "audience_name": "Not yet created"})
    assert held_api.audiences() and len(held_api.audiences()) == 1, "check() creates nothing"
    with pytest.raises(DestinationError, match="does not exist"):
        check({"audience_id": "000000000000000000000000"})
    with pytest.raises(DestinationError, match="forbidden"):
        check({"audience_id": audience}, key="sk_send_x")
    with pytest.raises(DestinationError, match="unauthorized"):
        check({"domain": "example.com", "audience_name": "x"}, key="nope")


@pytest.mark.parametrize(
    ("config", "credentials", "reason"),
    [
        ({"audience_id": "a"}, {}, "api_key"),
        ({}, {"api_key": KEY}, "audience_id is required"),
        ({"domain": "example.com"}, {"api_key": KEY}, "audience_name"),
        (
            {"audience_id": "a", "domain": "x.io", "audience_name": "n"},
            {"api_key": KEY},
            "not both",
        ),
        ({"domain": "https://x.io", "audience_name": "n"}, {"api_key": KEY}, "domain name"),
        ({"audience_id": "a", "remove_mode": "archive"}, {"api_key": KEY}, "remove_mode"),
        ({"audience_id": 5}, {"api_key": KEY}, "must be a string"),
    ],
)
def test_unusable_settings_are_refused_with_a_reason(
    config: dict[str, Any], credentials: dict[str, Any], reason: str
) -> None:
    with pytest.raises(ValueError, match=reason):
        SendexConnector.validate_config(config, credentials)


def test_settings_that_work_pass_validation() -> None:
    SendexConnector.validate_config(
        {"audience_id": "a", "remove_mode": "unsubscribe"}, {"api_key": KEY}
    )
    SendexConnector.validate_config(
        {"domain": "example.com", "audience_name": "n"}, {"api_key": KEY}
    )
    SendexConnector.validate_mapping(["email", "first_name", "last_name", "subscribed"])
    with pytest.raises(ValueError, match="email"):
        SendexConnector.validate_mapping(["first_name"])
    with pytest.raises(ValueError, match="'plan'"):
        SendexConnector.validate_mapping(["email", "plan"])


def test_subscribed_is_sent_as_a_boolean_only_when_mapped(
    ws: WorkspaceClient, held_api: Api, sendex: Any
) -> None:
    audience = held_api.audience()
    rows = people(3)
    for row, value in zip(rows, [True, "false", None], strict=True):
        row["properties"]["opted_in"] = value
    load(ws.id, rows)
    mapping = [*MAPPING, {"source_column": "metadata.opted_in", "destination_field": "subscribed"}]
    sync = sendex_sync(ws, sendex.url, "mirror", {"audience_id": audience}, mapping=mapping)
    assert run(sync, Traffic()).status == "succeeded"
    held = held_api.contacts(audience)
    assert [held[e]["subscribed"] for e in sorted(held)] == [True, False, True]


def test_a_member_whose_email_changed_leaves_the_old_contact_behind(
    held_api: Api, sendex: Any
) -> None:
    """Sources keyed by something else than the email: the old address is removed."""
    audience = held_api.audience()
    policy = RetryPolicy(max_attempts=2, backoff_initial=0.01)
    traffic = Traffic()
    connector = SendexConnector(
        {"base_url": sendex.url, "audience_id": audience},
        {"api_key": KEY},
        policy,
        client=DeliveryClient(
            sendex.url,
            {"Authorization": f"Bearer {KEY}"},
            policy,
            event_hooks={"response": [traffic.check]},
        ),
    )
    try:
        [first] = connector.upsert([Record("member-1", {"email": "old@example.com"})])
        assert first.ok and first.destination_ref
        [moved] = connector.upsert(
            [Record("member-1", {"email": "new@example.com"}, first.destination_ref)]
        )
        assert moved.ok and moved.destination_ref != first.destination_ref
        assert set(held_api.contacts(audience)) == {"new@example.com"}
        [gone] = connector.remove([Record("member-1", {}, moved.destination_ref)])
        assert gone.ok
    finally:
        connector.close()
    assert held_api.contacts(audience) == {}


def test_the_production_factory_builds_the_connector(
    ws: WorkspaceClient, held_api: Api, sendex: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through ``build_connector`` (shared Redis limiter included), once registered."""
    from shared.delivery import registry

    monkeypatch.setitem(registry.CONNECTORS, "sendex", SendexConnector)
    audience = held_api.audience()
    load(ws.id, people(3))
    sync = sendex_sync(ws, sendex.url, "mirror", {"audience_id": audience})
    with session_scope() as session:
        run_id = create_run(session, session.get_one(AudienceSync, sync), "api").id
    assert execute_run(run_id, get_settings(), get_sessionmaker()) == "succeeded"
    assert set(held_api.contacts(audience)) == emails(range(3))
