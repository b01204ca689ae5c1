"""A/B split groups: percentages that sum to 100, members assigned by a stable hash of their key,
read through the API and through ``split_filter`` (what a sync's ``split_group_id`` uses)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from shared.db.session import session_scope
from shared.domain.groups import (
    BUCKETS,
    SplitError,
    UnknownSplit,
    bucket,
    plan_parts,
    split_audience_id,
    split_filter,
)
from tests.audiences.test_audiences_api import load_contacts
from tests.conftest import WorkspaceClient


def all_pages(ws: WorkspaceClient, path: str, **params: Any) -> list[dict[str, Any]]:
    members: list[dict[str, Any]] = []
    after = None
    while True:
        query = {**params, "first": 7} | ({"after": after} if after else {})
        response = ws.get(path, params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        members += page["data"]
        if not page["page_info"]["has_next_page"]:
            return members
        after = page["page_info"]["end_cursor"]


# The assignment itself ----------------------------------------------------------------------
def test_parts_need_percentages_that_sum_to_100() -> None:
    parts = plan_parts([("A", 33.33), ("B", 33.33), ("C", 33.34)])
    assert [(p.lower, p.upper) for p in parts] == [(0, 3333), (3333, 6666), (6666, BUCKETS)]
    for bad, reason in [
        ([("A", 50), ("B", 40)], "sum to 100, not 90"),
        ([("A", 50), ("B", 50.001)], "more than 2 decimals"),
        ([("A", 100)], "at least 2"),
        ([("A", 0), ("B", 100)], "above 0"),
        ([("A", 50), ("A", 50)], "unique"),
    ]:
        with pytest.raises(SplitError, match=reason):
            plan_parts(bad)


def test_a_members_bucket_depends_only_on_the_group_and_its_key() -> None:
    keys = [f"user{i}@example.com" for i in range(20_000)]
    first = {key: bucket("group-1", key) for key in keys}
    # Another run, with half the audience gone and others joined: nobody moves.
    again = {key: bucket("group-1", key) for key in [*keys[::2], "new@example.com"]}
    assert all(again[key] == first[key] for key in keys[::2])
    # Shares follow the percentages (20,000 keys: within 1.5 points).
    parts = plan_parts([("A", 10), ("B", 30), ("C", 60)])
    shares = Counter(next(p.name for p in parts if p.lower <= first[key] < p.upper) for key in keys)
    for part in parts:
        assert abs(shares[part.name] / len(keys) * 100 - float(part.percentage)) < 1.5
    # Another group splits the same people independently.
    other = sum(1 for key in keys if (bucket("group-2", key) < 5000) == (first[key] < 5000))
    assert 0.45 < other / len(keys) < 0.55


# Through the API ----------------------------------------------------------------------------
def test_split_group_members_are_disjoint_cover_the_audience_and_stay_put(
    ws: WorkspaceClient,
) -> None:
    load_contacts(ws, 60)
    audience = ws.create("/audiences", {"name": "everyone"})
    bad = ws.post(
        f"/audiences/{audience['id']}/split-groups",
        json={
            "name": "t",
            "splits": [{"name": "A", "percentage": 50}, {"name": "B", "percentage": 40}],
        },
    )
    assert bad.status_code == 422 and "sum to 100" in bad.json()["error"]["message"]
    group = ws.create(
        f"/audiences/{audience['id']}/split-groups",
        {
            "name": "subject line",
            "splits": [
                {"name": "control", "percentage": 50},
                {"name": "A", "percentage": 30},
                {"name": "B", "percentage": 20},
            ],
        },
    )
    assert group["kind"] == "split_test" and group["audience_id"] == audience["id"]
    assert [(s["name"], s["percentage"]) for s in group["splits"]] == [
        ("control", 50.0),
        ("A", 30.0),
        ("B", 20.0),
    ]
    url = f"/audiences/groups/{group['id']}"
    everyone = all_pages(ws, f"{url}/members")
    assert [m["key"] for m in everyone] == [f"c{i:03d}@example.com" for i in range(60)]
    per_split = {
        split["id"]: [m["key"] for m in all_pages(ws, f"{url}/members", splitId=split["id"])]
        for split in group["splits"]
    }
    assert sorted(k for keys in per_split.values() for k in keys) == sorted(
        m["key"] for m in everyone
    )
    assert all(len(keys) > 0 for keys in per_split.values())
    for member in everyone:
        assert member["key"] in per_split[member["split_id"]]
    counts = ws.get(url, params={"include": "counts"}).json()["splits"]
    assert {s["id"]: s["count"] for s in counts} == {k: len(v) for k, v in per_split.items()}

    # split_filter, what an audience sync with split_group_id uses, says the same.
    with session_scope() as session:
        assert split_filter(session, None) is None
        for split_id, keys in per_split.items():
            belongs = split_filter(session, split_id)
            assert belongs is not None
            assert [m["key"] for m in everyone if belongs(m["key"])] == keys
            assert split_audience_id(session, split_id) == audience["id"]
        with pytest.raises(UnknownSplit):
            split_filter(session, group["id"])  # the group, not one of its splits

    # More contacts join: everyone already in a split stays in it.
    load_contacts(ws, 90)
    for split_id, keys in per_split.items():
        now = [m["key"] for m in all_pages(ws, f"{url}/members", splitId=split_id)]
        assert set(keys) <= set(now)
    listed = ws.get(f"/audiences/{audience['id']}/split-groups").json()
    assert [g["id"] for g in listed] == [group["id"]]
    assert ws.get(f"{url}/members", params={"splitId": "nope"}).status_code == 404


def test_a_split_used_by_a_sync_cannot_be_deleted(ws: WorkspaceClient, resend: Any) -> None:
    load_contacts(ws, 5)
    audience = ws.create("/audiences", {"name": "everyone"})
    group = ws.create(
        f"/audiences/{audience['id']}/split-groups",
        {"name": "t", "splits": [{"name": "A", "percentage": 50}, {"name": "B", "percentage": 50}]},
    )
    sync = {"id": split_sync(ws, resend.url, audience["id"], group["splits"][0]["id"])}
    refused = ws.delete(f"/audiences/groups/{group['id']}")
    assert refused.status_code == 409 and "to resend" in refused.json()["error"]["message"]
    assert ws.get(f"/audiences/groups/{group['id']}").status_code == 200
    assert ws.delete(f"/audience-syncs/{sync['id']}").status_code == 200
    assert ws.delete(f"/audiences/groups/{group['id']}").json() == {"status": "deleted"}
    assert ws.get(f"/audiences/groups/{group['id']}").status_code == 404
    with session_scope() as session, pytest.raises(UnknownSplit):
        split_filter(session, group["splits"][0]["id"])
    other = new_other_workspace_sees_nothing(ws, audience["id"])
    assert other == 404


def new_other_workspace_sees_nothing(ws: WorkspaceClient, audience_id: str) -> int:
    from tests.conftest import new_workspace

    other = new_workspace(ws.client, "other")
    response = other.post(
        f"/audiences/{audience_id}/split-groups",
        json={
            "name": "t",
            "splits": [{"name": "A", "percentage": 50}, {"name": "B", "percentage": 50}],
        },
    )
    return int(response.status_code)


def split_sync(ws: WorkspaceClient, resend_url: str, audience_id: str, split_id: str) -> str:
    destination = ws.create(
        "/destinations",
        {
            "name": "resend",
            "type": "resend",
            "config": {"base_url": resend_url, "rate_limit": 200},
            "credentials": {"api_key": "re_test_key"},
        },
    )
    return ws.create(
        "/audience-syncs",
        {
            "name": "to resend",
            "audience_id": audience_id,
            "destination_id": destination["id"],
            "field_mapping": [{"source_column": "email", "destination_field": "email"}],
            "sync_mode": "mirror",
            "split_group_id": split_id,
        },
    )["id"]


def test_a_sync_of_a_split_sends_only_that_split(ws: WorkspaceClient, resend: Any) -> None:
    from shared.config import get_settings
    from shared.db.models import AudienceSync
    from shared.db.session import get_sessionmaker
    from shared.execution import execute_run
    from shared.runs import create_run
    from tests.integration.test_runs import destination_contacts

    load_contacts(ws, 40)
    audience = ws.create("/audiences", {"name": "everyone"})
    other = ws.create("/audiences", {"name": "someone else"})
    group = ws.create(
        f"/audiences/{audience['id']}/split-groups",
        {"name": "t", "splits": [{"name": "A", "percentage": 50}, {"name": "B", "percentage": 50}]},
    )
    split_a = group["splits"][0]["id"]
    wrong = ws.post(
        "/audience-syncs",
        json={
            "name": "x",
            "audience_id": other["id"],
            "destination_id": ws.create(
                "/destinations",
                {"name": "r", "type": "resend", "config": {"base_url": resend.url},
                 "credentials": {"api_key": "re_x"}},
            )["id"],
            "field_mapping": [{"source_column": "email", "destination_field": "email"}],
            "sync_mode": "mirror",
            "split_group_id": split_a,
        },
    )  # fmt: skip
    assert wrong.status_code == 422, "a split of another audience is refused"

    sync_id = split_sync(ws, resend.url, audience["id"], split_a)
    with session_scope() as session:
        run_id = create_run(session, session.get_one(AudienceSync, sync_id), "api").id
    assert execute_run(run_id, get_settings(), get_sessionmaker()) == "succeeded"
    with session_scope() as session:
        keep = split_filter(session, split_a)
        assert keep is not None
        expected = {m["key"] for m in all_pages(ws, f"/audiences/{audience['id']}/members")}
        expected = {key for key in expected if keep(key)}
    held = set(destination_contacts(resend.url))
    assert held == expected and 0 < len(held) < 40
