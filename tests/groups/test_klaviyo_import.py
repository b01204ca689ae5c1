"""Klaviyo lists imported as synced audiences, through the Klaviyo emulator on a real port."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from emulators.klaviyo import create_app
from emulators.server import EmulatorServer
from shared.contacts import upsert_contacts
from shared.db.models import Contact
from shared.db.session import session_scope
from shared.synced_lists import claim_sync
from tests.conftest import WorkspaceClient
from tests.emulators.test_klaviyo_emulator import job_body, new_list, send, wait_job

KEY = "pk_test_key"
HEADERS = {
    "Authorization": f"Klaviyo-API-Key {KEY}",
    "revision": "2026-07-15",
    "Accept": "application/vnd.api+json",
}
PROFILES_ROUTE = "GET /api/lists/{id}/profiles"


@pytest.fixture
def klaviyo() -> Iterator[EmulatorServer]:
    with EmulatorServer(create_app()) as server:
        yield server
        server.app.state.emulator.wait_for_jobs()


@pytest.fixture
def kapi(klaviyo: EmulatorServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=klaviyo.url, headers=HEADERS) as client:
        yield client


def seed_list(client: httpx.Client, name: str, profiles: list[dict[str, Any]]) -> str:
    list_id = new_list(client, name)
    created = send(client, "POST", "/api/profile-bulk-import-jobs", job_body(profiles, list_id))
    assert created.status_code == 202, created.text
    assert wait_job(client, created.json()["data"]["id"])["status"] == "complete"
    return list_id


def destination(ws: WorkspaceClient, url: str, list_id: str) -> str:
    return ws.create(
        "/destinations",
        {
            "name": "klaviyo",
            "type": "klaviyo",
            "config": {"base_url": url, "list_id": list_id, "rate_limit": 200},
            "credentials": {"api_key": KEY},
        },
    )["id"]


def keys(ws: WorkspaceClient, audience_id: str) -> list[str]:
    out: list[str] = []
    after = None
    while True:
        params: dict[str, Any] = {"first": 100} | ({"after": after} if after else {})
        page = ws.get(f"/audiences/{audience_id}/members", params=params).json()
        out += [m["key"] for m in page["data"]]
        if not page["page_info"]["has_next_page"]:
            return out
        after = page["page_info"]["end_cursor"]


def fault(url: str, **rule: Any) -> None:
    assert httpx.post(f"{url}/_emulator/faults", json=rule).status_code in (200, 201)


def clear_faults(url: str) -> None:
    httpx.delete(f"{url}/_emulator/faults")


VIPS = [
    {"email": f"vip{i:03d}@shop.test", "first_name": f"V{i}", "properties": {"tier": "vip"}}
    for i in range(250)
] + [{"phone_number": "+14155550100"}]  # no email: skipped


def test_lists_become_synced_audiences_with_contacts(
    ws: WorkspaceClient, klaviyo: EmulatorServer, kapi: httpx.Client
) -> None:
    vips = seed_list(kapi, "VIPs", VIPS)
    news = seed_list(kapi, "Newsletter", [{"email": "News@Shop.test", "last_name": "Reader"}])
    with session_scope() as session:  # a contact the store already has keeps what it has
        upsert_contacts(
            session,
            ws.id,
            [{"email": "vip001@shop.test", "last_name": "Kept", "properties": {"app_x": 1}}],
        )
    dest = destination(ws, klaviyo.url, vips)
    response = ws.post(
        "/audiences/import/klaviyo", json={"destination_id": dest, "list_ids": [vips, news]}
    )
    assert response.status_code == 201, response.text
    lists = response.json()["lists"]
    assert [(i["list_name"], i["members"], i["skipped"], i["created"]) for i in lists] == [
        ("VIPs", 250, 1, True),
        ("Newsletter", 1, 0, True),
    ]
    audience = lists[0]["audience"]
    assert audience["name"] == "VIPs" and audience["kind"] == "static"
    assert audience["status"] == "ready"
    assert audience["sync_source"]["type"] == "klaviyo"
    assert audience["sync_source"]["list_id"] == vips and audience["sync_source"]["members"] == 250
    assert ws.get(f"/audiences/{audience['id']}/count").json()["count"] == 250
    assert keys(ws, audience["id"]) == [f"vip{i:03d}@shop.test" for i in range(250)]
    assert keys(ws, lists[1]["audience"]["id"]) == ["news@shop.test"]
    with session_scope() as session:
        contacts = {
            c.email: c
            for c in session.execute(select(Contact).where(Contact.workspace_id == ws.id)).scalars()
        }
        assert len(contacts) == 251
        kept = contacts["vip001@shop.test"]
        assert (kept.first_name, kept.last_name) == ("V1", "Kept")
        assert kept.properties == {"app_x": 1, "tier": "vip"}
        assert contacts["news@shop.test"].last_name == "Reader"

    # Importing a list again re-syncs its audience; it does not make a second one.
    again = ws.post("/audiences/import/klaviyo", json={"destination_id": dest, "list_ids": [vips]})
    assert again.status_code == 201, again.text
    assert again.json()["lists"][0]["created"] is False
    assert again.json()["lists"][0]["audience"]["id"] == audience["id"]
    assert len(ws.get("/audiences").json()) == 2


def test_resync_mirrors_the_list_and_refuses_what_it_cannot_do(
    ws: WorkspaceClient, klaviyo: EmulatorServer, kapi: httpx.Client
) -> None:
    list_id = seed_list(kapi, "VIPs", VIPS[:5])
    dest = destination(ws, klaviyo.url, list_id)
    imported = ws.post(
        "/audiences/import/klaviyo", json={"destination_id": dest, "list_ids": [list_id]}
    )
    audience_id = imported.json()["lists"][0]["audience"]["id"]
    url = f"/audiences/{audience_id}/sync"

    # vip000 leaves the list, new@ joins it.
    leaving = kapi.get(
        f"/api/lists/{list_id}/profiles", params={"filter": 'equals(email,"vip000@shop.test")'}
    )
    profile_id = leaving.json()["data"][0]["id"]
    body = {"data": [{"type": "profile", "id": profile_id}]}
    assert (
        send(kapi, "DELETE", f"/api/lists/{list_id}/relationships/profiles", body).status_code
        == 204
    )
    job = send(
        kapi,
        "POST",
        "/api/profile-bulk-import-jobs",
        job_body([{"email": "new@shop.test"}], list_id),
    )
    wait_job(kapi, job.json()["data"]["id"])

    synced = ws.post(url)
    assert synced.status_code == 200, synced.text
    assert synced.json()["members"] == 5
    assert keys(ws, audience_id) == [
        "new@shop.test",
        "vip001@shop.test",
        "vip002@shop.test",
        "vip003@shop.test",
        "vip004@shop.test",
    ]
    assert synced.json()["audience"]["primary_sync_source"]["last_synced_at"]

    # Klaviyo down mid-sync: 502, the audience keeps its members and shows the error.
    fault(klaviyo.url, status=503, route=PROFILES_ROUTE, count=1000)
    down = ws.post(url)
    assert down.status_code == 502 and "Klaviyo is unavailable" in down.json()["error"]["message"]
    status = ws.get(f"/audiences/{audience_id}/status").json()
    assert status["status"] == "error" and "503" in status["status_error"]
    assert len(keys(ws, audience_id)) == 5
    clear_faults(klaviyo.url)
    fault(klaviyo.url, status=401, route=PROFILES_ROUTE, count=1)
    refused = ws.post(url)
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "source_refused"
    assert KEY not in refused.text
    assert ws.post(url).status_code == 200
    assert ws.get(f"/audiences/{audience_id}/status").json()["status"] == "ready"

    # A sync in progress: 409.
    with session_scope() as session:
        claim_sync(session, audience_id)
    busy = ws.post(url)
    assert busy.status_code == 409 and "in progress" in busy.json()["error"]["message"]
    again = ws.post(
        "/audiences/import/klaviyo", json={"destination_id": dest, "list_ids": [list_id]}
    )
    assert again.status_code == 409

    # Not a synced list; a synced list whose source is gone: 400.
    rules = ws.create("/audiences", {"name": "rules"})
    not_synced = ws.post(f"/audiences/{rules['id']}/sync")
    assert not_synced.status_code == 400
    assert not_synced.json()["error"]["message"] == "audience is not a synced list"
    assert ws.delete(f"/destinations/{dest}").status_code == 200
    gone = ws.post(url)
    assert gone.status_code == 400 and "no sync source" in gone.json()["error"]["message"]
    assert ws.post("/audiences/nope/sync").status_code == 404


def test_bad_imports_are_refused_before_anything_is_created(
    ws: WorkspaceClient, klaviyo: EmulatorServer, kapi: httpx.Client, resend: Any
) -> None:
    list_id = seed_list(kapi, "VIPs", VIPS[:3])
    dest = destination(ws, klaviyo.url, list_id)
    missing = ws.post(
        "/audiences/import/klaviyo", json={"destination_id": dest, "list_ids": [list_id, "XyZ123"]}
    )
    assert missing.status_code == 422 and "XyZ123" in missing.json()["error"]["message"]
    wrong = ws.create(
        "/destinations",
        {
            "name": "r",
            "type": "resend",
            "config": {"base_url": resend.url},
            "credentials": {"api_key": "re_x"},
        },
    )
    not_klaviyo = ws.post(
        "/audiences/import/klaviyo", json={"destination_id": wrong["id"], "list_ids": [list_id]}
    )
    assert not_klaviyo.status_code == 422
    unknown = ws.post(
        "/audiences/import/klaviyo", json={"destination_id": "nope", "list_ids": [list_id]}
    )
    assert unknown.status_code == 404
    assert (
        ws.post(
            "/audiences/import/klaviyo", json={"destination_id": dest, "list_ids": []}
        ).status_code
        == 422
    )
    fault(klaviyo.url, status=503, route=PROFILES_ROUTE, count=1000)
    down = ws.post(
        "/audiences/import/klaviyo", json={"destination_id": dest, "list_ids": [list_id]}
    )
    # Klaviyo failing while members are read: the list's audience exists, empty, in error.
    assert down.status_code == 502
    assert down.json()["error"]["details"][0]["list_id"] == list_id
    [audience] = ws.get("/audiences").json()
    assert audience["status"] == "error" and keys(ws, audience["id"]) == []
    clear_faults(klaviyo.url)
    assert ws.post(f"/audiences/{audience['id']}/sync").json()["members"] == 3
    assert ws.get("/audiences").json()[0]["status"] == "ready"
