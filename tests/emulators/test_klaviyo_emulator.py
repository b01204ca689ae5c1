"""The Klaviyo emulator over real HTTP; every exchange is checked against the bundled spec."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from emulators.klaviyo import KlaviyoEmulator, create_app
from emulators.klaviyo.contract import in_spec, validate_exchange
from emulators.server import EmulatorServer
from tests.emulators.conftest import Clients, Recorder

KEY = "pk_test_key"
REVISION = "2026-07-15"
MEDIA = "application/vnd.api+json"


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(create_app()) as srv:
        yield srv


@pytest.fixture
def emu(server: EmulatorServer) -> Iterator[KlaviyoEmulator]:
    state: KlaviyoEmulator = server.app.state.emulator
    state.reset()
    state.configure({"import_rate": 5000, "job_delay": 0, "cancel_jobs": None})
    yield state
    state.wait_for_jobs()


@pytest.fixture
def checked() -> Recorder:
    """Exchanges that were validated against the spec."""
    return Recorder(validate_exchange, in_spec)


@pytest.fixture
def make_client(
    server: EmulatorServer, emu: KlaviyoEmulator, checked: Recorder
) -> Iterator[Callable[..., httpx.Client]]:
    with Clients(server.url, checked.hook) as clients:

        def make(key: str | None = KEY, revision: str | None = REVISION) -> httpx.Client:
            headers = {"Accept": MEDIA}
            if key is not None:
                headers["Authorization"] = f"Klaviyo-API-Key {key}"
            if revision is not None:
                headers["revision"] = revision
            return clients.make(headers)

        yield make


@pytest.fixture
def client(make_client: Callable[..., httpx.Client]) -> httpx.Client:
    return make_client()


def send(client: httpx.Client, method: str, path: str, body: Any, **kwargs: Any) -> httpx.Response:
    return client.request(
        method, path, content=json.dumps(body), headers={"Content-Type": MEDIA}, **kwargs
    )


def new_list(client: httpx.Client, name: str = "newsletter") -> str:
    response = send(
        client, "POST", "/api/lists", {"data": {"type": "list", "attributes": {"name": name}}}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["data"]["id"])


def import_profile(client: httpx.Client, attributes: dict[str, Any], **data: Any) -> httpx.Response:
    body = {"data": {"type": "profile", "attributes": attributes, **data}}
    return send(client, "POST", "/api/profile-import", body)


def job_body(profiles: list[dict[str, Any]], list_id: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "type": "profile-bulk-import-job",
        "attributes": {
            "profiles": {"data": [{"type": "profile", "attributes": p} for p in profiles]}
        },
    }
    if list_id:
        data["relationships"] = {"lists": {"data": [{"type": "list", "id": list_id}]}}
    return {"data": data}


def wait_job(client: httpx.Client, job_id: str, timeout: float = 20) -> dict[str, Any]:
    """Poll within the endpoint's 10/s burst limit until the job ends."""
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while True:
        response = client.get(f"/api/profile-bulk-import-jobs/{job_id}")
        assert response.status_code == 200, response.text
        attributes: dict[str, Any] = response.json()["data"]["attributes"]
        if not seen or seen[-1] != attributes["status"]:
            seen.append(attributes["status"])
        if attributes["status"] in ("complete", "cancelled"):
            attributes["seen"] = seen
            return attributes
        assert time.monotonic() < deadline, f"job still {attributes['status']}"
        time.sleep(0.12)


def members(client: httpx.Client, list_id: str, size: int = 2) -> list[dict[str, Any]]:
    """Every member of a list, following Klaviyo's pagination links."""
    out: list[dict[str, Any]] = []
    url: str | None = f"/api/lists/{list_id}/profiles?page[size]={size}"
    while url:
        page = client.get(url)
        assert page.status_code == 200, page.text
        out.extend(page.json()["data"])
        url = page.json()["links"].get("next")
    return out


def the_error(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"].startswith(MEDIA)
    errors = response.json()["errors"]
    assert len(errors) == 1
    error: dict[str, Any] = errors[0]
    assert error["status"] == response.status_code
    return error


def test_authentication_in_klaviyo_shape(make_client: Callable[..., httpx.Client]) -> None:
    missing = make_client(key=None).get("/api/lists")
    assert missing.status_code == 401
    assert the_error(missing)["code"] == "not_authenticated"
    wrong = make_client(key="sk_not_private").get("/api/lists")
    assert wrong.status_code == 401
    assert the_error(wrong)["code"] == "authentication_failed"
    bearer = make_client(key=None)
    bearer.headers["Authorization"] = f"Bearer {KEY}"
    assert bearer.get("/api/lists").status_code == 401
    assert make_client().get("/api/lists").status_code == 200


def test_revision_header_is_required_and_must_be_known(
    make_client: Callable[..., httpx.Client], checked: Recorder
) -> None:
    for revision in (None, "2030-01-01", "yesterday", "2021-01-01", "2024-02-30"):
        response = make_client(revision=revision).get("/api/lists")
        assert response.status_code == 400, revision
        error = the_error(response)
        assert error["code"] == "invalid"
        assert error["source"] == {"parameter": "revision"}
    assert make_client(revision="2024-10-15").get("/api/lists").status_code == 200
    assert make_client(revision="2026-07-15.pre").get("/api/lists").status_code == 200
    assert len(checked.checked) == 7


def test_bodies_must_be_json_api(client: httpx.Client) -> None:
    plain = client.post(
        "/api/profile-import",
        json={"data": {"type": "profile", "attributes": {"email": "a@example.com"}}},
    )
    assert plain.status_code == 415
    assert the_error(plain)["code"] == "unsupported_media_type"
    wrong_type = send(client, "POST", "/api/profile-import", {"data": {"type": "person"}})
    assert wrong_type.status_code == 400
    assert the_error(wrong_type)["source"]["pointer"].startswith("/data")
    assert client.get("/api/profiles").json()["data"] == []


def test_profile_import_creates_then_updates(client: httpx.Client) -> None:
    created = import_profile(
        client,
        {
            "email": "Ann@Example.com",
            "first_name": "Ann",
            "title": "CTO",
            "properties": {"plan": "free", "seats": 3},
        },
    )
    assert created.status_code == 201, created.text
    profile_id = created.json()["data"]["id"]
    assert created.json()["data"]["attributes"]["email"] == "ann@example.com"
    updated = import_profile(
        client,
        {"email": "ann@example.com", "title": None, "properties": {"plan": "pro"}},
        meta={"patch_properties": {"unset": ["seats"]}},
    )
    assert updated.status_code == 200
    assert updated.json()["data"]["id"] == profile_id
    held = client.get(f"/api/profiles/{profile_id}").json()["data"]["attributes"]
    assert held["first_name"] == "Ann", "a missing attribute is left alone"
    assert held["title"] is None, "null clears"
    assert held["properties"] == {"plan": "pro"}
    by_id = import_profile(client, {"email": "ann2@example.com"}, id=profile_id)
    assert by_id.status_code == 200
    assert client.get(f"/api/profiles/{profile_id}").json()["data"]["attributes"]["email"] == (
        "ann2@example.com"
    )


def test_profile_import_refusals(client: httpx.Client) -> None:
    bad = import_profile(client, {"email": "not-an-email"})
    assert bad.status_code == 400
    assert the_error(bad)["source"]["pointer"] == "/data/attributes/email"
    phone = import_profile(client, {"phone_number": "555-1234"})
    assert the_error(phone)["source"]["pointer"] == "/data/attributes/phone_number"
    nobody = import_profile(client, {"first_name": "Nobody"})
    assert nobody.status_code == 400
    a = import_profile(client, {"email": "a@example.com"}).json()["data"]["id"]
    import_profile(client, {"email": "b@example.com", "external_id": "b-1"})
    clash = import_profile(client, {"external_id": "b-1"}, id=a)
    assert clash.status_code == 409
    assert the_error(clash)["code"] == "duplicate_profile"
    gone = import_profile(client, {"email": "c@example.com"}, id="01NOPE")
    assert gone.status_code == 404
    emails = {p["attributes"]["email"] for p in client.get("/api/profiles").json()["data"]}
    assert emails == {"a@example.com", "b@example.com"}


def test_bulk_import_job_lifecycle_errors_and_list(
    client: httpx.Client, admin: httpx.Client
) -> None:
    list_id = new_list(client)
    admin.post("/config", json={"job_delay": 0.3, "import_rate": 1000})
    admin.post("/faults", json={"status": 400, "reject_emails": ["blocked@example.com"]})
    profiles = [{"email": f"user{i}@example.com", "first_name": f"U{i}"} for i in range(500)]
    profiles[3] = {"email": "broken"}
    profiles[7] = {"email": "blocked@example.com"}
    created = send(client, "POST", "/api/profile-bulk-import-jobs", job_body(profiles, list_id))
    assert created.status_code == 202, created.text
    job = created.json()["data"]
    assert job["attributes"]["status"] == "queued"
    assert job["attributes"]["total_count"] == 500
    done = wait_job(client, job["id"])
    assert done["seen"] == ["queued", "processing", "complete"]
    assert (done["completed_count"], done["failed_count"]) == (498, 2)
    page = client.get(
        f"/api/profile-bulk-import-jobs/{job['id']}/import-errors", params={"page[size]": 1}
    ).json()
    assert page["data"][0]["attributes"]["source"]["pointer"] == (
        "/data/attributes/profiles/data/3/attributes/email"
    )
    assert page["data"][0]["attributes"]["original_payload"]["attributes"]["email"] == "broken"
    second = client.get(page["links"]["next"]).json()
    assert "rejected" in second["data"][0]["attributes"]["detail"]
    assert "next" not in second["links"]
    joined = members(client, list_id, size=100)
    assert len(joined) == 498
    assert "joined_group_at" in joined[0]["attributes"]


def test_bulk_import_job_refusals(client: httpx.Client) -> None:
    too_many = [{"email": f"u{i}@example.com"} for i in range(10_001)]
    response = send(client, "POST", "/api/profile-bulk-import-jobs", job_body(too_many))
    assert response.status_code == 400
    assert "10000" in the_error(response)["detail"]
    missing = send(
        client, "POST", "/api/profile-bulk-import-jobs", job_body([{"email": "a@x.io"}], "NoSuch")
    )
    assert missing.status_code == 400
    assert the_error(missing)["source"]["pointer"] == "/data/relationships/lists/data/0/id"
    assert client.get("/api/profile-bulk-import-jobs/01NOPE").status_code == 404


def test_cancelled_job_fails_every_profile(client: httpx.Client, admin: httpx.Client) -> None:
    admin.post("/config", json={"cancel_jobs": "Account is under review."})
    created = send(
        client,
        "POST",
        "/api/profile-bulk-import-jobs",
        job_body([{"email": "a@example.com"}, {"email": "b@example.com"}]),
    )
    done = wait_job(client, created.json()["data"]["id"])
    assert done["status"] == "cancelled"
    assert done["failed_count"] == 2
    errors = client.get(
        f"/api/profile-bulk-import-jobs/{created.json()['data']['id']}/import-errors"
    ).json()["data"]
    assert [e["attributes"]["detail"] for e in errors] == ["Account is under review."] * 2
    assert client.get("/api/profiles").json()["data"] == []


def test_list_membership_add_and_remove(client: httpx.Client) -> None:
    list_id = new_list(client)
    ids = [
        import_profile(client, {"email": f"m{i}@example.com"}).json()["data"]["id"]
        for i in range(3)
    ]
    path = f"/api/lists/{list_id}/relationships/profiles"
    unknown = send(
        client,
        "POST",
        path,
        {
            "data": [{"type": "profile", "id": ids[0]}] * 1
            + [{"type": "profile", "id": "01UNKNOWN"}]
        },
    )
    assert unknown.status_code == 400
    assert the_error(unknown)["source"]["pointer"] == "/data/1/id"
    assert members(client, list_id) == [], "all or nothing"
    added = send(client, "POST", path, {"data": [{"type": "profile", "id": i} for i in ids]})
    assert added.status_code == 204
    removed = send(client, "DELETE", path, {"data": [{"type": "profile", "id": ids[0]}]})
    assert removed.status_code == 204
    again = send(client, "DELETE", path, {"data": [{"type": "profile", "id": ids[0]}]})
    assert again.status_code == 204
    assert sorted(m["id"] for m in members(client, list_id)) == sorted(ids[1:])
    relation = client.get(path).json()["data"]
    assert {r["id"] for r in relation} == set(ids[1:])
    assert client.get(f"/api/profiles/{ids[0]}").status_code == 200, "the profile stays"
    found = client.get(
        f"/api/lists/{list_id}/profiles", params={"filter": 'any(email,["m1@example.com"])'}
    ).json()["data"]
    assert [p["id"] for p in found] == [ids[1]]
    too_many = send(client, "POST", path, {"data": [{"type": "profile", "id": ids[0]}] * 1001})
    assert too_many.status_code == 400
    assert (
        send(client, "POST", "/api/lists/NoSuch/relationships/profiles", {"data": []}).status_code
        == 404
    )


def consent(client: httpx.Client, email: str) -> dict[str, Any]:
    found = client.get(
        "/api/profiles",
        params={
            "filter": f"equals(email,'{email}')",
            "additional-fields[profile]": "subscriptions",
        },
    ).json()["data"]
    marketing: dict[str, Any] = found[0]["attributes"]["subscriptions"]["email"]["marketing"]
    return marketing


def subscription_body(kind: str, emails: list[str], consent_: str, list_id: str) -> dict[str, Any]:
    return {
        "data": {
            "type": f"profile-subscription-bulk-{kind}-job",
            "attributes": {
                "profiles": {
                    "data": [
                        {
                            "type": "profile",
                            "attributes": {
                                "email": email,
                                "subscriptions": {"email": {"marketing": {"consent": consent_}}},
                            },
                        }
                        for email in emails
                    ]
                }
            },
            "relationships": {"list": {"data": {"type": "list", "id": list_id}}},
        }
    }


def test_subscribe_and_unsubscribe(client: httpx.Client) -> None:
    list_id = new_list(client)
    create = "/api/profile-subscription-bulk-create-jobs"
    delete = "/api/profile-subscription-bulk-delete-jobs"
    bad = send(
        client,
        "POST",
        create,
        subscription_body("create", ["ok@x.io", "bad"], "SUBSCRIBED", list_id),
    )
    assert bad.status_code == 400
    assert (
        the_error(bad)["source"]["pointer"] == "/data/attributes/profiles/data/1/attributes/email"
    )
    assert client.get("/api/profiles").json()["data"] == [], "nothing applied"
    emails = ["s1@example.com", "s2@example.com"]
    ok = send(client, "POST", create, subscription_body("create", emails, "SUBSCRIBED", list_id))
    assert ok.status_code == 202
    assert consent(client, "s1@example.com")["consent"] == "SUBSCRIBED"
    assert len(members(client, list_id)) == 2
    left = send(
        client, "POST", delete, subscription_body("delete", emails[:1], "UNSUBSCRIBED", list_id)
    )
    assert left.status_code == 202
    member_state = consent(client, "s1@example.com")
    assert member_state["consent"] == "SUBSCRIBED", "a member is unsubscribed from the list only"
    assert member_state["list_suppressions"][0]["list_id"] == list_id
    assert [m["attributes"]["email"] for m in members(client, list_id)] == ["s2@example.com"]
    send(client, "POST", delete, subscription_body("delete", emails[:1], "UNSUBSCRIBED", list_id))
    assert consent(client, "s1@example.com")["consent"] == "UNSUBSCRIBED", "non-member: global"


def test_spec_rate_limits_answer_429_and_change_nothing(
    client: httpx.Client, admin: httpx.Client, emu: KlaviyoEmulator
) -> None:
    limits = admin.get("/config").json()["route_limits"]
    assert limits["POST /api/profile-bulk-import-jobs"] == [
        {"limit": 10, "seconds": 1.0},
        {"limit": 150, "seconds": 60.0},
    ]
    assert limits["POST /api/profile-import"][0] == {"limit": 75, "seconds": 1.0}
    list_id = new_list(client)
    ids = [
        import_profile(client, {"email": f"r{i}@example.com"}).json()["data"]["id"]
        for i in range(12)
    ]
    emu.limiter.reset()
    path = f"/api/lists/{list_id}/relationships/profiles"
    answers = [
        send(client, "POST", path, {"data": [{"type": "profile", "id": profile_id}]})
        for profile_id in ids[:11]
    ]
    statuses = [a.status_code for a in answers]
    assert statuses[:10] == [204] * 10
    limited = answers[10]
    assert limited.status_code == 429
    assert the_error(limited)["code"] == "throttled"
    assert int(limited.headers["Retry-After"]) >= 1
    assert limited.headers["RateLimit-Limit"] == "10"
    assert limited.headers["RateLimit-Remaining"] == "0"
    assert int(limited.headers["RateLimit-Reset"]) >= 1
    assert answers[0].headers["RateLimit-Remaining"] == "9"
    assert ids[10] not in {m["id"] for m in members(client, list_id)}
    assert admin.get("/stats").json()["rate_limited"] == 1


def test_faults_and_unknown_paths_in_klaviyo_shape(
    client: httpx.Client, admin: httpx.Client
) -> None:
    admin.post("/faults", json={"status": 503, "count": 1})
    failed = client.get("/api/lists")
    assert failed.status_code == 503
    assert the_error(failed)["code"] == "service_unavailable"
    assert client.get("/api/lists").status_code == 200
    admin.post("/faults", json={"status": 400, "reject_emails": ["no@example.com"]})
    rejected = import_profile(client, {"email": "no@example.com"})
    assert rejected.status_code == 400
    assert "no@example.com" in the_error(rejected)["detail"]
    missing = client.get("/api/nothing-here")
    assert missing.status_code == 404
    assert the_error(missing)["code"] == "not_found"
    bad_admin = admin.post("/config", json={"import_rate": -1})
    assert bad_admin.status_code == 400
    assert bad_admin.json()["errors"][0]["code"] == "invalid"


def test_profiles_filter_and_pagination(client: httpx.Client) -> None:
    for i in range(5):
        import_profile(client, {"email": f"p{i}@example.com", "external_id": f"x{i}"})
    page = client.get("/api/profiles", params={"page[size]": 2}).json()
    assert len(page["data"]) == 2 and "next" in page["links"]
    found = client.get(
        "/api/profiles", params={"filter": "any(email,['p1@example.com','P3@example.com'])"}
    ).json()["data"]
    assert sorted(p["attributes"]["email"] for p in found) == ["p1@example.com", "p3@example.com"]
    by_external = client.get("/api/profiles", params={"filter": 'equals(external_id,"x4")'})
    assert [p["attributes"]["email"] for p in by_external.json()["data"]] == ["p4@example.com"]
    bad = client.get("/api/profiles", params={"filter": "greater-than(email,1)"})
    assert bad.status_code == 400
    assert the_error(bad)["source"] == {"parameter": "filter"}
