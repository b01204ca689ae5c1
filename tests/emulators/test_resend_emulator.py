"""Behaviour of the Resend Contacts API emulator, over real HTTP.

All API traffic goes through clients whose response hook validates the exchange
against ``emulators/resend/resend.yaml`` (see ``conftest.py``), so these tests are also
the emulator's contract tests.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import yaml

from emulators.resend import ResendEmulatorState, create_app
from emulators.resend.contract import SPEC_PATH, ContractViolation, validate_exchange
from emulators.resend.ratelimit import RateLimiter
from emulators.server import EmulatorServer

ClientFactory = Callable[..., httpx.Client]


def assert_error(response: httpx.Response, status: int, name: str) -> dict[str, Any]:
    """The response is Resend's error shape with this status and name."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["statusCode"] == status
    assert body["name"] == name
    assert isinstance(body["message"], str) and body["message"]
    return body


def create_contact(client: httpx.Client, email: str, **fields: Any) -> str:
    response = client.post("/contacts", json={"email": email, **fields})
    assert response.status_code == 201, response.text
    contact_id: str = response.json()["id"]
    return contact_id


def create_property(client: httpx.Client, key: str, prop_type: str = "string") -> str:
    response = client.post("/contact-properties", json={"key": key, "type": prop_type})
    assert response.status_code == 201, response.text
    prop_id: str = response.json()["id"]
    return prop_id


def create_segment(client: httpx.Client, name: str) -> str:
    response = client.post("/segments", json={"name": name})
    assert response.status_code == 201, response.text
    assert response.json()["object"] == "segment"
    segment_id: str = response.json()["id"]
    return segment_id


# --- server -------------------------------------------------------------------------


def test_emulator_server_serves_on_a_free_port_and_stops() -> None:
    with EmulatorServer(create_app()) as server:
        assert server.url.startswith("http://127.0.0.1:")
        assert server.port != 0
        health = httpx.get(server.url + "/_emulator/health")
        assert health.json() == {"ok": True}
        port = server.port
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


# --- contacts -----------------------------------------------------------------------


def test_contact_lifecycle(client: httpx.Client) -> None:
    create_property(client, "plan")
    create_property(client, "score", "number")
    contact_id = create_contact(
        client,
        "Steve.Wozniak@Example.com",
        first_name="Steve",
        properties={"plan": "pro", "score": 7},
    )

    got = client.get(f"/contacts/{contact_id}")
    assert got.status_code == 200
    body = got.json()
    assert body["object"] == "contact"
    assert body["id"] == contact_id
    assert body["email"] == "steve.wozniak@example.com"
    assert body["first_name"] == "Steve"
    assert "last_name" not in body
    assert body["unsubscribed"] is False
    assert body["properties"] == {"plan": "pro", "score": 7}

    by_email = client.get("/contacts/STEVE.wozniak@example.com")
    assert by_email.json()["id"] == contact_id

    patched = client.patch(
        f"/contacts/{contact_id}",
        json={"last_name": "Wozniak", "unsubscribed": True, "properties": {"plan": None}},
    )
    assert patched.status_code == 200
    assert patched.json() == {"object": "contact", "id": contact_id}
    body = client.get(f"/contacts/{contact_id}").json()
    assert body["last_name"] == "Wozniak"
    assert body["first_name"] == "Steve"
    assert body["unsubscribed"] is True
    assert body["properties"] == {"score": 7}

    deleted = client.delete("/contacts/steve.wozniak@example.com")
    assert deleted.json() == {"object": "contact", "id": contact_id, "deleted": True}
    assert_error(client.get(f"/contacts/{contact_id}"), 404, "not_found")
    assert_error(client.patch(f"/contacts/{contact_id}", json={}), 404, "not_found")
    assert_error(client.delete(f"/contacts/{contact_id}"), 404, "not_found")


def test_creating_an_existing_email_returns_the_same_contact(client: httpx.Client) -> None:
    create_property(client, "plan")
    create_property(client, "city")
    first = create_contact(client, "a@example.com", first_name="Ann", properties={"plan": "free"})
    segment = create_segment(client, "Buyers")
    second = create_contact(
        client,
        "A@EXAMPLE.COM",
        last_name="Lee",
        properties={"city": "Oslo"},
        segments=[segment],
    )
    assert second == first
    body = client.get(f"/contacts/{first}").json()
    assert body["first_name"] == "Ann"
    assert body["last_name"] == "Lee"
    assert body["properties"] == {"plan": "free", "city": "Oslo"}
    listed = client.get("/contacts").json()["data"]
    assert [c["id"] for c in listed] == [first]
    segments = client.get(f"/contacts/{first}/segments").json()["data"]
    assert [s["id"] for s in segments] == [segment]


def test_changing_email_to_one_in_use_is_a_conflict(client: httpx.Client) -> None:
    create_contact(client, "one@example.com")
    two = create_contact(client, "two@example.com")
    assert_error(
        client.patch(f"/contacts/{two}", json={"email": "ONE@example.com"}), 409, "conflict"
    )
    ok = client.patch(f"/contacts/{two}", json={"email": "three@example.com"})
    assert ok.status_code == 200
    assert client.get("/contacts/three@example.com").json()["id"] == two
    assert_error(client.get("/contacts/two@example.com"), 404, "not_found")


@pytest.mark.parametrize("email", ["not-an-email", "a@b", "two words@example.com", "a@@b.com"])
def test_invalid_email_is_a_validation_error_naming_it(client: httpx.Client, email: str) -> None:
    body = assert_error(client.post("/contacts", json={"email": email}), 422, "validation_error")
    assert email in body["message"]
    assert client.get("/contacts").json()["data"] == []


def test_missing_email_is_a_missing_required_field(client: httpx.Client) -> None:
    body = assert_error(
        client.post("/contacts", json={"first_name": "x"}), 422, "missing_required_field"
    )
    assert "email" in body["message"]


def test_properties_must_be_declared_and_typed(client: httpx.Client) -> None:
    body = assert_error(
        client.post("/contacts", json={"email": "p@example.com", "properties": {"tier": "gold"}}),
        422,
        "validation_error",
    )
    assert "tier" in body["message"]
    create_property(client, "tier")
    create_property(client, "age", "number")
    wrong = client.post("/contacts", json={"email": "p@example.com", "properties": {"age": "old"}})
    assert "age" in assert_error(wrong, 422, "validation_error")["message"]
    wrong = client.post("/contacts", json={"email": "p@example.com", "properties": {"tier": 3}})
    assert_error(wrong, 422, "validation_error")
    assert client.get("/contacts").json()["data"] == []
    create_contact(client, "p@example.com", properties={"tier": "gold", "age": 41.5})
    assert client.get("/contacts/p@example.com").json()["properties"] == {
        "tier": "gold",
        "age": 41.5,
    }


def test_unknown_segment_on_create_is_rejected(client: httpx.Client) -> None:
    body = assert_error(
        client.post("/contacts", json={"email": "s@example.com", "segments": ["nope"]}),
        422,
        "validation_error",
    )
    assert "nope" in body["message"]


def test_wrongly_typed_fields_are_rejected(client: httpx.Client) -> None:
    bad = client.post("/contacts", json={"email": "t@example.com", "unsubscribed": "yes"})
    assert_error(bad, 422, "validation_error")
    bad = client.post("/contacts", json={"email": "t@example.com", "first_name": None})
    assert_error(bad, 422, "validation_error")


# --- auth, user agent, generic errors -----------------------------------------------


def test_missing_user_agent_is_forbidden(make_client: ClientFactory, admin: httpx.Client) -> None:
    client = make_client(user_agent=None)
    body = assert_error(client.get("/contacts"), 403, "missing_user_agent")
    assert "User-Agent" in body["message"]
    admin.post("/config", json={"require_user_agent": False})
    assert client.get("/contacts").status_code == 200


def test_missing_api_key_is_401(make_client: ClientFactory) -> None:
    assert_error(make_client(key=None).get("/contacts"), 401, "missing_api_key")


def test_invalid_api_key_is_403(make_client: ClientFactory) -> None:
    body = assert_error(make_client(key="sk_live_x").get("/contacts"), 403, "invalid_api_key")
    assert body["message"] == "API key is invalid"


def test_explicit_key_set_rejects_other_keys() -> None:
    app = create_app(api_keys={"re_only"})
    with EmulatorServer(app) as server:
        headers = {"User-Agent": "t"}
        ok = httpx.get(
            server.url + "/contacts", headers={**headers, "Authorization": "Bearer re_only"}
        )
        assert ok.status_code == 200
        other = httpx.get(
            server.url + "/contacts", headers={**headers, "Authorization": "Bearer re_other"}
        )
        assert_error(other, 403, "invalid_api_key")


def test_each_api_key_is_its_own_account(make_client: ClientFactory) -> None:
    alice, bob = make_client(key="re_alice"), make_client(key="re_bob")
    contact_id = create_contact(alice, "shared@example.com")
    assert bob.get("/contacts").json()["data"] == []
    assert_error(bob.get(f"/contacts/{contact_id}"), 404, "not_found")
    assert create_contact(bob, "shared@example.com") != contact_id


def test_unknown_path_method_and_bad_json_use_the_error_shape(client: httpx.Client) -> None:
    assert_error(client.get("/definitely-not-an-endpoint"), 404, "not_found")
    assert_error(client.put("/contacts"), 405, "method_not_allowed")
    bad_json = client.post(
        "/contacts", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert_error(bad_json, 422, "validation_error")
    assert_error(client.post("/contacts", json=["a@example.com"]), 422, "validation_error")


# --- rate limiting ------------------------------------------------------------------


def test_rate_limit_429_with_headers_and_no_state_change(
    client: httpx.Client, admin: httpx.Client, emulator_state: ResendEmulatorState
) -> None:
    admin.post("/config", json={"rate": 2})
    first = client.post("/contacts", json={"email": "r1@example.com"})
    second = client.post("/contacts", json={"email": "r2@example.com"})
    third = client.post("/contacts", json={"email": "r3@example.com"})
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.headers["ratelimit-limit"] == "2"
    assert first.headers["ratelimit-remaining"] == "1"
    assert second.headers["ratelimit-remaining"] == "0"
    body = assert_error(third, 429, "rate_limit_exceeded")
    assert "2 requests per second" in body["message"]
    retry_after = int(third.headers["retry-after"])
    assert retry_after >= 1
    assert int(third.headers["ratelimit-reset"]) >= 1
    assert third.headers["ratelimit-remaining"] == "0"
    assert third.headers["ratelimit-limit"] == "2"
    account = emulator_state.account("re_test_key")
    assert sorted(c.email for c in account.contacts.values()) == [
        "r1@example.com",
        "r2@example.com",
    ]
    assert admin.get("/stats").json()["rate_limited"] == 1
    # The server said when to come back; doing so must succeed.
    time.sleep(retry_after)
    assert client.post("/contacts", json={"email": "r3@example.com"}).status_code == 201


def test_rate_limit_is_per_key(make_client: ClientFactory, admin: httpx.Client) -> None:
    admin.post("/config", json={"rate": 1})
    alice, bob = make_client(key="re_alice"), make_client(key="re_bob")
    assert alice.get("/contacts").status_code == 200
    assert_error(alice.get("/contacts"), 429, "rate_limit_exceeded")
    assert bob.get("/contacts").status_code == 200


def test_rate_limiter_window_arithmetic() -> None:
    now = [100.0]
    limiter = RateLimiter(2.5, clock=lambda: now[0])
    assert [limiter.check("k").allowed for _ in range(3)] == [True, True, False]
    now[0] += 1.0
    assert limiter.check("k").allowed
    slow = RateLimiter(0.5, clock=lambda: now[0])
    assert slow.check("k").allowed
    now[0] += 1.5
    denied = slow.check("k")
    assert not denied.allowed
    assert denied.retry_after == 1
    assert denied.headers()["retry-after"] == "1"
    now[0] += 0.6
    assert slow.check("k").allowed


# --- pagination ---------------------------------------------------------------------


def test_contact_pagination_across_more_than_100(client: httpx.Client) -> None:
    created = [create_contact(client, f"user{i:03d}@example.com") for i in range(130)]
    newest_first = created[::-1]

    everything = client.get("/contacts").json()
    assert [c["id"] for c in everything["data"]] == newest_first
    assert everything["has_more"] is False

    page1 = client.get("/contacts", params={"limit": 100}).json()
    assert page1["has_more"] is True
    assert [c["id"] for c in page1["data"]] == newest_first[:100]
    page2 = client.get("/contacts", params={"limit": 100, "after": page1["data"][-1]["id"]}).json()
    assert page2["has_more"] is False
    assert [c["id"] for c in page2["data"]] == newest_first[100:]

    back = client.get("/contacts", params={"limit": 10, "before": page2["data"][0]["id"]}).json()
    assert [c["id"] for c in back["data"]] == newest_first[90:100]
    assert back["has_more"] is True

    small = client.get("/contacts", params={"limit": 30, "after": newest_first[99]}).json()
    assert small["has_more"] is False
    assert len(small["data"]) == 30


def test_pagination_parameter_validation(client: httpx.Client) -> None:
    for limit in ("0", "101", "ten"):
        assert_error(client.get("/contacts", params={"limit": limit}), 422, "validation_error")
    a = create_contact(client, "a@example.com")
    b = create_contact(client, "b@example.com")
    both = client.get("/contacts", params={"after": a, "before": b})
    assert_error(both, 422, "validation_error")
    assert_error(client.get("/contacts", params={"after": "unknown"}), 422, "validation_error")


def test_cursor_of_a_deleted_contact_still_paginates(client: httpx.Client) -> None:
    ids = [create_contact(client, f"d{i}@example.com") for i in range(5)]
    client.delete(f"/contacts/{ids[2]}")
    page = client.get("/contacts", params={"limit": 10, "after": ids[2]}).json()
    assert [c["id"] for c in page["data"]] == [ids[1], ids[0]]


def test_newer_list_endpoints_default_to_20(client: httpx.Client) -> None:
    for i in range(25):
        create_property(client, f"p{i}")
    page = client.get("/contact-properties").json()
    assert len(page["data"]) == 20
    assert page["has_more"] is True
    rest = client.get("/contact-properties", params={"after": page["data"][-1]["id"]}).json()
    assert len(rest["data"]) == 5
    assert rest["has_more"] is False


# --- segments -----------------------------------------------------------------------


def test_segment_membership_and_filter(client: httpx.Client) -> None:
    vip = create_segment(client, "VIP")
    other = create_segment(client, "Other")
    a = create_contact(client, "a@example.com", segments=[vip])
    b = create_contact(client, "b@example.com")
    create_contact(client, "c@example.com", segments=[other])

    added = client.post(f"/contacts/b@example.com/segments/{vip}")
    assert added.status_code == 200
    assert added.json() == {"object": "contact_segment", "contact_id": b, "segment_id": vip}

    in_vip = client.get("/contacts", params={"segment_id": vip}).json()["data"]
    assert [c["id"] for c in in_vip] == [b, a]
    one = client.get("/contacts", params={"segment_id": vip, "limit": 1}).json()
    assert [c["id"] for c in one["data"]] == [b] and one["has_more"] is True

    segments_of_b = client.get(f"/contacts/{b}/segments").json()
    assert [s["id"] for s in segments_of_b["data"]] == [vip]
    assert segments_of_b["data"][0]["name"] == "VIP"

    removed = client.delete(f"/contacts/{a}/segments/{vip}")
    assert removed.json()["deleted"] is True
    in_vip = client.get("/contacts", params={"segment_id": vip}).json()["data"]
    assert [c["id"] for c in in_vip] == [b]

    assert_error(client.post(f"/contacts/nobody@example.com/segments/{vip}"), 404, "not_found")
    assert_error(client.post(f"/contacts/{a}/segments/not-a-segment"), 404, "not_found")
    assert_error(client.get("/contacts", params={"segment_id": "missing"}), 404, "not_found")

    got = client.get(f"/segments/{vip}").json()
    assert got["name"] == "VIP" and got["object"] == "segment"
    listed = client.get("/segments").json()
    assert [s["id"] for s in listed["data"]] == [other, vip]

    assert client.delete(f"/segments/{vip}").json() == {
        "id": vip,
        "object": "segment",
        "deleted": True,
    }
    assert client.get(f"/contacts/{b}/segments").json()["data"] == []
    assert_error(client.get(f"/segments/{vip}"), 404, "not_found")


# --- contact properties and topics --------------------------------------------------


def test_contact_property_rules(client: httpx.Client) -> None:
    assert_error(
        client.post("/contact-properties", json={"key": "bad key", "type": "string"}),
        422,
        "validation_error",
    )
    assert_error(
        client.post("/contact-properties", json={"key": "x" * 51, "type": "string"}),
        422,
        "validation_error",
    )
    assert_error(
        client.post("/contact-properties", json={"key": "k", "type": "boolean"}),
        422,
        "validation_error",
    )
    assert_error(
        client.post("/contact-properties", json={"type": "string"}), 422, "missing_required_field"
    )
    bad_fallback = client.post(
        "/contact-properties", json={"key": "n", "type": "number", "fallback_value": "x"}
    )
    assert_error(bad_fallback, 422, "validation_error")

    prop_id = create_property(client, "company_name")
    assert_error(
        client.post("/contact-properties", json={"key": "company_name", "type": "string"}),
        409,
        "conflict",
    )
    patched = client.patch(f"/contact-properties/{prop_id}", json={"fallback_value": "Acme"})
    assert patched.status_code == 200
    got = client.get(f"/contact-properties/{prop_id}").json()
    assert got["fallback_value"] == "Acme" and got["key"] == "company_name"
    assert_error(
        client.patch(f"/contact-properties/{prop_id}", json={"type": "number"}),
        422,
        "validation_error",
    )

    create_contact(client, "c@example.com", properties={"company_name": "Initech"})
    assert client.delete(f"/contact-properties/{prop_id}").json()["deleted"] is True
    assert client.get("/contacts/c@example.com").json()["properties"] == {}
    assert_error(client.get(f"/contact-properties/{prop_id}"), 404, "not_found")


def test_topics_and_contact_subscriptions(client: httpx.Client) -> None:
    created = client.post("/topics", json={"name": "Newsletter", "default_subscription": "opt_in"})
    assert created.status_code == 201
    topic = created.json()["id"]
    assert_error(client.post("/topics", json={"name": "X"}), 422, "missing_required_field")
    assert client.patch(f"/topics/{topic}", json={"description": "Weekly"}).status_code == 200
    got = client.get(f"/topics/{topic}").json()
    assert got["description"] == "Weekly" and got["visibility"] == "private"

    contact = create_contact(client, "t@example.com")
    subs = client.get(f"/contacts/{contact}/topics").json()["data"]
    assert subs == [
        {"id": topic, "name": "Newsletter", "description": "Weekly", "subscription": "opt_in"}
    ]
    updated = client.patch(
        f"/contacts/{contact}/topics", json={"topics": [{"id": topic, "subscription": "opt_out"}]}
    )
    assert updated.json()["topics"] == [{"id": topic, "subscription": "opt_out"}]
    assert client.get(f"/contacts/{contact}/topics").json()["data"][0]["subscription"] == "opt_out"
    assert client.delete(f"/topics/{topic}").json()["deleted"] is True
    assert client.get("/topics").json()["data"] == []


# --- imports ------------------------------------------------------------------------


def post_import(client: httpx.Client, csv_text: str, **fields: str) -> httpx.Response:
    return client.post(
        "/contacts/imports", files={"file": ("contacts.csv", csv_text, "text/csv")}, data=fields
    )


def test_import_counts_good_and_bad_rows(
    client: httpx.Client, admin: httpx.Client, await_import: Callable[..., dict[str, Any]]
) -> None:
    create_property(client, "plan")
    create_property(client, "seats", "number")
    segment = create_segment(client, "Imported")
    create_contact(client, "existing@example.com", first_name="Old")
    admin.post("/config", json={"import_delay": 0.2})
    csv_text = (
        "Email,First Name,Plan,Seats\n"
        "new1@example.com,New,pro,3\n"
        "not-an-email,Bad,free,1\n"
        "existing@example.com,Updated,team,\n"
        "new2@example.com,,free,lots\n"
        "\n"
        "NEW3@example.com,Three,,\n"
    )
    column_map = {
        "email": "Email",
        "first_name": "First Name",
        "properties": {"plan": {"column": "Plan", "type": "string"}, "seats": "Seats"},
    }
    response = post_import(
        client,
        csv_text,
        column_map=json.dumps(column_map),
        on_conflict="upsert",
        segments=json.dumps([{"id": segment}]),
    )
    assert response.status_code == 201
    assert response.json()["object"] == "contact_import"
    import_id = response.json()["id"]

    done = await_import(client, import_id)
    assert done["_seen_statuses"][0] == "queued"
    assert done["status"] == "completed"
    assert done["completed_at"]
    assert done["counts"] == {"total": 5, "created": 2, "updated": 1, "skipped": 0, "failed": 2}

    existing = client.get("/contacts/existing@example.com").json()
    assert existing["first_name"] == "Updated"
    assert existing["properties"] == {"plan": "team"}
    new1 = client.get("/contacts/new1@example.com").json()
    assert new1["properties"] == {"plan": "pro", "seats": 3}
    assert_error(client.get("/contacts/new2@example.com"), 404, "not_found")
    assert client.get("/contacts/new3@example.com").json()["first_name"] == "Three"
    members = client.get("/contacts", params={"segment_id": segment}).json()["data"]
    assert {c["email"] for c in members} == {
        "new1@example.com",
        "existing@example.com",
        "new3@example.com",
    }

    listed = client.get("/contacts/imports", params={"status": "completed"}).json()
    assert [i["id"] for i in listed["data"]] == [import_id]
    assert client.get("/contacts/imports", params={"status": "queued"}).json()["data"] == []


def test_import_skip_leaves_existing_contacts_alone(
    client: httpx.Client, await_import: Callable[..., dict[str, Any]]
) -> None:
    create_contact(client, "keep@example.com", first_name="Keep")
    response = post_import(
        client, "email,first_name\nkeep@example.com,Changed\nfresh@example.com,F\n"
    )
    done = await_import(client, response.json()["id"])
    assert done["counts"] == {"total": 2, "created": 1, "updated": 0, "skipped": 1, "failed": 0}
    assert client.get("/contacts/keep@example.com").json()["first_name"] == "Keep"


def test_import_request_errors_are_immediate(client: httpx.Client) -> None:
    assert_error(
        client.post("/contacts/imports", data={"on_conflict": "skip"}, files={}),
        422,
        "validation_error",
    )
    no_file = client.post(
        "/contacts/imports", files={"column_map": (None, "{}")}, data={"on_conflict": "skip"}
    )
    assert_error(no_file, 422, "missing_required_field")
    unknown_prop = post_import(
        client,
        "email,x\na@example.com,1\n",
        column_map=json.dumps({"email": "email", "properties": {"x": "x"}}),
    )
    assert "x" in assert_error(unknown_prop, 422, "validation_error")["message"]
    missing_column = post_import(client, "mail\na@example.com\n")
    assert_error(missing_column, 422, "validation_error")
    assert_error(post_import(client, "email\n", on_conflict="merge"), 422, "validation_error")
    assert client.get("/contacts/imports").json()["data"] == []


def test_an_import_is_one_request_against_the_rate_limit(
    client: httpx.Client, admin: httpx.Client, await_import: Callable[..., dict[str, Any]]
) -> None:
    admin.post("/config", json={"rate": 2})
    rows = "".join(f"bulk{i}@example.com\n" for i in range(1000))
    response = post_import(client, "email\n" + rows)
    assert response.status_code == 201
    assert response.headers["ratelimit-remaining"] == "1"
    admin.post("/config", json={"rate": 1000})
    done = await_import(client, response.json()["id"])
    assert done["counts"]["created"] == 1000
    assert admin.get("/stats").json()["by_route"]["POST /contacts/imports"] == 1


def test_import_of_100k_rows_is_fast(
    client: httpx.Client, await_import: Callable[..., dict[str, Any]]
) -> None:
    create_property(client, "score", "number")
    rows = "".join(f"u{i}@example.com,{i}\n" for i in range(100_000))
    started = time.monotonic()
    response = post_import(
        client,
        "email,score\n" + rows,
        column_map=json.dumps({"email": "email", "properties": {"score": "score"}}),
    )
    done = await_import(client, response.json()["id"], timeout=60)
    elapsed = time.monotonic() - started
    assert done["counts"]["created"] == 100_000
    assert elapsed < 20, f"100k-row import took {elapsed:.1f}s"
    assert client.get("/contacts/u99999@example.com").json()["properties"] == {"score": 99999}


# --- fault injection and admin ------------------------------------------------------


def test_fault_injection_with_a_count(
    client: httpx.Client, admin: httpx.Client, emulator_state: ResendEmulatorState
) -> None:
    assert admin.post("/faults", json={"status": 500, "count": 2}).status_code == 201
    first = client.post("/contacts", json={"email": "f1@example.com"})
    second = client.get("/contacts")
    assert_error(first, 500, "internal_server_error")
    assert_error(second, 500, "internal_server_error")
    assert "ratelimit-limit" in first.headers
    assert emulator_state.account("re_test_key").contacts == {}
    assert client.post("/contacts", json={"email": "f1@example.com"}).status_code == 201
    stats = admin.get("/stats").json()
    assert stats["faulted"] == 2
    assert stats["requests"] == 3
    assert stats["by_route"]["POST /contacts"] == 2
    assert admin.get("/faults").json()["faults"] == []


def test_fault_until_cleared_and_route_targeting(client: httpx.Client, admin: httpx.Client) -> None:
    admin.post("/faults", json={"status": 503, "route": "POST /contacts"})
    for _ in range(3):
        response = client.post("/contacts", json={"email": "x@example.com"})
        assert_error(response, 503, "service_unavailable")
        assert response.headers["retry-after"] == "1"
    assert client.get("/contacts").status_code == 200
    admin.delete("/faults")
    assert client.post("/contacts", json={"email": "x@example.com"}).status_code == 201


def test_fault_probability_is_seedable(client: httpx.Client, admin: httpx.Client) -> None:
    admin.post("/faults", json={"status": 500, "fail_probability": 1.0})
    assert_error(client.get("/contacts"), 500, "internal_server_error")
    admin.delete("/faults")
    admin.post("/config", json={"seed": 7})
    admin.post("/faults", json={"status": 502, "fail_probability": 0.5})
    outcomes = [client.get("/contacts").status_code for _ in range(40)]
    admin.post("/config", json={"seed": 7})
    again = [client.get("/contacts").status_code for _ in range(40)]
    assert outcomes == again
    assert set(outcomes) == {200, 502}


def test_reject_emails_fault(
    client: httpx.Client, admin: httpx.Client, await_import: Callable[..., dict[str, Any]]
) -> None:
    admin.post("/faults", json={"reject_emails": ["Bad@X.com"], "status": 422})
    body = assert_error(
        client.post("/contacts", json={"email": "bad@x.com"}), 422, "validation_error"
    )
    assert "bad@x.com" in body["message"]
    good = create_contact(client, "good@x.com")
    assert_error(
        client.patch(f"/contacts/{good}", json={"email": "bad@x.com"}), 422, "validation_error"
    )
    done = await_import(client, post_import(client, "email\nbad@x.com\nok@x.com\n").json()["id"])
    assert done["counts"]["failed"] == 1 and done["counts"]["created"] == 1


def test_bad_fault_definitions_are_rejected(admin: httpx.Client) -> None:
    assert admin.post("/faults", json={"status": 200}).status_code == 400
    assert admin.post("/faults", json={"status": 500, "count": 0}).status_code == 400
    assert admin.post("/faults", json={"fail_probability": 2}).status_code == 400
    assert admin.post("/config", json={"rate": -1}).status_code == 400


def test_reset_clears_data_and_stats(client: httpx.Client, admin: httpx.Client) -> None:
    create_contact(client, "gone@example.com")
    assert admin.get("/accounts").json()["re_test_key"]["contacts"] == 1
    assert admin.post("/reset").json() == {"reset": True}
    assert admin.get("/stats").json()["requests"] == 0
    assert admin.get("/accounts").json() == {}
    assert client.get("/contacts").json()["data"] == []


def test_cli_help_exits_cleanly(capsys: pytest.CaptureFixture[str]) -> None:
    from emulators.resend.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "--rate" in capsys.readouterr().out


# --- contract -----------------------------------------------------------------------


def _exchange(
    method: str, path: str, status: int, body: Any, **request: Any
) -> tuple[httpx.Request, httpx.Response]:
    req = httpx.Request(method, "http://127.0.0.1:1" + path, **request)
    resp = httpx.Response(status, json=body, request=req)
    return req, resp


def test_contract_checker_catches_mismatches() -> None:
    req, resp = _exchange("GET", "/contacts", 200, {"object": "list", "data": "nope"})
    with pytest.raises(ContractViolation, match="data"):
        validate_exchange(req, resp)
    req, resp = _exchange("GET", "/contacts/x", 404, {"error": "nope"})
    with pytest.raises(ContractViolation):
        validate_exchange(req, resp)
    req, resp = _exchange(
        "GET", "/contacts/x", 404, {"statusCode": 400, "name": "n", "message": "m"}
    )
    with pytest.raises(ContractViolation, match="statusCode"):
        validate_exchange(req, resp)
    # A success answer to a request the spec forbids (no email) points at a bug.
    req, resp = _exchange(
        "POST",
        "/contacts",
        201,
        {"object": "contact", "id": "x"},
        json={"first_name": "x"},
        headers={"Authorization": "Bearer re_x"},
    )
    with pytest.raises(ContractViolation):
        validate_exchange(req, resp)
    # Undocumented paths are not checked.
    req, resp = _exchange("GET", "/_emulator/stats", 200, {"anything": True})
    validate_exchange(req, resp)


EMULATED_PREFIXES = ("/contacts", "/segments", "/topics", "/contact-properties")


def emulated_spec_operations() -> set[tuple[str, str]]:
    """(METHOD, path template) of every spec operation in the emulated families."""
    spec = yaml.safe_load(SPEC_PATH.read_text())
    return {
        (method.upper(), path)
        for path, item in spec["paths"].items()
        if path.startswith(EMULATED_PREFIXES)
        for method in item
        if method in ("get", "post", "patch", "put", "delete")
    }


def test_every_emulated_operation_passes_the_contract(
    client: httpx.Client,
    recorder: Any,
    await_import: Callable[..., dict[str, Any]],
) -> None:
    """Walk every documented operation the emulator implements; the hook validates each."""
    prop = create_property(client, "plan")
    client.get("/contact-properties")
    client.get(f"/contact-properties/{prop}")
    client.patch(f"/contact-properties/{prop}", json={"fallback_value": "free"})
    segment = create_segment(client, "S")
    client.get("/segments")
    client.get(f"/segments/{segment}")
    topic = client.post("/topics", json={"name": "T", "default_subscription": "opt_out"}).json()[
        "id"
    ]
    client.get("/topics")
    client.get(f"/topics/{topic}")
    client.patch(f"/topics/{topic}", json={"visibility": "public"})
    contact = create_contact(
        client,
        "c@example.com",
        first_name="C",
        properties={"plan": "pro"},
        topics=[{"id": topic, "subscription": "opt_in"}],
    )
    client.get("/contacts", params={"limit": 5})
    client.get(f"/contacts/{contact}")
    client.patch(f"/contacts/{contact}", json={"unsubscribed": True})
    client.post(f"/contacts/{contact}/segments/{segment}")
    client.get(f"/contacts/{contact}/segments")
    client.delete(f"/contacts/{contact}/segments/{segment}")
    client.get(f"/contacts/{contact}/topics")
    client.patch(
        f"/contacts/{contact}/topics", json={"topics": [{"id": topic, "subscription": "opt_out"}]}
    )
    import_id = post_import(client, "email\ni@example.com\n").json()["id"]
    await_import(client, import_id)
    client.get("/contacts/imports")
    client.delete(f"/contacts/{contact}")
    client.delete(f"/segments/{segment}")
    client.delete(f"/topics/{topic}")
    client.delete(f"/contact-properties/{prop}")

    documented = emulated_spec_operations()
    successes = {(m, p) for m, p, status in recorder.checked if status < 300}
    assert all(status < 300 for _, _, status in recorder.checked), recorder.checked

    def template_of(method: str, path: str) -> tuple[str, str]:
        parts = path.strip("/").split("/")
        for doc_method, doc_path in documented:
            doc_parts = doc_path.strip("/").split("/")
            if (
                doc_method == method
                and len(doc_parts) == len(parts)
                and all(d.startswith("{") or d == p for d, p in zip(doc_parts, parts, strict=True))
                and not (doc_path == "/contacts/{id}" and parts[1] == "imports")
            ):
                return doc_method, doc_path
        raise AssertionError(f"{method} {path} is not documented")

    covered = {template_of(m, p) for m, p in successes}
    assert covered == documented
