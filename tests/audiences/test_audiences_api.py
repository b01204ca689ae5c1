"""Audiences over the contact store and static lists, through the API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from shared.contacts import upsert_contacts
from shared.db.session import session_scope
from tests.conftest import WorkspaceClient


def load_contacts(ws: WorkspaceClient, count: int) -> None:
    now = datetime.now(UTC)
    with session_scope() as session:
        upsert_contacts(
            session,
            ws.id,
            [
                {
                    "email": f"c{i:03d}@example.com",
                    "first_name": "Ann" if i % 2 else "Bo",
                    "last_name": f"Last{i}",
                    "phone": f"+1555{i:04d}",
                    "last_active_at": now - timedelta(days=i),
                    "properties": {"orders": i % 4, "vip": i % 10 == 0},
                }
                for i in range(count)
            ],
        )


def test_members_pages_cover_the_audience_once_in_key_order(ws: WorkspaceClient) -> None:
    load_contacts(ws, 45)
    audience = ws.create(
        "/audiences",
        {
            "name": "active",
            "rules": {"all": [{"field": "last_active_at", "op": "within_last_days", "value": 40}]},
        },
    )
    keys: list[str] = []
    after = None
    while True:
        params: dict[str, Any] = {"first": 7} | ({"after": after} if after else {})
        page = ws.get(f"/audiences/{audience['id']}/members", params=params).json()
        keys += [m["key"] for m in page["data"]]
        if not page["page_info"]["has_next_page"]:
            break
        after = page["page_info"]["end_cursor"]
    assert keys == [f"c{i:03d}@example.com" for i in range(40)]
    first = ws.get(f"/audiences/{audience['id']}/members").json()
    assert len(first["data"]) == 20 and first["data"][0]["metadata"] == {"orders": 0, "vip": True}
    assert ws.get(f"/audiences/{audience['id']}/members", params={"first": 101}).status_code == 422
    bad = ws.get(f"/audiences/{audience['id']}/members", params={"after": "%%%"})
    assert bad.status_code == 422


def test_search_by_email_phone_and_name(ws: WorkspaceClient) -> None:
    load_contacts(ws, 12)
    audience = ws.create("/audiences", {"name": "all"})

    def search(term: str) -> list[str]:
        response = ws.get(f"/audiences/{audience['id']}/members", params={"search": term})
        return [m["key"] for m in response.json()["data"]]

    assert search("C011@") == ["c011@example.com"]
    assert search("5550003") == ["c003@example.com"]
    assert search("ann last7") == ["c007@example.com"]
    assert search("last1") == ["c001@example.com", "c010@example.com", "c011@example.com"]
    assert search("%") == []


def test_count_preview_rules_add_update_status(ws: WorkspaceClient) -> None:
    load_contacts(ws, 30)
    audience = ws.create(
        "/audiences",
        {
            "name": "orders",
            "rules": {"all": [{"field": "metadata.orders", "op": "gte", "value": 2}]},
        },
    )
    url = f"/audiences/{audience['id']}"
    assert ws.get(f"{url}/count").json()["count"] == 14
    added = ws.post(
        f"{url}/rules",
        json={"rules": [{"field": "metadata.vip", "op": "eq", "value": True}], "combine": "all"},
    )
    assert added.status_code == 200, added.text
    assert len(added.json()["rules"]["all"]) == 2
    assert ws.get(f"{url}/count").json()["count"] == 1  # c010: orders 2, vip
    preview = ws.get(f"{url}/preview").json()
    assert preview == {"count": 1, "members": [preview["members"][0]]}
    assert preview["members"][0]["key"] == "c010@example.com"
    bad = ws.post(f"{url}/rules", json={"rules": [{"field": "nope", "op": "eq", "value": 1}]})
    assert bad.status_code == 422 and "rules.all[2]" in bad.json()["error"]["message"]
    assert len(ws.get(url).json()["rules"]["all"]) == 2, "a refused rule changes nothing"
    updated = ws.put(url, json={"name": "renamed", "rules": {}})
    assert updated.json()["name"] == "renamed"
    assert ws.get(f"{url}/count").json()["count"] == 30
    status = ws.get(f"{url}/status").json()
    assert status["status"] == "ready" and status["materialized"] is False
    assert status["status_changed_at"]
    unsaved = ws.post(
        "/audiences/preview",
        json={"rules": {"any": [{"field": "email", "op": "starts_with", "value": "c02"}]}},
    ).json()
    assert unsaved["count"] == 10 and len(unsaved["members"]) == 5
    listed = ws.get("/audiences", params={"include": "rules,imports,primarySyncSource"}).json()
    assert listed[0]["primary_sync_source"] == {
        "type": "contacts",
        "id": None,
        "name": "contact store",
    }
    assert listed[0]["imports"] == []
    assert ws.get("/audiences", params={"include": "everything"}).status_code == 422


def test_rules_nested_100_deep_and_sql_in_names(ws: WorkspaceClient) -> None:
    rules: dict[str, Any] = {"all": [{"field": "email", "op": "is_null"}]}
    for _ in range(100):
        rules = {"any": [rules]}
    deep = ws.post("/audiences", json={"name": "deep", "rules": rules})
    assert deep.status_code == 422 and "at most 20" in deep.json()["error"]["message"]
    injected = ws.post(
        "/audiences",
        json={
            "name": "x",
            "rules": {"all": [{"field": "metadata.a') OR 1=1 --", "op": "eq", "value": "x"}]},
        },
    )
    assert injected.status_code == 422 and "unknown field" in injected.json()["error"]["message"]
    assert ws.get("/audiences").json() == []


def test_static_list_members_through_the_api(ws: WorkspaceClient) -> None:
    audience = ws.create("/audiences", {"name": "vips", "kind": "static"})
    url = f"/audiences/{audience['id']}"
    added = ws.post(
        f"{url}/members",
        json={
            "members": [
                {"email": "B@Example.com", "first_name": "Bea", "metadata": {"tier": "gold"}},
                {"email": "a@example.com"},
            ]
        },
    )
    assert added.json() == {"written": 2}
    page = ws.get(f"{url}/members").json()["data"]
    assert [m["key"] for m in page] == ["a@example.com", "b@example.com"]
    assert page[1]["metadata"] == {"tier": "gold"} and page[1]["first_name"] == "Bea"
    refused = ws.post(
        f"{url}/members", json={"members": [{"email": "c@example.com"}, {"email": "not-an-email"}]}
    )
    assert refused.status_code == 422 and "members[1]" in refused.json()["error"]["message"]
    assert ws.get(f"{url}/count").json()["count"] == 2, "nothing of a refused call is written"
    filtered = ws.put(
        url, json={"rules": {"all": [{"field": "metadata.tier", "op": "eq", "value": "gold"}]}}
    )
    assert filtered.status_code == 200
    assert ws.get(f"{url}/count").json()["count"] == 1
    assert ws.post(f"{url}/members/remove", json={"keys": ["B@example.com"]}).json() == {
        "removed": 1
    }
    assert ws.get(f"{url}/count").json()["count"] == 0
    assert ws.get(f"{url}/status").json()["materialized"] is True
    dynamic = ws.create("/audiences", {"name": "d"})
    assert (
        ws.post(
            f"/audiences/{dynamic['id']}/members", json={"members": [{"email": "a@b.co"}]}
        ).status_code
        == 400
    )


def test_deleted_audiences_are_archived(ws: WorkspaceClient) -> None:
    audience = ws.create("/audiences", {"name": "gone"})
    assert ws.delete(f"/audiences/{audience['id']}").json() == {"status": "deleted"}
    assert ws.get(f"/audiences/{audience['id']}").status_code == 404
    assert ws.get(f"/audiences/{audience['id']}/members").status_code == 404
