"""Behaviour of the Mailchimp Marketing API v3 emulator, over real HTTP.

Every API exchange goes through a client whose response hook validates it against the
documented shapes (``emulators.mailchimp.contract``), so these are also contract tests.
Fixture names are prefixed ``mc_`` so they never shadow the Resend fixtures of conftest.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from emulators.mailchimp import MailchimpEmulator, create_app, subscriber_hash
from emulators.mailchimp.contract import (
    ContractViolation,
    in_spec,
    validate_exchange,
    validate_request,
)
from emulators.server import EmulatorServer
from tests.emulators.conftest import Clients, Recorder, admin_client

KEY = "0123456789abcdef0123456789abcdef-us6"
LIST_BODY: dict[str, Any] = {
    "name": "Newsletter",
    "contact": {"company": "Acme", "address1": "1 Main St", "city": "Atlanta", "country": "US"},
    "permission_reminder": "You signed up on our site.",
    "email_type_option": False,
    "campaign_defaults": {
        "from_name": "Acme",
        "from_email": "news@acme.io",
        "subject": "News",
        "language": "en",
    },
}


@pytest.fixture(scope="module")
def mc_server() -> Iterator[EmulatorServer]:
    with EmulatorServer(create_app(rate=1000)) as server:
        yield server


@pytest.fixture
def mc_state(mc_server: EmulatorServer) -> Iterator[MailchimpEmulator]:
    state: MailchimpEmulator = mc_server.app.state.emulator
    state.reset()
    state.configure({"rate": 1000, "concurrency": 10, "latency": 0, "datacenter": None})
    yield state
    state.reset()


@pytest.fixture
def mc_make(
    mc_server: EmulatorServer, mc_state: MailchimpEmulator
) -> Iterator[Callable[..., httpx.Client]]:
    """``mc_make(auth=...)``: a contract-checked client of the API root ``/3.0``."""
    with Clients(mc_server.url + "/3.0", Recorder(validate_exchange, in_spec).hook) as clients:

        def make(auth: Any = ("anystring", KEY)) -> httpx.Client:
            return clients.make(auth=auth)

        yield make


@pytest.fixture
def mc(mc_make: Callable[..., httpx.Client]) -> httpx.Client:
    return mc_make()


@pytest.fixture
def mc_admin(mc_server: EmulatorServer) -> Iterator[httpx.Client]:
    with admin_client(mc_server) as client:
        yield client


@pytest.fixture
def list_id(mc: httpx.Client) -> str:
    response = mc.post("/lists", json=LIST_BODY)
    assert response.status_code == 200, response.text
    value: str = response.json()["id"]
    return value


def problem(response: httpx.Response, status: int, title: str) -> dict[str, Any]:
    """The response is Mailchimp's problem document with this status and title."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["title"] == title, body
    assert body["type"].startswith("https://mailchimp.com/developer/")
    assert body["detail"] and body["instance"]
    return body


def put(client: httpx.Client, list_id: str, email: str, **fields: Any) -> httpx.Response:
    body = {"email_address": email, "status_if_new": "subscribed", **fields}
    return client.put(f"/lists/{list_id}/members/{subscriber_hash(email)}", json=body)


# --- auth, ping, lists -------------------------------------------------------------


def test_ping_needs_a_valid_key_in_basic_auth(
    mc_make: Callable[..., httpx.Client], mc_admin: httpx.Client
) -> None:
    assert mc_make().get("/ping").json() == {"health_status": "Everything's Chimpy!"}
    problem(mc_make(auth=None).get("/ping"), 401, "API Key Missing")
    problem(mc_make(auth=("user", "no-datacenter")).get("/ping"), 401, "API Key Invalid")
    bearer = mc_make(auth=None).get("/ping", headers={"Authorization": f"Bearer {KEY}"})
    problem(bearer, 401, "API Key Invalid")
    mc_admin.post("/config", json={"datacenter": "us1"})
    wrong_dc = problem(mc_make().get("/ping"), 401, "API Key Invalid")
    assert "wrong datacenter" in wrong_dc["detail"]
    assert mc_make(auth=("u", "abc-us1")).get("/ping").status_code == 200


def test_lists_are_created_read_and_scoped_to_the_key(
    mc: httpx.Client, mc_make: Callable[..., httpx.Client], list_id: str
) -> None:
    got = mc.get(f"/lists/{list_id}").json()
    assert got["name"] == "Newsletter" and got["stats"]["member_count"] == 0
    assert mc.get("/lists").json()["total_items"] == 1
    problem(mc.get("/lists/nope"), 404, "Resource Not Found")
    other = mc_make(auth=("u", "ffff-us6"))
    problem(other.get(f"/lists/{list_id}"), 404, "Resource Not Found")
    bad = problem(mc.post("/lists", json={**LIST_BODY, "name": ""}), 400, "Invalid Resource")
    assert bad["errors"][0]["field"] == "name"


def test_errors_for_bad_json_unknown_paths_and_methods(mc: httpx.Client, list_id: str) -> None:
    parse = mc.post(
        f"/lists/{list_id}", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    problem(parse, 400, "JSON Parse Error")
    problem(mc.get("/campaignz"), 404, "Resource Not Found")
    problem(mc.delete(f"/lists/{list_id}/merge-fields"), 405, "Method Not Allowed")


# --- members -----------------------------------------------------------------------


def test_put_upserts_by_subscriber_hash_with_status_if_new(mc: httpx.Client, list_id: str) -> None:
    created = put(mc, list_id, "Ann@Example.com", merge_fields={"FNAME": "Ann"})
    assert created.status_code == 200, created.text
    member = created.json()
    assert member["id"] == subscriber_hash("ann@example.com")
    assert member["email_address"] == "Ann@Example.com"
    assert member["status"] == "subscribed"
    assert member["merge_fields"]["FNAME"] == "Ann" and member["full_name"] == "Ann"

    # status_if_new does not touch an existing member; status does.
    mc.patch(f"/lists/{list_id}/members/{member['id']}", json={"status": "unsubscribed"})
    again = put(mc, list_id, "ann@example.com", merge_fields={"LNAME": "Lee"}).json()
    assert again["status"] == "unsubscribed"
    assert again["merge_fields"]["FNAME"] == "Ann" and again["merge_fields"]["LNAME"] == "Lee"
    assert put(mc, list_id, "ann@example.com", status="subscribed").json()["status"] == "subscribed"
    assert mc.get(f"/lists/{list_id}/members/{member['id']}").json()["status"] == "subscribed"

    missing = mc.put(
        f"/lists/{list_id}/members/{subscriber_hash('bob@example.com')}",
        json={"email_address": "bob@example.com"},
    )
    assert problem(missing, 400, "Invalid Resource")["errors"][0]["field"] == "status_if_new"
    wrong_hash = mc.put(
        f"/lists/{list_id}/members/{subscriber_hash('x@example.com')}",
        json={"email_address": "bob@example.com", "status_if_new": "subscribed"},
    )
    problem(wrong_hash, 404, "Resource Not Found")
    bad_status = put(mc, list_id, "bob@example.com", status="archived")
    problem(bad_status, 400, "Invalid Resource")
    problem(mc.get(f"/lists/{list_id}/members/{'0' * 32}"), 404, "Resource Not Found")
    assert mc.get(f"/lists/{list_id}/members").json()["total_items"] == 1


def test_put_to_an_old_hash_changes_the_address(mc: httpx.Client, list_id: str) -> None:
    old = put(mc, list_id, "old@example.com").json()
    moved = mc.put(
        f"/lists/{list_id}/members/{old['id']}",
        json={"email_address": "new@example.com", "status_if_new": "subscribed"},
    ).json()
    assert moved["id"] == subscriber_hash("new@example.com")
    assert moved["unique_email_id"] == old["unique_email_id"]
    problem(mc.get(f"/lists/{list_id}/members/{old['id']}"), 404, "Resource Not Found")
    put(mc, list_id, "other@example.com")
    clash = mc.put(
        f"/lists/{list_id}/members/{moved['id']}",
        json={"email_address": "other@example.com", "status_if_new": "subscribed"},
    )
    problem(clash, 400, "Member Exists")


@pytest.mark.parametrize("email", ["no-at-sign", "a@b", "two@@example.com", "x@example.c0m"])
def test_invalid_addresses_look_fake(mc: httpx.Client, list_id: str, email: str) -> None:
    body = problem(put(mc, list_id, email), 400, "Invalid Resource")
    assert body["detail"] == f"{email} looks fake or invalid, please enter a real email address."
    assert mc.get(f"/lists/{list_id}/members").json()["total_items"] == 0


def test_members_are_paged_with_count_offset_and_total_items(
    mc: httpx.Client, list_id: str
) -> None:
    for i in range(25):
        put(mc, list_id, f"user{i:02d}@example.com")
    default = mc.get(f"/lists/{list_id}/members").json()
    assert len(default["members"]) == 10 and default["total_items"] == 25
    last = mc.get(f"/lists/{list_id}/members", params={"count": 10, "offset": 20}).json()
    assert [m["email_address"] for m in last["members"]] == [
        f"user{i:02d}@example.com" for i in range(20, 25)
    ]
    problem(mc.get(f"/lists/{list_id}/members", params={"count": 1001}), 400, "Invalid Resource")
    problem(mc.get(f"/lists/{list_id}/members", params={"offset": -1}), 400, "Invalid Resource")
    problem(mc.get(f"/lists/{list_id}/members", params={"status": "gone"}), 400, "Invalid Resource")


def test_archive_hides_a_member_and_an_upsert_brings_it_back(
    mc: httpx.Client, list_id: str
) -> None:
    member = put(mc, list_id, "arch@example.com", merge_fields={"FNAME": "Ar"}).json()
    path = f"/lists/{list_id}/members/{member['id']}"
    deleted = mc.delete(path)
    assert deleted.status_code == 204 and deleted.content == b""
    assert mc.get(path).json()["status"] == "archived"
    assert mc.get(f"/lists/{list_id}/members").json()["total_items"] == 0
    archived = mc.get(f"/lists/{list_id}/members", params={"status": "archived"}).json()
    assert [m["email_address"] for m in archived["members"]] == ["arch@example.com"]
    problem(mc.delete(path), 404, "Resource Not Found")

    back = put(mc, list_id, "arch@example.com", status_if_new="pending").json()
    assert back["status"] == "pending" and back["merge_fields"]["FNAME"] == "Ar"
    assert mc.get(f"/lists/{list_id}/members").json()["total_items"] == 1


def test_permanent_delete_forgets_the_address(mc: httpx.Client, list_id: str) -> None:
    member = put(mc, list_id, "gone@example.com").json()
    path = f"/lists/{list_id}/members/{member['id']}"
    erased = mc.post(f"{path}/actions/delete-permanent")
    assert erased.status_code == 204
    problem(mc.get(path), 404, "Resource Not Found")
    problem(mc.post(f"{path}/actions/delete-permanent"), 404, "Resource Not Found")
    refused = problem(put(mc, list_id, "gone@example.com"), 400, "Forgotten Email Not Subscribed")
    assert "permanently deleted" in refused["detail"]
    assert put(mc, list_id, "gone@example.com", status_if_new="pending").json()["status"] == (
        "pending"
    )


# --- merge fields ------------------------------------------------------------------


def test_merge_fields_must_exist_and_hold_the_right_type(mc: httpx.Client, list_id: str) -> None:
    defaults = mc.get(f"/lists/{list_id}/merge-fields").json()
    assert [f["tag"] for f in defaults["merge_fields"]] == [
        "FNAME",
        "LNAME",
        "ADDRESS",
        "PHONE",
        "BIRTHDAY",
    ]
    unknown = problem(
        put(mc, list_id, "m@example.com", merge_fields={"PLAN": "pro"}), 400, "Invalid Resource"
    )
    assert unknown["detail"] == "Your merge fields were invalid."
    assert unknown["errors"] == [{"field": "PLAN", "message": "This merge field does not exist."}]
    assert mc.get(f"/lists/{list_id}/members").json()["total_items"] == 0

    created = mc.post(
        f"/lists/{list_id}/merge-fields", json={"tag": "plan", "name": "Plan", "type": "text"}
    )
    assert created.json()["tag"] == "PLAN" and created.json()["type"] == "text"
    mc.post(f"/lists/{list_id}/merge-fields", json={"tag": "SCORE", "name": "S", "type": "number"})
    written = put(mc, list_id, "m@example.com", merge_fields={"PLAN": "pro", "SCORE": 7}).json()
    assert written["merge_fields"]["PLAN"] == "pro" and written["merge_fields"]["SCORE"] == 7
    not_number = put(mc, list_id, "m@example.com", merge_fields={"SCORE": "lots"})
    assert problem(not_number, 400, "Invalid Resource")["errors"][0]["field"] == "SCORE"

    duplicate = mc.post(
        f"/lists/{list_id}/merge-fields", json={"tag": "PLAN", "name": "Again", "type": "text"}
    )
    assert "already exists" in problem(duplicate, 400, "Invalid Resource")["detail"]
    too_long = mc.post(
        f"/lists/{list_id}/merge-fields", json={"tag": "ELEVENCHARS", "name": "x", "type": "text"}
    )
    problem(too_long, 400, "Invalid Resource")
    bad_type = mc.post(f"/lists/{list_id}/merge-fields", json={"name": "x", "type": "colour"})
    problem(bad_type, 400, "Invalid Resource")
    page = mc.get(f"/lists/{list_id}/merge-fields", params={"count": 3, "offset": 5}).json()
    assert page["total_items"] == 7
    assert [f["tag"] for f in page["merge_fields"]] == ["PLAN", "SCORE"]


def test_required_merge_fields_are_enforced_for_new_members(mc: httpx.Client, list_id: str) -> None:
    mc.post(
        f"/lists/{list_id}/merge-fields",
        json={"tag": "CITY", "name": "City", "type": "text", "required": True},
    )
    refused = problem(put(mc, list_id, "r@example.com"), 400, "Invalid Resource")
    assert refused["errors"] == [{"field": "CITY", "message": "Please enter a value"}]
    skipped = mc.put(
        f"/lists/{list_id}/members/{subscriber_hash('r@example.com')}",
        params={"skip_merge_validation": "true"},
        json={"email_address": "r@example.com", "status_if_new": "subscribed"},
    )
    assert skipped.status_code == 200


# --- batch subscribe ---------------------------------------------------------------


def test_batch_subscribe_reports_each_member(mc: httpx.Client, list_id: str) -> None:
    put(mc, list_id, "old@example.com", merge_fields={"FNAME": "Old"})
    members = [
        {"email_address": "new1@example.com", "status_if_new": "subscribed"},
        {"email_address": "new2@example.com", "status": "pending"},
        {
            "email_address": "old@example.com",
            "status_if_new": "subscribed",
            "merge_fields": {"LNAME": "Timer"},
        },
        {"email_address": "bad@@example.com", "status_if_new": "subscribed"},
        {
            "email_address": "nofield@example.com",
            "status_if_new": "subscribed",
            "merge_fields": {"NOPE": "x"},
        },
    ]
    answer = mc.post(f"/lists/{list_id}", json={"members": members, "update_existing": True})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["total_created"], body["total_updated"], body["error_count"]) == (2, 1, 2)
    assert [m["email_address"] for m in body["new_members"]] == [
        "new1@example.com",
        "new2@example.com",
    ]
    assert body["new_members"][1]["status"] == "pending"
    assert body["updated_members"][0]["merge_fields"]["FNAME"] == "Old"
    assert body["updated_members"][0]["merge_fields"]["LNAME"] == "Timer"
    fake, nofield = body["errors"]
    assert fake == {
        "email_address": "bad@@example.com",
        "error": "bad@@example.com looks fake or invalid, please enter a real email address.",
        "error_code": "ERROR_GENERIC",
    }
    assert nofield["email_address"] == "nofield@example.com" and nofield["field"] == "NOPE"
    assert mc.get(f"/lists/{list_id}/members").json()["total_items"] == 3

    again = mc.post(f"/lists/{list_id}", json={"members": members[:1]}).json()
    assert again["errors"][0]["error_code"] == "ERROR_CONTACT_EXISTS"
    assert again["total_created"] == again["total_updated"] == 0


def test_batch_subscribe_takes_at_most_500_members(mc: httpx.Client, list_id: str) -> None:
    members = [
        {"email_address": f"u{i}@example.com", "status_if_new": "subscribed"} for i in range(501)
    ]
    # The contract forbids it too: send without the contract hook to see the server's answer.
    raw = httpx.post(
        f"{str(mc.base_url).rstrip('/')}/lists/{list_id}",
        json={"members": members},
        auth=("u", KEY),
        timeout=30,
    )
    problem(raw, 400, "Invalid Resource")
    assert mc.get(f"/lists/{list_id}/members").json()["total_items"] == 0
    ok = mc.post(f"/lists/{list_id}", json={"members": members[:500], "update_existing": True})
    assert ok.json()["total_created"] == 500


# --- tags --------------------------------------------------------------------------


def test_tags_are_added_and_removed(mc: httpx.Client, list_id: str) -> None:
    member = put(mc, list_id, "t@example.com").json()
    path = f"/lists/{list_id}/members/{member['id']}/tags"
    added = mc.post(
        path,
        json={"tags": [{"name": "vip", "status": "active"}, {"name": "beta", "status": "active"}]},
    )
    assert added.status_code == 204 and added.content == b""
    tags = mc.get(path).json()
    assert [t["name"] for t in tags["tags"]] == ["vip", "beta"] and tags["total_items"] == 2
    mc.post(path, json={"tags": [{"name": "beta", "status": "inactive"}]})
    got = mc.get(f"/lists/{list_id}/members/{member['id']}").json()
    assert [t["name"] for t in got["tags"]] == ["vip"] and got["tags_count"] == 1
    bad = mc.post(path, json={"tags": [{"name": "x", "status": "on"}]})
    problem(bad, 400, "Invalid Resource")
    unknown = f"/lists/{list_id}/members/{'0' * 32}/tags"
    problem(
        mc.post(unknown, json={"tags": [{"name": "x", "status": "active"}]}),
        404,
        "Resource Not Found",
    )


# --- limits and faults -------------------------------------------------------------


def test_the_eleventh_simultaneous_connection_gets_429_and_changes_nothing(
    mc_server: EmulatorServer, mc_admin: httpx.Client, list_id: str
) -> None:
    mc_admin.post("/config", json={"latency": 0.6})
    results: list[httpx.Response] = []
    barrier = threading.Barrier(11)

    def one(i: int) -> None:
        email = f"c{i}@example.com"
        barrier.wait()
        response = httpx.put(
            f"{mc_server.url}/3.0/lists/{list_id}/members/{subscriber_hash(email)}",
            json={"email_address": email, "status_if_new": "subscribed"},
            auth=("u", KEY),
            timeout=30,
        )
        validate_exchange(response.request, response)
        results.append(response)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(11)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200] * 10 + [429], statuses
    [limited] = [r for r in results if r.status_code == 429]
    body = problem(limited, 429, "Too Many Requests")
    assert body["detail"] == "You have exceeded the limit of 10 simultaneous connections."
    assert limited.headers["retry-after"] == "1"
    mc_admin.post("/config", json={"latency": 0})
    held = httpx.get(
        f"{mc_server.url}/3.0/lists/{list_id}/members", params={"count": 100}, auth=("u", KEY)
    ).json()
    assert held["total_items"] == 10
    assert mc_admin.get("/stats").json()["rate_limited"] == 1


def test_the_rate_window_answers_429_with_retry_after(
    mc: httpx.Client, mc_admin: httpx.Client, mc_state: MailchimpEmulator, list_id: str
) -> None:
    mc_admin.post("/config", json={"rate": 2})
    mc_state.limiter.reset()  # forget the request that created the list
    assert put(mc, list_id, "a@example.com").status_code == 200
    assert put(mc, list_id, "b@example.com").status_code == 200
    limited = put(mc, list_id, "c@example.com")
    problem(limited, 429, "Too Many Requests")
    assert int(limited.headers["retry-after"]) >= 1
    assert "ratelimit-remaining" not in limited.headers
    mc_admin.post("/config", json={"rate": 1000})
    assert mc.get(f"/lists/{list_id}/members").json()["total_items"] == 2


def test_injected_faults_use_the_problem_shape(
    mc: httpx.Client, mc_admin: httpx.Client, list_id: str
) -> None:
    mc_admin.post("/faults", json={"status": 503, "count": 2})
    problem(put(mc, list_id, "f@example.com"), 503, "Service Unavailable")
    problem(mc.get("/ping"), 503, "Service Unavailable")
    assert mc.get("/ping").status_code == 200
    assert mc.get(f"/lists/{list_id}/members").json()["total_items"] == 0
    assert mc_admin.get("/stats").json()["faulted"] == 2
    bad = mc_admin.post("/faults", json={"status": 200})
    problem(bad, 400, "Invalid Resource")


def test_rejected_emails_fail_alone_in_mailchimps_words(
    mc: httpx.Client, mc_admin: httpx.Client, list_id: str
) -> None:
    mc_admin.post("/faults", json={"status": 400, "reject_emails": ["No@Example.com"]})
    refused = problem(put(mc, list_id, "no@example.com"), 400, "Invalid Resource")
    assert (
        refused["detail"]
        == "no@example.com looks fake or invalid, please enter a real email address."
    )
    batch = mc.post(
        f"/lists/{list_id}",
        json={
            "members": [
                {"email_address": "yes@example.com", "status_if_new": "subscribed"},
                {"email_address": "no@example.com", "status_if_new": "subscribed"},
            ]
        },
    ).json()
    assert batch["total_created"] == 1
    assert batch["errors"][0]["email_address"] == "no@example.com"
    assert "looks fake" in batch["errors"][0]["error"]
    assert mc_admin.get("/stats").json()["faulted"] == 2
    mc_admin.post(
        "/faults", json={"status": 400, "reject_emails": ["x@example.com"], "message": "Blocked"}
    )
    mc_admin.delete("/faults")
    assert put(mc, list_id, "no@example.com").status_code == 200


def test_reset_drops_data_and_accounts_describe_lists(
    mc: httpx.Client, mc_admin: httpx.Client, list_id: str
) -> None:
    put(mc, list_id, "a@example.com")
    accounts = mc_admin.get("/accounts").json()
    assert accounts[KEY][list_id]["subscribed"] == 1
    assert mc_admin.post("/reset").json() == {"reset": True}
    problem(mc.get(f"/lists/{list_id}"), 404, "Resource Not Found")


# --- contract and CLI --------------------------------------------------------------


def test_the_contract_catches_undocumented_request_fields() -> None:
    request = httpx.Request(
        "PUT",
        f"http://x/3.0/lists/abc/members/{'a' * 32}",
        json={"email_address": "a@example.com", "status_if_New": "subscribed"},
    )
    with pytest.raises(ContractViolation, match="status_if_new"):
        validate_request(request)
    leaked = httpx.Response(
        404, json={"error": "nope"}, request=httpx.Request("GET", "http://x/3.0/ping")
    )
    with pytest.raises(ContractViolation, match="problem"):
        validate_exchange(leaked.request, leaked)


def test_cli_help_names_the_options() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "emulators.mailchimp", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "--port" in out and "--rate" in out and "--datacenter" in out
