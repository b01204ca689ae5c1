"""Sources through the API: a user's app database as a source, its fields, audiences over it,
and errors that name the source without its password."""

from __future__ import annotations

from typing import Any

from tests.conftest import WorkspaceClient


def sql_source(ws: WorkspaceClient, url: str, **config: Any) -> dict[str, Any]:
    body = {
        "name": "app users",
        "kind": "sql",
        "url": url,
        "config": config or {"table": "users", "key_column": "id"},
    }
    return ws.create("/sources", body)


def test_sql_source_fields_and_never_its_url(ws: WorkspaceClient, app_database: str) -> None:
    source = sql_source(ws, app_database)
    assert source["has_url"] is True
    assert "url" not in source and app_database not in str(ws.get("/sources").json())
    fields = {f["name"]: f for f in ws.get(f"/sources/{source['id']}/fields").json()["fields"]}
    assert fields["id"]["key"] is True and fields["id"]["type"] == "number"
    assert fields["last_active_at"]["type"] == "datetime"
    assert fields["active"]["type"] == "boolean"
    assert fields["metadata"]["type"] == "json" and "metadata.*" in fields


def test_audience_over_a_sql_source(ws: WorkspaceClient, app_database: str) -> None:
    source = sql_source(ws, app_database)
    rules = {
        "all": [
            {"field": "last_active_at", "op": "within_last_days", "value": 20},
            {"field": "metadata.plan", "op": "eq", "value": "free"},
            {"field": "active", "op": "eq", "value": True},
        ]
    }
    audience = ws.create(
        "/audiences", {"name": "recent free", "source_id": source["id"], "rules": rules}
    )
    # users 1..19 were active in the last 20 days; even ids are active; every 5th is pro
    expected = sorted(str(i) for i in range(1, 20) if i % 2 == 0 and i % 5)
    assert ws.get(f"/audiences/{audience['id']}/count").json()["count"] == len(expected)
    page = ws.get(f"/audiences/{audience['id']}/members", params={"first": 3}).json()
    assert [m["key"] for m in page["data"]] == expected[:3]
    assert page["page_info"]["has_next_page"] is True
    rest = ws.get(
        f"/audiences/{audience['id']}/members",
        params={"first": 100, "after": page["page_info"]["end_cursor"]},
    ).json()
    assert [m["key"] for m in page["data"] + rest["data"]] == expected
    preview = ws.get(f"/audiences/{audience['id']}/preview").json()
    assert preview["count"] == len(expected) and len(preview["members"]) == 5
    assert preview["members"][0]["email"] == "user012@example.com"
    searched = ws.get(f"/audiences/{audience['id']}/members", params={"search": "USER014"})
    assert [m["key"] for m in searched.json()["data"]] == ["14"]


def test_query_source_and_select_only(ws: WorkspaceClient, app_database: str) -> None:
    source = sql_source(
        ws, app_database, query="SELECT id, email, score FROM users WHERE id < 5", key_column="id"
    )
    audience = ws.create(
        "/audiences",
        {
            "name": "q",
            "source_id": source["id"],
            "rules": {"all": [{"field": "score", "op": "gte", "value": 20}]},
        },
    )
    assert ws.get(f"/audiences/{audience['id']}/count").json()["count"] == 2  # 2 and 3 (4: null)
    for query in (
        "DELETE FROM users",
        "SELECT 1; DROP TABLE users",
        "WITH x AS (DELETE FROM users) SELECT 1",
    ):
        response = ws.post(
            "/sources",
            json={
                "name": "bad",
                "kind": "sql",
                "url": app_database,
                "config": {"query": query, "key_column": "id"},
            },
        )
        assert response.status_code == 422, response.text
        assert "SELECT" in response.json()["error"]["message"]
    assert len(ws.get("/sources").json()) == 1


def test_bad_sources_are_clear_errors(ws: WorkspaceClient, app_database: str) -> None:
    missing = ws.post(
        "/sources",
        json={
            "name": "typo",
            "kind": "sql",
            "url": app_database,
            "config": {"table": "userz", "key_column": "id"},
        },
    )
    assert missing.status_code == 422 and "'typo'" in missing.json()["error"]["message"]
    no_key = ws.post(
        "/sources",
        json={
            "name": "k",
            "kind": "sql",
            "url": app_database,
            "config": {"table": "users", "key_column": "uid"},
        },
    )
    assert no_key.status_code == 422 and "key_column" in no_key.json()["error"]["message"]
    down = ws.post(
        "/sources",
        json={
            "name": "prod db",
            "kind": "sql",
            "url": "postgresql://reader:s3cr3t-pw@127.0.0.1:1/app",
            "config": {"table": "users", "key_column": "id"},
        },
    )
    assert down.status_code == 502, down.text
    message = down.json()["error"]["message"]
    assert "'prod db'" in message and "s3cr3t-pw" not in down.text and "Traceback" not in down.text
    assert ws.get("/sources").json() == []
    unknown = ws.post("/audiences", json={"name": "a", "source_id": "0" * 36})
    assert unknown.status_code == 404


def test_unknown_fields_on_a_sql_source_are_a_422(ws: WorkspaceClient, app_database: str) -> None:
    source = sql_source(ws, app_database)
    response = ws.post(
        "/audiences",
        json={
            "name": "a",
            "source_id": source["id"],
            "rules": {
                "all": [
                    {"field": "email", "op": "eq", "value": "x"},
                    {"field": "plan", "op": "eq", "value": "pro"},
                ]
            },
        },
    )
    assert response.status_code == 422
    assert response.json()["error"]["details"]["path"] == "rules.all[1]"
    assert ws.get("/audiences").json() == []


def test_a_source_in_use_cannot_be_deleted(ws: WorkspaceClient, app_database: str) -> None:
    source = sql_source(ws, app_database)
    audience = ws.create("/audiences", {"name": "a", "source_id": source["id"]})
    assert ws.delete(f"/sources/{source['id']}").status_code == 409
    assert ws.delete(f"/audiences/{audience['id']}").status_code == 200
    assert ws.delete(f"/sources/{source['id']}").status_code == 200
    assert ws.get(f"/sources/{source['id']}").status_code == 404
