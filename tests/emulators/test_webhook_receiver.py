"""The reference webhook receiver: signature and freshness checks, storage once per batch id,
``GET /batches``, and the kit's faults and rate limit.

Requests are signed here with ``hmac`` directly, following ``docs/webhooks.md``, not with the
connector's code, so the receiver is checked against the document.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from emulators.server import EmulatorServer
from emulators.webhook import WebhookReceiver, create_app
from tests.emulators.conftest import cli_config

SECRET = "whsec_receiver_tests"


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(create_app(secret=SECRET)) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _fresh(server: EmulatorServer) -> None:
    receiver: WebhookReceiver = server.app.state.emulator
    receiver.reset()
    receiver.secret = SECRET
    receiver.limiter.set_rate(1000)


@pytest.fixture
def client(server: EmulatorServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield http


def batch(operation: str = "upsert", count: int = 2, **overrides: Any) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "sent_at": "2025-02-05T08:00:00.000Z",
        "operation": operation,
        "records": [
            {"key": f"u{i}@example.com", "payload": {"email": f"u{i}@example.com", "n": i}}
            for i in range(count)
        ],
        **overrides,
    }


def post(
    client: httpx.Client,
    body: dict[str, Any],
    secret: str = SECRET,
    timestamp: int | None = None,
    signature: str | None = None,
    batch_id: str | None = None,
    path: str = "/webhook",
) -> httpx.Response:
    raw = json.dumps(body).encode()
    stamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{stamp}.".encode() + raw, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "X-AudienceSync-Timestamp": str(stamp),
        "X-AudienceSync-Signature": signature or f"v1={digest}",
        "X-AudienceSync-Batch-Id": batch_id or str(body.get("id")),
    }
    return client.post(path, content=raw, headers=headers)


def stored(client: httpx.Client) -> list[dict[str, Any]]:
    body = client.get("/batches").json()
    assert body["total"] == len(body["data"])
    data: list[dict[str, Any]] = body["data"]
    return data


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"] == code
    assert response.json()["message"]


def test_a_signed_batch_is_stored_and_listed(client: httpx.Client) -> None:
    sent = batch(count=3)
    response = post(client, sent, path="/webhook?team=growth")
    assert response.status_code == 200
    assert response.json() == {"id": sent["id"], "accepted": 3}
    [held] = stored(client)
    assert (held["id"], held["operation"], held["records"]) == (
        sent["id"],
        "upsert",
        sent["records"],
    )
    assert held["deliveries"] == 1
    assert held["query"] == "team=growth"
    assert held["headers"]["x-audiencesync-batch-id"] == sent["id"]
    removal = batch("remove", 1)
    assert post(client, removal).status_code == 200
    listed = client.get("/batches", params={"operation": "remove"}).json()["data"]
    assert [b["id"] for b in listed] == [removal["id"]]


def test_a_repeated_batch_id_is_acknowledged_and_stored_once(client: httpx.Client) -> None:
    sent = batch()
    assert post(client, sent).status_code == 200
    again = post(client, sent)
    assert again.status_code == 200 and again.json()["duplicate"] is True
    [held] = stored(client)
    assert held["deliveries"] == 2


def test_a_ping_is_answered_but_not_stored(client: httpx.Client) -> None:
    response = post(client, batch("ping", 0))
    assert response.status_code == 200 and response.json()["ok"] is True
    assert client.get("/batches").json() == {"data": [], "total": 0, "pings": 1}


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"secret": "whsec_other"}, "invalid_signature"),
        ({"signature": "v1=" + "0" * 64}, "invalid_signature"),
        ({"signature": "v0=abc"}, "invalid_signature"),
        ({"timestamp_offset": -400}, "stale_timestamp"),
        ({"timestamp_offset": 400}, "stale_timestamp"),
    ],
)
def test_bad_or_stale_signatures_are_refused(
    client: httpx.Client, change: dict[str, Any], code: str
) -> None:
    if "timestamp_offset" in change:  # computed now, not when the tests were collected
        change = {"timestamp": int(time.time()) + change["timestamp_offset"]}
    assert_error(post(client, batch(), **change), 401, code)
    assert stored(client) == []


def test_missing_or_malformed_signature_headers_are_refused(client: httpx.Client) -> None:
    raw = json.dumps(batch()).encode()
    assert_error(client.post("/webhook", content=raw), 401, "missing_signature")
    headers = {"X-AudienceSync-Timestamp": "yesterday", "X-AudienceSync-Signature": "v1=00"}
    assert_error(client.post("/webhook", content=raw, headers=headers), 401, "invalid_timestamp")
    assert stored(client) == []


def test_a_tampered_body_is_refused(client: httpx.Client) -> None:
    sent = batch()
    stamp = int(time.time())
    raw = json.dumps(sent).encode()
    digest = hmac.new(SECRET.encode(), f"{stamp}.".encode() + raw, hashlib.sha256).hexdigest()
    tampered = raw.replace(b"u0@example.com", b"u9@example.com")
    headers = {
        "X-AudienceSync-Timestamp": str(stamp),
        "X-AudienceSync-Signature": f"v1={digest}",
        "X-AudienceSync-Batch-Id": sent["id"],
    }
    assert_error(
        client.post("/webhook", content=tampered, headers=headers), 401, "invalid_signature"
    )
    assert client.post("/webhook", content=raw, headers=headers).status_code == 200


def test_fresh_enough_and_rotated_signatures_are_accepted(client: httpx.Client) -> None:
    assert post(client, batch(), timestamp=int(time.time()) - 290).status_code == 200
    sent = batch()
    raw = json.dumps(sent).encode()
    stamp = int(time.time())
    good = hmac.new(SECRET.encode(), f"{stamp}.".encode() + raw, hashlib.sha256).hexdigest()
    headers = {
        "X-AudienceSync-Timestamp": str(stamp),
        "X-AudienceSync-Signature": f"v1={'f' * 64}, v1={good}",
        "X-AudienceSync-Batch-Id": sent["id"],
    }
    assert client.post("/webhook", content=raw, headers=headers).status_code == 200
    assert len(stored(client)) == 2


@pytest.mark.parametrize(
    ("body", "batch_id"),
    [
        (batch(), "another-id"),
        (batch(operation="merge"), None),
        (batch(records=[{"key": 1, "payload": {}}]), None),
        (batch(records=[{"key": "k", "payload": []}]), None),
        (batch(id=""), "x"),
    ],
)
def test_malformed_batches_are_400(
    client: httpx.Client, body: dict[str, Any], batch_id: str | None
) -> None:
    assert_error(post(client, body, batch_id=batch_id), 400, "invalid_body")
    assert stored(client) == []


def test_faults_make_the_receiver_fail_and_change_nothing(
    client: httpx.Client, admin: httpx.Client
) -> None:
    admin.post("/faults", json={"status": 500, "count": 1}).raise_for_status()
    admin.post("/faults", json={"status": 429, "count": 1}).raise_for_status()
    sent = batch()
    assert post(client, sent).status_code == 500
    limited = post(client, sent)
    assert limited.status_code == 429 and limited.headers["retry-after"] == "1"
    assert stored(client) == []
    assert post(client, sent).status_code == 200

    admin.post(
        "/faults", json={"status": 422, "reject_emails": ["u1@example.com"]}
    ).raise_for_status()
    rejected = post(client, batch(count=3))
    assert_error(rejected, 422, "rejected")
    assert "u1@example.com" in rejected.json()["message"]
    assert len(stored(client)) == 1
    assert admin.get("/stats").json()["faulted"] == 3


def test_fail_after_store_simulates_a_crash_after_commit(
    client: httpx.Client, admin: httpx.Client
) -> None:
    admin.post("/config", json={"fail_after_store": 1}).raise_for_status()
    sent = batch()
    assert post(client, sent).status_code == 500
    assert [b["id"] for b in stored(client)] == [sent["id"]]
    assert post(client, sent).json()["duplicate"] is True
    assert admin.get("/config").json()["fail_after_store"] == 0


def test_the_rate_limit_answers_429_and_stores_nothing(
    client: httpx.Client, admin: httpx.Client
) -> None:
    admin.post("/config", json={"rate": 2}).raise_for_status()
    admin.post("/reset").raise_for_status()
    assert post(client, batch()).status_code == 200
    assert post(client, batch()).status_code == 200
    refused = post(client, batch())
    assert_error(refused, 429, "rate_limited")
    assert int(refused.headers["retry-after"]) >= 1
    admin.post("/config", json={"rate": 1000}).raise_for_status()
    assert len(stored(client)) == 2


def test_the_secret_and_tolerance_are_configurable(
    client: httpx.Client, admin: httpx.Client
) -> None:
    config = admin.post("/config", json={"secret": "rotated", "tolerance_seconds": 10}).json()
    assert (config["secret"], config["tolerance_seconds"]) == ("rotated", 10)
    assert_error(post(client, batch()), 401, "invalid_signature")
    assert post(client, batch(), secret="rotated").status_code == 200
    stale = post(client, batch(), secret="rotated", timestamp=int(time.time()) - 30)
    assert_error(stale, 401, "stale_timestamp")
    assert admin.post("/config", json={"secret": ""}).status_code == 400
    admin.post("/config", json={"tolerance_seconds": 300}).raise_for_status()
    assert admin.get("/accounts").json() == {"receiver": {"batches": 1, "records": 2, "pings": 0}}


def test_the_cli_serves_the_receiver_with_its_secret() -> None:
    assert cli_config("emulators.webhook", "--secret", "cli-secret")["secret"] == "cli-secret"
