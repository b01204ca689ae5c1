"""Behaviour of the Sendex audiences API emulator, over real HTTP.

Every client here validates each exchange against the documented shapes
(``emulators.sendex.contract``), so these tests are also the emulator's contract tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from emulators.sendex import SendexEmulator, create_app
from emulators.sendex.contract import (
    ContractViolation,
    in_spec,
    validate_exchange,
    validate_request,
)
from emulators.server import EmulatorServer
from tests.conftest import wait_until
from tests.emulators.conftest import Clients, Recorder, cli_config

KEY = "sk_test_alpha"
OTHER_KEY = "sk_test_beta"
SENDING_KEY = "sk_send_alpha"
FAST = 1000.0
ClientFactory = Callable[..., httpx.Client]


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(create_app(rate=FAST)) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _fresh(server: EmulatorServer) -> None:
    state: SendexEmulator = server.app.state.emulator
    state.reset()
    state.limiter.set_rate(FAST)
    state.verified_domains = None


@pytest.fixture
def make_client(server: EmulatorServer) -> Iterator[ClientFactory]:
    with Clients(server.url, Recorder(validate_exchange, in_spec).hook) as clients:

        def make(key: str | None = KEY) -> httpx.Client:
            return clients.make({"Authorization": f"Bearer {key}"} if key else {})

        yield make


@pytest.fixture
def client(make_client: ClientFactory) -> httpx.Client:
    return make_client()


def assert_error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "message"}
    assert body["error"] == code
    assert isinstance(body["message"], str) and body["message"]
    message: str = body["message"]
    return message


def new_audience(
    client: httpx.Client, name: str = "Newsletter", domain: str = "example.com"
) -> str:
    response = client.post("/api/v1/audiences", json={"name": name, "domain": domain})
    assert response.status_code == 201, response.text
    audience_id: str = response.json()["id"]
    return audience_id


def add(client: httpx.Client, audience: str, email: str, **fields: Any) -> dict[str, Any]:
    response = client.post(
        f"/api/v1/audiences/{audience}/contacts", json={"email": email, **fields}
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


# --- audiences ----------------------------------------------------------------------


def test_audiences_are_created_listed_per_domain_retrieved_and_deleted(
    client: httpx.Client,
) -> None:
    response = client.post(
        "/api/v1/audiences", json={"name": "Newsletter", "domain": "Example.com"}
    )
    assert response.status_code == 201
    created = response.json()
    assert created["name"] == "Newsletter"
    assert created["domain"] == "example.com"
    assert created["contact_count"] == 0
    assert created["created_at"].endswith("Z")
    other = new_audience(client, "Product", "other.org")

    listed = client.get("/api/v1/audiences", params={"domain": "example.com"}).json()
    assert listed["total"] == 1
    assert [a["id"] for a in listed["data"]] == [created["id"]]

    add(client, created["id"], "a@example.com")
    fetched = client.get(f"/api/v1/audiences/{created['id']}").json()
    assert fetched["contact_count"] == 1

    assert client.delete(f"/api/v1/audiences/{created['id']}").json() == {"id": created["id"]}
    assert_error(client.get(f"/api/v1/audiences/{created['id']}"), 404, "not_found")
    gone = client.get(f"/api/v1/audiences/{created['id']}/contacts")
    assert_error(gone, 404, "not_found")
    assert client.get("/api/v1/audiences", params={"domain": "other.org"}).json()["total"] == 1
    assert client.get(f"/api/v1/audiences/{other}").status_code == 200


def test_audience_requests_are_validated(client: httpx.Client, admin: httpx.Client) -> None:
    assert "domain" in assert_error(client.get("/api/v1/audiences"), 422, "validation_error")
    bad_domain = client.get("/api/v1/audiences", params={"domain": "not a domain"})
    assert_error(bad_domain, 422, "validation_error")
    no_name = client.post("/api/v1/audiences", json={"domain": "example.com"})
    assert "name" in assert_error(no_name, 422, "validation_error")
    not_json = client.post(
        "/api/v1/audiences", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert_error(not_json, 400, "bad_request")

    admin.post("/config", json={"verified_domains": ["example.com"]}).raise_for_status()
    refused = client.post("/api/v1/audiences", json={"name": "x", "domain": "unverified.io"})
    assert "unverified.io" in assert_error(refused, 422, "domain_not_verified")
    assert client.get("/api/v1/audiences", params={"domain": "unverified.io"}).json()["total"] == 0
    assert new_audience(client, "ok", "example.com")


# --- contacts -----------------------------------------------------------------------


def test_posting_a_known_email_updates_the_contact_in_place(client: httpx.Client) -> None:
    audience = new_audience(client)
    first = add(client, audience, "Alice@Example.com", first_name="Alice", last_name="Smith")
    assert first["email"] == "alice@example.com"
    assert first["subscribed"] is True, "subscribed defaults to true"

    unsub = client.patch(
        f"/api/v1/audiences/{audience}/contacts/{first['id']}", json={"subscribed": False}
    )
    assert unsub.status_code == 200 and unsub.json()["subscribed"] is False

    again = add(client, audience, "alice@example.com", first_name="Alicia")
    assert again["id"] == first["id"]
    assert again["created_at"] == first["created_at"]
    assert (again["first_name"], again["last_name"]) == ("Alicia", "Smith")
    assert again["subscribed"] is False, "an omitted field keeps its value on update"
    assert client.get(f"/api/v1/audiences/{audience}").json()["contact_count"] == 1
    fetched = client.get(f"/api/v1/audiences/{audience}/contacts/{first['id']}").json()
    assert fetched == again


def test_contacts_are_patched_and_deleted(client: httpx.Client) -> None:
    audience = new_audience(client)
    contact = add(client, audience, "bob@example.com")
    assert contact["first_name"] is None
    path = f"/api/v1/audiences/{audience}/contacts/{contact['id']}"

    patched = client.patch(path, json={"first_name": "Bob", "last_name": ""}).json()
    assert (patched["first_name"], patched["last_name"], patched["subscribed"]) == ("Bob", "", True)
    no_email_change = client.patch(path, json={"email": "robert@example.com"})
    assert "email" in assert_error(no_email_change, 422, "validation_error")

    assert client.delete(path).json() == {"id": contact["id"]}
    assert_error(client.get(path), 404, "not_found")
    assert_error(client.delete(path), 404, "not_found")
    assert_error(client.patch(path, json={"subscribed": True}), 404, "not_found")


def test_a_contact_is_only_reachable_through_its_own_audience(client: httpx.Client) -> None:
    first, second = new_audience(client, "a"), new_audience(client, "b")
    contact = add(client, first, "c@example.com")
    response = client.get(f"/api/v1/audiences/{second}/contacts/{contact['id']}")
    assert "Contact" in assert_error(response, 404, "not_found")
    missing = client.post(
        "/api/v1/audiences/000000000000000000000000/contacts", json={"email": "c@example.com"}
    )
    assert "Audience" in assert_error(missing, 404, "not_found")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "email"),
        ({"email": "not-an-email"}, "email"),
        ({"email": 7}, "email"),
        ({"email": "d@example.com", "first_name": None}, "first_name"),
        ({"email": "d@example.com", "last_name": 3}, "last_name"),
        ({"email": "d@example.com", "first_name": "x" * 256}, "first_name"),
        ({"email": "d@example.com", "subscribed": "yes"}, "subscribed"),
    ],
)
def test_contact_bodies_are_validated_and_change_nothing(
    make_client: ClientFactory, body: dict[str, Any], field: str
) -> None:
    client = make_client()
    audience = new_audience(client)
    # Sent without the contract hook: these bodies break the documented schema on purpose.
    with httpx.Client(base_url=str(client.base_url), headers=client.headers) as raw:
        response = raw.post(f"/api/v1/audiences/{audience}/contacts", json=body)
    assert field in assert_error(response, 422, "validation_error")
    assert client.get(f"/api/v1/audiences/{audience}").json()["contact_count"] == 0


# --- pagination ---------------------------------------------------------------------


def test_contacts_page_with_limit_and_offset(client: httpx.Client, server: EmulatorServer) -> None:
    audience = new_audience(client)
    state: SendexEmulator = server.app.state.emulator
    emails = [f"user{i:03d}@example.com" for i in range(230)]
    for email in emails[:5]:
        add(client, audience, email)
    # The rest seeded directly: the paging, not the POSTs, is under test.
    from emulators.sendex.state import Contact, new_id, timestamp

    with state.lock:
        held = state.account(KEY).audiences[audience]
        for email in emails[5:]:
            held.add(Contact(id=new_id(), email=email, created_at=timestamp()))

    default = client.get(f"/api/v1/audiences/{audience}/contacts").json()
    assert (len(default["data"]), default["total"], default["limit"], default["offset"]) == (
        50,
        230,
        50,
        0,
    )
    seen: list[str] = []
    offset = 0
    while offset < 230:
        page = client.get(
            f"/api/v1/audiences/{audience}/contacts", params={"limit": 200, "offset": offset}
        ).json()
        assert page["limit"] == 200 and page["offset"] == offset
        seen += [item["email"] for item in page["data"]]
        offset += len(page["data"])
    assert seen == emails, "oldest first, every contact exactly once"
    past = client.get(f"/api/v1/audiences/{audience}/contacts", params={"offset": 500}).json()
    assert (past["data"], past["total"]) == ([], 230)
    for params in ({"limit": 0}, {"limit": 201}, {"limit": "ten"}, {"offset": -1}):
        response = client.get(f"/api/v1/audiences/{audience}/contacts", params=params)
        assert_error(response, 422, "validation_error")


# --- auth ---------------------------------------------------------------------------


def test_keys_are_required_scoped_and_isolated(make_client: ClientFactory) -> None:
    owner = make_client()
    audience = new_audience(owner)
    assert_error(make_client(None).get(f"/api/v1/audiences/{audience}"), 401, "unauthorized")
    assert_error(make_client("sk_wrong").get(f"/api/v1/audiences/{audience}"), 401, "unauthorized")
    sending = make_client(SENDING_KEY)
    message = assert_error(
        sending.get("/api/v1/audiences", params={"domain": "example.com"}), 403, "forbidden"
    )
    assert "full access" in message
    assert_error(
        sending.post(f"/api/v1/audiences/{audience}/contacts", json={"email": "e@x.io"}),
        403,
        "forbidden",
    )
    assert_error(make_client(OTHER_KEY).get(f"/api/v1/audiences/{audience}"), 404, "not_found")
    assert owner.get(f"/api/v1/audiences/{audience}").json()["contact_count"] == 0


def test_an_explicit_key_list_replaces_the_prefix_rule() -> None:
    app = create_app(api_keys={"abc": "full", "def": "sending"})
    with EmulatorServer(app) as srv:

        def get(key: str) -> httpx.Response:
            return httpx.get(
                f"{srv.url}/api/v1/audiences",
                params={"domain": "example.com"},
                headers={"Authorization": f"Bearer {key}"},
            )

        assert get("abc").status_code == 200
        assert_error(get("def"), 403, "forbidden")
        assert_error(get(KEY), 401, "unauthorized")


# --- rate limit, faults, shape ----------------------------------------------------------


def test_the_rate_limit_answers_429_with_retry_after_and_changes_nothing(
    client: httpx.Client, admin: httpx.Client
) -> None:
    admin.post("/config", json={"rate": 2}).raise_for_status()
    admin.post("/reset").raise_for_status()  # a fresh window
    audience = new_audience(client)
    client.get(f"/api/v1/audiences/{audience}")
    limited = client.post(f"/api/v1/audiences/{audience}/contacts", json={"email": "f@example.com"})
    assert_error(limited, 429, "rate_limit_exceeded")
    assert int(limited.headers["retry-after"]) >= 1
    assert "ratelimit-remaining" not in limited.headers, "Sendex publishes no budget headers"
    stats = admin.get("/stats").json()
    assert stats["rate_limited"] == 1

    def room() -> httpx.Response | None:
        answer = client.get(f"/api/v1/audiences/{audience}/contacts")
        return answer if answer.status_code == 200 else None

    after = wait_until(room, timeout=5, interval=0.2)
    assert after.json()["total"] == 0, "the refused write stored nothing"


def test_faults_answer_in_sendex_shape(client: httpx.Client, admin: httpx.Client) -> None:
    audience = new_audience(client)
    admin.post("/faults", json={"status": 503, "count": 1}).raise_for_status()
    unavailable = client.get(f"/api/v1/audiences/{audience}")
    assert_error(unavailable, 503, "service_unavailable")
    assert unavailable.headers["retry-after"] == "1"
    admin.post(
        "/faults", json={"status": 422, "reject_emails": ["bad@example.com"]}
    ).raise_for_status()
    rejected = client.post(
        f"/api/v1/audiences/{audience}/contacts", json={"email": "BAD@example.com"}
    )
    assert "bad@example.com" in assert_error(rejected, 422, "validation_error").lower()
    contact = add(client, audience, "good@example.com")
    assert contact["email"] == "good@example.com"
    assert client.get(f"/api/v1/audiences/{audience}").json()["contact_count"] == 1
    assert admin.get("/stats").json()["faulted"] == 2
    assert admin.get("/accounts").json() == {KEY: {"audiences": 1, "contacts": 1}}


def test_unknown_paths_and_methods_answer_in_sendex_shape(client: httpx.Client) -> None:
    assert_error(client.get("/api/v1/domains"), 404, "not_found")
    assert_error(client.put("/api/v1/audiences"), 405, "method_not_allowed")


def test_the_contract_refuses_undocumented_requests() -> None:
    request = httpx.Request(
        "POST",
        "http://sendex.test/api/v1/audiences/66f1a2b3c4d5e6f7a8b9c0e1/contacts",
        json={"email": "a@example.com", "tags": ["vip"]},
        headers={"Authorization": "Bearer sk_test_x"},
    )
    with pytest.raises(ContractViolation, match="tags"):
        validate_request(request)
    unauthenticated = httpx.Request("GET", "http://sendex.test/api/v1/audiences?domain=a.io")
    with pytest.raises(ContractViolation, match="Authorization"):
        validate_request(unauthenticated)
    big_page = httpx.Request(
        "GET",
        "http://sendex.test/api/v1/audiences/66f1a2b3c4d5e6f7a8b9c0e1/contacts?limit=abc",
        headers={"Authorization": "Bearer sk_test_x"},
    )
    with pytest.raises(ContractViolation, match="limit"):
        validate_request(big_page)
    created = httpx.Request(
        "POST",
        "http://sendex.test/api/v1/audiences",
        json={"name": "n", "domain": "a.io"},
        headers={"Authorization": "Bearer sk_test_x"},
    )
    audience = {
        "id": "66f1a2b3c4d5e6f7a8b9c0e1",
        "name": "n",
        "domain": "a.io",
        "contact_count": 0,
        "created_at": "2025-02-01T00:00:00.000Z",
    }
    validate_exchange(created, httpx.Response(201, json=audience, request=created))
    with pytest.raises(ContractViolation, match="documented status is 201"):
        validate_exchange(created, httpx.Response(200, json=audience, request=created))
    with pytest.raises(ContractViolation, match="error body"):
        validate_exchange(created, httpx.Response(422, json={"statusCode": 422}, request=created))


def test_the_cli_serves_the_emulator() -> None:
    assert cli_config("emulators.sendex", "--rate", "5")["rate"] == 5
