"""Loyalty tiers: a group of rule-based audiences over value ranges of one field."""

from __future__ import annotations

from typing import Any

from shared.contacts import upsert_contacts
from shared.db.models import AudienceSync
from shared.db.session import session_scope
from tests.conftest import WorkspaceClient, make_sync
from tests.groups.test_split_groups import all_pages

VALUES = {"a": 0, "b": 50, "c": 99.99, "d": 100, "e": 250, "f": 499.5, "g": 500, "h": 1200, "i": -5}
TIERS = [
    {"name": "Gold", "min": 500},
    {"name": "Bronze", "min": 0, "max": 100},
    {"name": "Silver", "min": 100, "max": 500},
]


def load_customers(ws: WorkspaceClient) -> None:
    rows: list[dict[str, Any]] = [
        {"email": f"{name}@shop.test", "properties": {"totalOrderValue": value}}
        for name, value in VALUES.items()
    ]
    rows.append({"email": "nothing@shop.test", "properties": {}})
    with session_scope() as session:
        upsert_contacts(session, ws.id, rows)


def members(ws: WorkspaceClient, audience_id: str) -> list[str]:
    page = ws.get(f"/audiences/{audience_id}/members", params={"first": 100}).json()
    return [m["key"].split("@")[0] for m in page["data"]]


def create(ws: WorkspaceClient) -> dict[str, Any]:
    return ws.create(
        "/audiences/loyalty-tiers",
        {"name": "Loyalty", "field": "metadata.totalOrderValue", "tiers": TIERS},
    )


def test_tiers_are_audiences_over_half_open_ranges(ws: WorkspaceClient) -> None:
    load_customers(ws)
    group = create(ws)
    assert group["kind"] == "loyalty_tiers" and group["field"] == "metadata.totalOrderValue"
    tiers = {tier["name"]: tier for tier in group["tiers"]}
    assert [t["name"] for t in group["tiers"]] == ["Bronze", "Silver", "Gold"]
    assert members(ws, tiers["Bronze"]["id"]) == ["a", "b", "c"]
    assert members(ws, tiers["Silver"]["id"]) == ["d", "e", "f"]  # 100 is Silver only
    assert members(ws, tiers["Gold"]["id"]) == ["g", "h"]
    gold = ws.get(f"/audiences/{tiers['Gold']['id']}").json()
    assert gold["name"] == "Loyalty: Gold" and gold["group_id"] == group["id"]
    assert gold["rules"] == {
        "all": [{"field": "metadata.totalOrderValue", "op": "gte", "value": 500.0}]
    }

    url = f"/audiences/groups/{group['id']}"
    counted = ws.get(url, params={"include": "counts"}).json()
    assert [(t["name"], t["count"]) for t in counted["tiers"]] == [
        ("Bronze", 3),
        ("Silver", 3),
        ("Gold", 2),
    ]
    assert [a["id"] for a in counted["audiences"]] == [t["id"] for t in counted["tiers"]]
    everyone = all_pages(ws, f"{url}/members")
    assert [(m["key"].split("@")[0], m["tier"]) for m in everyone] == [
        ("a", "Bronze"),
        ("b", "Bronze"),
        ("c", "Bronze"),
        ("d", "Silver"),
        ("e", "Silver"),
        ("f", "Silver"),
        ("g", "Gold"),
        ("h", "Gold"),
    ]
    assert all(m["audience_id"] == tiers[m["tier"]]["id"] for m in everyone)
    silver = all_pages(ws, f"{url}/members", audienceId=tiers["Silver"]["id"])
    assert [m["key"].split("@")[0] for m in silver] == ["d", "e", "f"]
    searched = ws.get(f"{url}/members", params={"search": "h@shop"}).json()["data"]
    assert [m["key"] for m in searched] == ["h@shop.test"]
    assert ws.get(f"{url}/members", params={"audienceId": "nope"}).status_code == 404
    assert [g["id"] for g in ws.get("/audiences/groups").json()] == [group["id"]]


def test_bad_tiers_are_refused_and_nothing_is_written(ws: WorkspaceClient) -> None:
    load_customers(ws)
    cases = [
        ({"tiers": [{"name": "A", "min": 0, "max": 200}, {"name": "B", "min": 100}]}, "overlap"),
        ({"tiers": [{"name": "A", "min": 10, "max": 5}]}, "min must be below max"),
        ({"tiers": [{"name": "A"}]}, "give min, max or both"),
        ({"tiers": [{"name": "A", "min": 1}, {"name": "A", "min": 5}]}, "unique"),
        ({"field": "nope", "tiers": [{"name": "A", "min": 1}]}, "tiers[0] (A)"),
        ({"field": "email", "tiers": [{"name": "A", "min": 1}]}, "tiers[0] (A)"),
        ({"source_id": "00000000-0000-0000-0000-000000000000", "tiers": TIERS}, "source"),
    ]
    for change, reason in cases:
        body = {"name": "L", "field": "metadata.totalOrderValue", **change}
        response = ws.post("/audiences/loyalty-tiers", json=body)
        assert response.status_code in (404, 422), (change, response.text)
        assert reason in response.json()["error"]["message"], response.text
    assert ws.get("/audiences").json() == []
    assert ws.get("/audiences/groups").json() == []


def test_update_creates_updates_and_deletes_tiers(ws: WorkspaceClient, resend: Any) -> None:
    load_customers(ws)
    group = create(ws)
    tiers = {tier["name"]: tier["id"] for tier in group["tiers"]}
    url = f"/audiences/loyalty-tiers/{group['id']}"
    updated = ws.put(
        url,
        json={
            "tiers": [
                {"name": "Bronze", "max": 100},  # matched by name: now also below 0
                {"id": tiers["Silver"], "name": "Silver+", "min": 100, "max": 1000},
                {"name": "Platinum", "min": 1000},
            ]
        },
    )
    assert updated.status_code == 200, updated.text
    after = {tier["name"]: tier["id"] for tier in updated.json()["tiers"]}
    assert list(after) == ["Bronze", "Silver+", "Platinum"]
    assert after["Bronze"] == tiers["Bronze"] and after["Silver+"] == tiers["Silver"]
    assert after["Platinum"] not in tiers.values()
    assert ws.get(f"/audiences/{tiers['Gold']}").status_code == 404, "a removed tier is archived"
    assert members(ws, after["Bronze"]) == ["a", "b", "c", "i"]
    assert members(ws, after["Silver+"]) == ["d", "e", "f", "g"]
    assert members(ws, after["Platinum"]) == ["h"]
    assert ws.get(f"/audiences/{after['Silver+']}").json()["name"] == "Loyalty: Silver+"

    # A tier an audience sync reads cannot be removed; nothing changes.
    sync = make_sync(ws, resend.url)
    with session_scope() as session:
        session.get_one(AudienceSync, sync["id"]).audience_id = after["Platinum"]
    refused = ws.put(url, json={"tiers": [{"name": "Bronze", "max": 100}]})
    assert refused.status_code == 409, refused.text
    assert len(ws.get(f"/audiences/groups/{group['id']}").json()["tiers"]) == 3
    assert ws.delete(f"/audiences/groups/{group['id']}").status_code == 409
    unknown = ws.put(url, json={"tiers": [{"id": "elsewhere", "name": "X", "min": 1}]})
    assert unknown.status_code == 422

    ws.delete(f"/audience-syncs/{sync['id']}")
    assert ws.delete(f"/audiences/groups/{group['id']}").json() == {"status": "deleted"}
    assert ws.get(f"/audiences/groups/{group['id']}").status_code == 404
    assert ws.put(url, json={"tiers": TIERS}).status_code == 404
    remaining = [a["name"] for a in ws.get("/audiences").json()]
    assert remaining == ["active"], "the group's tiers are archived with it"
