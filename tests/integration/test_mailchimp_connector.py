"""The Mailchimp connector end to end: ``execute_run`` -> connector -> Mailchimp emulator.

Every request the connector sends and every answer it gets is checked against the
documented shapes (``emulators.mailchimp.contract``); what the emulator holds afterwards is
read back through Mailchimp's own endpoints. The sync is created through our API as usual
(its destination row says ``resend`` until the lead registers ``mailchimp``); the connector
factory builds a ``MailchimpConnector`` from the destination's config and credentials.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from emulators.mailchimp import create_app, subscriber_hash
from emulators.mailchimp.contract import validate_exchange
from emulators.server import EmulatorServer
from shared.config import Settings, get_settings
from shared.db.models import AudienceSync, Destination
from shared.db.session import get_sessionmaker, session_scope
from shared.delivery.connector import DestinationError, Record
from shared.delivery.http import DeliveryClient, RetryPolicy
from shared.delivery.mailchimp import MailchimpConnector
from shared.execution import execute_run
from shared.runs import create_run
from shared.secrets import decrypt_json
from tests.conftest import EMAIL_MAPPING, WorkspaceClient, make_sync
from tests.integration.test_runs import load, people

KEY = "0123456789abcdef0123456789abcdef-us6"
PUT_ROUTE = "PUT /3.0/lists/{list_id}/members/{subscriber_hash}"
BATCH_ROUTE = "POST /3.0/lists/{list_id}"
Factory = Callable[[Destination, Settings], MailchimpConnector]


@pytest.fixture
def mailchimp() -> Iterator[EmulatorServer]:
    with EmulatorServer(create_app(rate=500)) as server:
        yield server


def api(url: str, key: str = KEY) -> httpx.Client:
    return httpx.Client(base_url=f"{url}/3.0", auth=("tests", key), timeout=30)


def admin(url: str, method: str, path: str, **kwargs: Any) -> Any:
    response = httpx.request(method, f"{url}/_emulator{path}", timeout=30, **kwargs)
    assert response.status_code < 300, response.text
    return response.json()


def new_list(url: str) -> str:
    body = {
        "name": "Newsletter",
        "contact": {"company": "Acme", "address1": "1 Main", "city": "Atlanta", "country": "US"},
        "permission_reminder": "You signed up.",
        "email_type_option": False,
        "campaign_defaults": {
            "from_name": "Acme",
            "from_email": "news@acme.io",
            "subject": "News",
            "language": "en",
        },
    }
    with api(url) as client:
        response = client.post("/lists", json=body)
    assert response.status_code == 200, response.text
    list_id: str = response.json()["id"]
    return list_id


def members(url: str, list_id: str, status: str | None = None) -> dict[str, dict[str, Any]]:
    """Every member of the list, read 10 at a time through Mailchimp's pagination."""
    held: dict[str, dict[str, Any]] = {}
    with api(url) as client:
        offset = 0
        while True:
            params: dict[str, Any] = {"count": 10, "offset": offset}
            if status:
                params["status"] = status
            page = client.get(f"/lists/{list_id}/members", params=params).json()
            held.update({m["email_address"]: m for m in page["members"]})
            offset += len(page["members"])
            if offset >= page["total_items"] or not page["members"]:
                return held


def mailchimp_sync(
    ws: WorkspaceClient,
    url: str,
    mode: str,
    key: str = KEY,
    mapping: list[dict[str, str]] | None = None,
    **config: Any,
) -> tuple[str, str]:
    """A sync whose destination is a Mailchimp list of the emulator: ``(sync id, list id)``."""
    list_id = new_list(url)
    sync = make_sync(ws, url, mode, api_key=key)
    with session_scope() as session:
        row = session.get_one(AudienceSync, sync["id"])
        row.destination.config = {"base_url": url, "list_id": list_id, **config}
        if mapping is not None:
            row.field_mapping = mapping
    return sync["id"], list_id


class InFlight:
    """Counts the connector's requests on their way at once (its peak)."""

    def __init__(self) -> None:
        self.now = self.peak = 0
        self.lock = threading.Lock()

    def sent(self, _request: httpx.Request) -> None:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def answered(self, _response: httpx.Response) -> None:
        with self.lock:
            self.now -= 1


def checked_factory(
    exchanges: list[str] | None = None, in_flight: InFlight | None = None
) -> Factory:
    """Builds the connector with a client that contract-checks every exchange."""

    def check(response: httpx.Response) -> None:
        if in_flight is not None:
            in_flight.answered(response)
        response.read()
        validate_exchange(response.request, response)
        if exchanges is not None:
            exchanges.append(f"{response.request.method} {response.status_code}")

    def factory(destination: Destination, settings: Settings) -> MailchimpConnector:
        credentials = decrypt_json(destination.credentials_encrypted)
        policy = RetryPolicy.from_settings(settings)
        client = DeliveryClient(
            MailchimpConnector.base_url(destination.config, credentials),
            MailchimpConnector.auth_headers(credentials),
            policy,
            event_hooks={
                "request": [in_flight.sent] if in_flight is not None else [],
                "response": [check],
            },
        )
        return MailchimpConnector(destination.config, credentials, policy, client=client)

    return factory


def run(
    ws: WorkspaceClient,
    sync_id: str,
    factory: Factory | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    with session_scope() as session:
        run_id = create_run(session, session.get_one(AudienceSync, sync_id), "api").id
    execute_run(
        run_id,
        settings or get_settings(),
        get_sessionmaker(),
        connector_factory=factory or checked_factory(),
    )
    result: dict[str, Any] = ws.get(f"/audience-syncs/{sync_id}/runs/{run_id}").json()
    return result


def connector_for(url: str, list_id: str, key: str = KEY, **config: Any) -> MailchimpConnector:
    credentials = {"api_key": key}
    full = {"base_url": url, "list_id": list_id, **config}
    MailchimpConnector.validate_config(full, credentials)
    return MailchimpConnector(full, credentials, RetryPolicy(backoff_initial=0.01))


TAGGED_MAPPING = [*EMAIL_MAPPING, {"source_column": "metadata.plan", "destination_field": "tags"}]


def test_mirror_runs_add_update_and_archive_members(
    ws: WorkspaceClient, mailchimp: EmulatorServer
) -> None:
    load(ws.id, people(30) + people(10, start=30, active=False))
    sync_id, list_id = mailchimp_sync(
        ws, mailchimp.url, "mirror", mapping=TAGGED_MAPPING, tags=["audiencesync"]
    )
    exchanges: list[str] = []

    first = run(ws, sync_id, checked_factory(exchanges))
    assert first["status"] == "succeeded", first
    assert (first["added"], first["updated"], first["removed"], first["failed"]) == (30, 0, 0, 0)
    assert first["delivery_paths"] == {"bulk": 30}
    held = members(mailchimp.url, list_id)
    assert set(held) == {f"user{i:04d}@example.com" for i in range(30)}
    ann = held["user0003@example.com"]
    assert ann["id"] == subscriber_hash("user0003@example.com")
    assert ann["status"] == "subscribed"
    assert ann["merge_fields"]["FNAME"] == "First3" and ann["merge_fields"]["PLAN"] == "free"
    assert [tag["name"] for tag in ann["tags"]] == ["audiencesync", "free"]
    with api(mailchimp.url) as client:
        fields = client.get(f"/lists/{list_id}/merge-fields", params={"count": 100}).json()
    plan = [f for f in fields["merge_fields"] if f["tag"] == "PLAN"]
    assert plan and plan[0]["type"] == "text", "the connector created the missing merge field"

    # 5 leave, 5 join, 5 change plan.
    load(ws.id, people(5, active=False) + people(5, start=30) + people(5, start=10, plan="pro"))
    second = run(ws, sync_id, checked_factory(exchanges))
    assert second["status"] == "succeeded", second
    assert (second["added"], second["updated"], second["removed"]) == (5, 5, 5)
    assert second["delivery_paths"] == {"bulk": 10, "per_record": 5}
    held = members(mailchimp.url, list_id)
    assert set(held) == {f"user{i:04d}@example.com" for i in range(5, 35)}
    assert held["user0012@example.com"]["merge_fields"]["PLAN"] == "pro"
    assert "pro" in [tag["name"] for tag in held["user0012@example.com"]["tags"]]
    archived = members(mailchimp.url, list_id, status="archived")
    assert set(archived) == {f"user{i:04d}@example.com" for i in range(5)}

    third = run(ws, sync_id, checked_factory(exchanges))
    assert third["status"] == "succeeded"
    assert third["destination_requests"] == 0, "an unchanged audience makes no call"
    assert {"GET 200", "POST 200", "POST 204", "DELETE 204"} <= set(exchanges), exchanges


@pytest.mark.parametrize("connections", [None, 3])
def test_a_run_sends_batches_in_parallel_up_to_the_connection_limit(
    ws: WorkspaceClient, mailchimp: EmulatorServer, connections: int | None
) -> None:
    """Mailchimp limits connections, not requests per second: a run keeps several batches on
    their way at once, never more than the account's 10 or the destination's own cap."""
    load(ws.id, people(120))
    config = {"max_connections": connections} if connections else {}
    sync_id, list_id = mailchimp_sync(ws, mailchimp.url, "upsert", **config)
    admin(mailchimp.url, "POST", "/config", json={"latency": 0.3})
    in_flight = InFlight()
    settings = get_settings().model_copy(update={"batch_size": 10})

    result = run(ws, sync_id, checked_factory(in_flight=in_flight), settings)

    assert result["status"] == "succeeded", result
    assert (result["added"], result["failed"]) == (120, 0)
    assert result["delivery_paths"] == {"bulk": 120}
    assert in_flight.peak == (connections or 10), "12 batches of 10 went side by side"
    assert admin(mailchimp.url, "GET", "/stats")["rate_limited"] == 0
    assert set(members(mailchimp.url, list_id)) == {f"user{i:04d}@example.com" for i in range(120)}


def test_a_few_records_go_one_put_each(ws: WorkspaceClient, mailchimp: EmulatorServer) -> None:
    load(ws.id, people(3))
    sync_id, list_id = mailchimp_sync(ws, mailchimp.url, "upsert", double_opt_in=True)
    result = run(ws, sync_id)
    assert result["status"] == "succeeded", result
    assert result["delivery_paths"] == {"per_record": 3}
    stats = admin(mailchimp.url, "GET", "/stats")
    assert stats["by_route"][PUT_ROUTE] == 3
    assert BATCH_ROUTE not in stats["by_route"]
    held = members(mailchimp.url, list_id)
    assert {m["status"] for m in held.values()} == {"pending"}, "double opt-in"


@pytest.mark.parametrize(("count", "path"), [(12, "bulk"), (4, "per_record")])
def test_a_member_mailchimp_refuses_fails_alone_with_its_message(
    ws: WorkspaceClient, mailchimp: EmulatorServer, count: int, path: str
) -> None:
    load(ws.id, people(count))
    sync_id, list_id = mailchimp_sync(ws, mailchimp.url, "upsert")
    admin(
        mailchimp.url,
        "POST",
        "/faults",
        json={"status": 400, "reject_emails": ["user0002@example.com"]},
    )

    result = run(ws, sync_id)
    assert result["status"] == "partial", result
    assert (result["added"], result["failed"]) == (count - 1, 1)
    assert result["delivery_paths"] == {path: count}
    [error] = result["errors"]
    assert error["member_key"] == "user0002@example.com"
    assert error["status_code"] == 400
    assert "user0002@example.com looks fake or invalid" in error["message"]
    assert "user0002@example.com" not in members(mailchimp.url, list_id)

    admin(mailchimp.url, "DELETE", "/faults")
    retry = run(ws, sync_id)
    assert (retry["status"], retry["added"], retry["unchanged"]) == ("succeeded", 1, count - 1)
    assert len(members(mailchimp.url, list_id)) == count


def test_429s_are_waited_out_not_failed(ws: WorkspaceClient, mailchimp: EmulatorServer) -> None:
    load(ws.id, people(20))
    sync_id, list_id = mailchimp_sync(ws, mailchimp.url, "mirror", tags=["synced"])
    admin(mailchimp.url, "POST", "/faults", json={"status": 429, "count": 3})
    admin(mailchimp.url, "POST", "/config", json={"rate": 5})
    result = run(ws, sync_id)
    assert result["status"] == "succeeded", result
    assert (result["added"], result["failed"]) == (20, 0)
    stats = admin(mailchimp.url, "GET", "/stats")
    assert stats["faulted"] == 3
    assert stats["rate_limited"] >= 1, "20 tag calls at 5/s must meet the window"
    held = members(mailchimp.url, list_id)
    assert len(held) == 20 and all(m["tags_count"] == 1 for m in held.values())


def test_5xx_for_a_while_loses_nothing(ws: WorkspaceClient, mailchimp: EmulatorServer) -> None:
    load(ws.id, people(15))
    sync_id, list_id = mailchimp_sync(ws, mailchimp.url, "mirror")
    admin(mailchimp.url, "POST", "/faults", json={"status": 500, "count": 6})
    result = run(ws, sync_id)
    assert result["status"] == "succeeded", result
    assert (result["added"], result["failed"]) == (15, 0)
    assert len(members(mailchimp.url, list_id)) == 15
    assert admin(mailchimp.url, "GET", "/stats")["faulted"] == 6


def test_a_parallel_run_whose_batches_keep_failing_stops_and_loses_nothing(
    ws: WorkspaceClient, mailchimp: EmulatorServer
) -> None:
    """Batches on their way when one gives up finish and are recorded; no new one starts; the
    run fails with the reason, and the next run delivers everyone."""
    load(ws.id, people(120))
    sync_id, list_id = mailchimp_sync(ws, mailchimp.url, "upsert", max_connections=3)
    admin(mailchimp.url, "POST", "/faults", json={"status": 500, "route": BATCH_ROUTE})
    settings = get_settings().model_copy(update={"batch_size": 10})

    failed = run(ws, sync_id, settings=settings)
    assert failed["status"] == "failed" and "destination unavailable" in failed["error"], failed
    assert failed["added"] == 0 and 0 < failed["failed"] < 120, "no batch after the failure"
    assert failed["failed"] % 10 == 0, "whole batches, each recorded with its reason"
    assert members(mailchimp.url, list_id) == {}

    admin(mailchimp.url, "DELETE", "/faults")
    again = run(ws, sync_id, settings=settings)
    assert (again["status"], again["added"], again["failed"]) == ("succeeded", 120, 0), again
    assert len(members(mailchimp.url, list_id)) == 120


def test_permanent_delete_erases_members(ws: WorkspaceClient, mailchimp: EmulatorServer) -> None:
    load(ws.id, people(4))
    sync_id, list_id = mailchimp_sync(ws, mailchimp.url, "mirror", permanent_delete=True)
    assert run(ws, sync_id)["added"] == 4
    load(ws.id, people(2, active=False))
    result = run(ws, sync_id)
    assert (result["status"], result["removed"]) == ("succeeded", 2)
    assert set(members(mailchimp.url, list_id)) == {"user0002@example.com", "user0003@example.com"}
    assert members(mailchimp.url, list_id, status="archived") == {}
    with api(mailchimp.url) as client:
        gone = client.get(f"/lists/{list_id}/members/{subscriber_hash('user0000@example.com')}")
    assert gone.status_code == 404


def test_unsubscribed_members_stay_unsubscribed(
    ws: WorkspaceClient, mailchimp: EmulatorServer
) -> None:
    load(ws.id, people(3))
    sync_id, list_id = mailchimp_sync(ws, mailchimp.url, "mirror")
    assert run(ws, sync_id)["added"] == 3
    with api(mailchimp.url) as client:
        path = f"/lists/{list_id}/members/{subscriber_hash('user0001@example.com')}"
        assert client.patch(path, json={"status": "unsubscribed"}).status_code == 200
    load(ws.id, people(3, plan="pro"))
    assert run(ws, sync_id)["updated"] == 3
    held = members(mailchimp.url, list_id)
    assert held["user0001@example.com"]["status"] == "unsubscribed"
    assert held["user0001@example.com"]["merge_fields"]["PLAN"] == "pro"
    assert held["user0000@example.com"]["status"] == "subscribed"


def test_refused_credentials_fail_the_run(ws: WorkspaceClient, mailchimp: EmulatorServer) -> None:
    load(ws.id, people(2))
    sync_id, _ = mailchimp_sync(ws, mailchimp.url, "mirror", key="not-a-mailchimp-key")
    result = run(ws, sync_id)
    assert result["status"] == "failed"
    assert "API Key Invalid" in result["error"]
    assert "not-a-mailchimp-key" not in str(result)


def test_check_pings_and_finds_the_list(mailchimp: EmulatorServer) -> None:
    list_id = new_list(mailchimp.url)
    connector = connector_for(mailchimp.url, list_id)
    connector.check()
    assert admin(mailchimp.url, "GET", "/stats")["by_route"]["GET /3.0/ping"] == 1
    with pytest.raises(DestinationError, match="does not exist"):
        connector_for(mailchimp.url, "nolist").check()
    with pytest.raises(DestinationError, match="API Key Invalid"):
        connector_for(mailchimp.url, list_id, key="ffff-us6x").check()


def test_a_changed_email_moves_the_member(mailchimp: EmulatorServer) -> None:
    list_id = new_list(mailchimp.url)
    connector = connector_for(mailchimp.url, list_id)
    [first] = connector.upsert([Record("m1", {"email": "old@example.com", "first_name": "Al"})])
    assert first.ok and first.destination_ref == subscriber_hash("old@example.com")
    [moved] = connector.upsert(
        [Record("m1", {"email": "new@example.com", "first_name": "Al"}, first.destination_ref)]
    )
    assert moved.ok and moved.destination_ref == subscriber_hash("new@example.com")
    held = members(mailchimp.url, list_id)
    assert set(held) == {"new@example.com"} and held["new@example.com"]["merge_fields"]["FNAME"]
    [removed] = connector.remove([Record("m1", {}, moved.destination_ref)])
    [again] = connector.remove([Record("m1", {}, moved.destination_ref)])
    assert removed.ok and again.ok, "a member already gone counts as removed"
    assert members(mailchimp.url, list_id, status="archived").keys() == {"new@example.com"}
    [local] = connector.upsert([Record("m2", {"email": "x@example.com", "status": "gone"})])
    assert not local.ok and "not a Mailchimp member status" in local.error
    connector.close()


def test_settings_and_mapping_are_validated() -> None:
    ok = {"list_id": "abc123"}
    MailchimpConnector.validate_config(ok, {"api_key": KEY})
    for config, credentials, reason in [
        (ok, {}, "api_key"),
        (ok, {"api_key": "nodatacenter"}, "datacenter"),
        ({}, {"api_key": KEY}, "list_id"),
        ({**ok, "double_opt_in": "yes"}, {"api_key": KEY}, "double_opt_in"),
        ({**ok, "tags": "vip"}, {"api_key": KEY}, "tags"),
    ]:
        with pytest.raises(ValueError, match=reason):
            MailchimpConnector.validate_config(config, credentials)
    MailchimpConnector.validate_config({**ok, "base_url": "http://x"}, {"api_key": "plain"})

    MailchimpConnector.validate_mapping(["email", "first_name", "plan", "tags", "status", "SCORE"])
    for fields, reason in [
        (["first_name"], "email"),
        (["email", "favourite_colour"], "merge tag"),
        (["email", "plan-name"], "merge tag"),
        (["email", "plan", "PLAN"], "both write"),
    ]:
        with pytest.raises(ValueError, match=reason):
            MailchimpConnector.validate_mapping(fields)

    assert MailchimpConnector.base_url({}, {"api_key": KEY}) == "https://us6.api.mailchimp.com"
    assert MailchimpConnector.base_url({"base_url": "http://h:1/3.0/"}, {}) == "http://h:1"
    assert MailchimpConnector.auth_headers({"api_key": KEY})["Authorization"].startswith("Basic ")
