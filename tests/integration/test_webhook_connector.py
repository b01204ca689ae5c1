"""The webhook connector end to end: runs through ``execute_run`` against the reference receiver,
and the verification snippet of ``docs/webhooks.md`` executed against the real requests."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from emulators.server import EmulatorServer
from emulators.webhook import WebhookReceiver, create_app
from shared.config import Settings, get_settings
from shared.db.models import AudienceSync, Destination, RunError, SyncRun
from shared.db.session import get_sessionmaker, session_scope
from shared.delivery.connector import DestinationError, Record
from shared.delivery.http import DeliveryClient, RetryPolicy
from shared.delivery.webhook import WebhookConnector, signer
from shared.execution import execute_run
from shared.runs import create_run
from shared.secrets import decrypt_json, encrypt_json
from tests.conftest import ROOT, WorkspaceClient, make_sync
from tests.integration.test_runs import load, people

SECRET = "whsec_connector_tests"
DOC = ROOT / "docs" / "webhooks.md"


@pytest.fixture
def receiver() -> Iterator[EmulatorServer]:
    with EmulatorServer(create_app(secret=SECRET)) as server:
        yield server


def state(server: EmulatorServer) -> WebhookReceiver:
    held: WebhookReceiver = server.app.state.emulator
    return held


def control(server: EmulatorServer, method: str, path: str, **kwargs: Any) -> Any:
    response = httpx.request(method, f"{server.url}/_emulator{path}", **kwargs)
    assert response.status_code < 300, response.text
    return response.json()


def batches(server: EmulatorServer, operation: str | None = None) -> list[dict[str, Any]]:
    params = {"operation": operation} if operation else {}
    data: list[dict[str, Any]] = httpx.get(f"{server.url}/batches", params=params).json()["data"]
    return data


def webhook_sync(
    ws: WorkspaceClient, server: EmulatorServer, mode: str, secret: str = SECRET, **config: Any
) -> str:
    """A sync whose destination row is switched to the webhook type (the lead registers it)."""
    sync = make_sync(ws, server.url, mode)
    with session_scope() as session:
        destination = session.get_one(AudienceSync, sync["id"]).destination
        destination.type = "webhook"
        destination.config = {"url": f"{server.url}/webhook?team=growth", **config}
        destination.credentials_encrypted = encrypt_json({"secret": secret})
    sync_id: str = sync["id"]
    return sync_id


class Traffic:
    """Builds connectors the way production does, recording every request sent."""

    def __init__(self) -> None:
        self.sent: list[httpx.Request] = []
        self.statuses: list[int] = []

    def record(self, response: httpx.Response) -> None:
        response.read()
        self.sent.append(response.request)
        self.statuses.append(response.status_code)

    def __call__(self, destination: Destination, settings: Settings) -> WebhookConnector:
        assert destination.type == "webhook"
        credentials = decrypt_json(destination.credentials_encrypted)
        WebhookConnector.validate_config(destination.config, credentials)
        policy = RetryPolicy.from_settings(settings)
        client = DeliveryClient(
            WebhookConnector.base_url(destination.config, credentials),
            WebhookConnector.auth_headers(credentials),
            policy,
            event_hooks={"request": [signer(credentials["secret"])], "response": [self.record]},
        )
        return WebhookConnector(destination.config, credentials, policy, client=client)


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


def doc_verify() -> Callable[..., bool]:
    """The ``verify`` function of the documentation's Python snippet, executed as written."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    [snippet] = [block for block in blocks if "def verify(" in block]
    namespace: dict[str, Any] = {}
    exec(compile(snippet, str(DOC), "exec"), namespace)
    verify: Callable[..., bool] = namespace["verify"]
    return verify


def test_mirror_runs_send_signed_batches_of_the_configured_size(
    ws: WorkspaceClient, receiver: EmulatorServer
) -> None:
    load(ws.id, people(10))
    sync = webhook_sync(ws, receiver, "mirror", batch_size=4, headers={"X-Team": "growth"})
    traffic = Traffic()

    first = run(sync, traffic)
    assert first.status == "succeeded", first.error
    assert counts(first) == (10, 0, 0, 0)
    upserts = batches(receiver, "upsert")
    assert [len(b["records"]) for b in upserts] == [4, 4, 2]
    record = upserts[0]["records"][0]
    assert record == {
        "key": "user0000@example.com",
        "payload": {"email": "user0000@example.com", "first_name": "First0", "plan": "free"},
    }
    assert upserts[0]["headers"]["x-team"] == "growth"
    assert upserts[0]["query"] == "team=growth"
    assert upserts[0]["headers"]["x-audiencesync-batch-id"] == upserts[0]["id"]
    assert upserts[0]["headers"]["content-type"] == "application/json"
    assert first.delivery_paths == {"bulk": 10}

    load(ws.id, people(2, active=False) + people(1, start=10) + people(1, start=5, plan="pro"))
    second = run(sync, traffic)
    assert second.status == "succeeded", second.error
    assert counts(second) == (1, 1, 2, 0)
    [removal] = batches(receiver, "remove")
    assert removal["records"] == [
        {"key": "user0000@example.com", "payload": {}},
        {"key": "user0001@example.com", "payload": {}},
    ]
    latest = batches(receiver, "upsert")[3:]
    assert sorted(r["key"] for b in latest for r in b["records"]) == [
        "user0005@example.com",
        "user0010@example.com",
    ]
    assert all(status == 200 for status in traffic.statuses)


def test_the_documented_snippet_verifies_the_connector_requests(
    ws: WorkspaceClient, receiver: EmulatorServer
) -> None:
    verify = doc_verify()
    load(ws.id, people(5))
    sync = webhook_sync(ws, receiver, "mirror", batch_size=2)
    traffic = Traffic()
    assert run(sync, traffic).status == "succeeded"
    assert len(traffic.sent) == 3
    for request in traffic.sent:
        headers = dict(request.headers)
        body = request.content
        assert verify(SECRET, headers, body)
        assert not verify("another secret", headers, body)
        assert not verify(SECRET, headers, body.replace(b"user", b"USER"))
        assert not verify(SECRET, headers, body, now=time.time() + 301)
        stamp = int(headers["x-audiencesync-timestamp"])
        assert verify(SECRET, headers, body, now=stamp + 299)
    assert not verify(SECRET, {}, b"{}")


def test_a_batch_the_receiver_rejects_is_split_until_the_bad_record_is_alone(
    ws: WorkspaceClient, receiver: EmulatorServer
) -> None:
    load(ws.id, people(8))
    sync = webhook_sync(ws, receiver, "upsert", batch_size=4)
    control(
        receiver,
        "POST",
        "/faults",
        json={
            "status": 422,
            "reject_emails": ["user0005@example.com"],
            "message": "unknown plan " * 100,
        },
    )
    partial = run(sync, Traffic())
    assert partial.status == "partial"
    # The rejected batch of 4 is split (2 + 2, then 1 + 1): only the bad record fails.
    assert counts(partial) == (7, 0, 0, 1)
    with session_scope() as session:
        errors = list(
            session.execute(select(RunError).where(RunError.run_id == partial.id)).scalars()
        )
    assert [e.member_key for e in errors] == ["user0005@example.com"]
    assert errors[0].status_code == 422
    assert errors[0].message.startswith('{"error":"rejected","message":"unknown plan unknown')
    assert len(errors[0].message) <= 500
    assert sorted(len(b["records"]) for b in batches(receiver)) == [1, 2, 4]

    control(receiver, "DELETE", "/faults")
    retry = run(sync, Traffic())
    assert counts(retry) == (1, 0, 0, 0)
    assert sum(len(b["records"]) for b in batches(receiver)) == 8


def test_429s_and_5xx_are_retried_with_the_same_batch_id(
    ws: WorkspaceClient, receiver: EmulatorServer
) -> None:
    load(ws.id, people(9))
    sync = webhook_sync(ws, receiver, "mirror", batch_size=3)
    control(receiver, "POST", "/faults", json={"status": 429, "count": 2})
    control(receiver, "POST", "/faults", json={"status": 503, "count": 2})
    control(receiver, "POST", "/config", json={"fail_after_store": 1})
    traffic = Traffic()

    done = run(sync, traffic)
    assert done.status == "succeeded", done.error
    assert counts(done) == (9, 0, 0, 0)
    held = batches(receiver)
    assert [len(b["records"]) for b in held] == [3, 3, 3], "each batch stored exactly once"
    assert held[0]["deliveries"] == 2, "stored, failed to answer, recognised on the retry"
    assert control(receiver, "GET", "/stats")["faulted"] == 4
    ids = [request.headers["x-audiencesync-batch-id"] for request in traffic.sent]
    assert len(ids) == 3 + 4 + 1 and len(set(ids)) == 3, "retries reuse the batch id"


def test_every_attempt_is_signed_afresh(receiver: EmulatorServer) -> None:
    """A stale first signature would be refused with 401 if a retry reused it."""
    stamps = iter([time.time() - 1000, time.time()])
    policy = RetryPolicy(max_attempts=3, backoff_initial=0.01, backoff_max=0.02)
    config = {"url": f"{receiver.url}/webhook"}
    client = DeliveryClient(
        WebhookConnector.base_url(config, {}),
        {},
        policy,
        event_hooks={"request": [signer(SECRET, clock=lambda: next(stamps))]},
    )
    connector = WebhookConnector(config, {"secret": SECRET}, policy, client=client)
    control(receiver, "POST", "/faults", json={"status": 500, "count": 1})
    try:
        outcomes = list(connector.upsert([Record("a@example.com", {"email": "a@example.com"})]))
    finally:
        connector.close()
    assert [o.ok for o in outcomes] == [True]
    assert len(batches(receiver)) == 1


def test_check_pings_and_a_wrong_secret_is_refused(receiver: EmulatorServer) -> None:
    policy = RetryPolicy(max_attempts=2, backoff_initial=0.01)
    config = {"url": f"{receiver.url}/webhook"}
    good = WebhookConnector(config, {"secret": SECRET}, policy)
    bad = WebhookConnector(config, {"secret": "wrong"}, policy)
    try:
        good.check()
        with pytest.raises(DestinationError, match="invalid_signature"):
            bad.check()
        with pytest.raises(DestinationError, match="invalid_signature"):
            list(bad.upsert([Record("a@example.com", {"email": "a@example.com"})]))
    finally:
        good.close()
        bad.close()
    assert httpx.get(f"{receiver.url}/batches").json() == {"data": [], "total": 0, "pings": 1}


def test_a_wrong_secret_fails_the_run_and_flags_the_sync(
    ws: WorkspaceClient, receiver: EmulatorServer
) -> None:
    load(ws.id, people(3))
    sync = webhook_sync(ws, receiver, "mirror", secret="not the receiver's")
    failed = run(sync, Traffic())
    assert failed.status == "failed"
    assert "refused" in failed.error and "invalid_signature" in failed.error
    assert ws.get(f"/audience-syncs/{sync}").json()["status"] == "error"
    assert batches(receiver) == []


@pytest.mark.parametrize(
    ("config", "credentials", "reason"),
    [
        ({"url": "https://h.example/x"}, {}, "secret"),
        ({}, {"secret": "s"}, "url"),
        ({"url": "ftp://h.example/x"}, {"secret": "s"}, "http"),
        ({"url": "https://u:p@h.example/x"}, {"secret": "s"}, "credentials"),
        ({"url": "https://h.example", "batch_size": 0}, {"secret": "s"}, "batch_size"),
        ({"url": "https://h.example", "batch_size": 1001}, {"secret": "s"}, "batch_size"),
        ({"url": "https://h.example", "batch_size": True}, {"secret": "s"}, "batch_size"),
        ({"url": "https://h.example", "headers": ["x"]}, {"secret": "s"}, "headers"),
        ({"url": "https://h.example", "headers": {"X-A": 1}}, {"secret": "s"}, "string"),
        ({"url": "https://h.example", "headers": {"Bad Name": "v"}}, {"secret": "s"}, "valid"),
        (
            {"url": "https://h.example", "headers": {"X-AudienceSync-Signature": "v1=0"}},
            {"secret": "s"},
            "connector sets",
        ),
        (
            {"url": "https://h.example", "headers": {"Content-Type": "text/plain"}},
            {"secret": "s"},
            "connector sets",
        ),
    ],
)
def test_unusable_settings_are_refused_with_a_reason(
    config: dict[str, Any], credentials: dict[str, Any], reason: str
) -> None:
    with pytest.raises(ValueError, match=reason):
        WebhookConnector.validate_config(config, credentials)


def test_settings_that_work_pass_validation() -> None:
    WebhookConnector.validate_config(
        {"url": "https://hooks.example.com/a?b=c", "batch_size": 1000, "headers": {"X-T": "1"}},
        {"secret": "s"},
    )
    WebhookConnector.validate_mapping(["anything", "metadata_plan"])
    assert WebhookConnector.batch_size == 1000


def test_the_production_factory_builds_a_signing_connector(
    ws: WorkspaceClient, receiver: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through ``build_connector`` (shared Redis limiter included), once registered."""
    from shared.delivery import registry

    monkeypatch.setitem(registry.CONNECTORS, "webhook", WebhookConnector)
    load(ws.id, people(3))
    sync = webhook_sync(ws, receiver, "mirror")
    with session_scope() as session:
        run_id = create_run(session, session.get_one(AudienceSync, sync), "api").id
    status = execute_run(run_id, get_settings(), get_sessionmaker())
    assert status == "succeeded"
    assert [len(b["records"]) for b in batches(receiver)] == [3]
