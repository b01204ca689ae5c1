"""CSV import: a report per row, the target untouched by a file refused whole, progress while it
runs."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import shared.csv_import
from shared.contacts import upsert_contacts
from shared.db.session import session_scope
from tests.conftest import WorkspaceClient, wait_until


def upload(ws: WorkspaceClient, path: str, content: bytes) -> Any:
    return ws.post(path, files={"file": ("people.csv", content, "text/csv")})


def members(ws: WorkspaceClient, audience_id: str) -> list[dict[str, Any]]:
    return ws.get(f"/audiences/{audience_id}/members", params={"first": 100}).json()["data"]


def test_static_list_import_reports_each_rejected_row(
    ws: WorkspaceClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shared.csv_import, "CHUNK_ROWS", 3)  # duplicates across chunks too
    audience = ws.create("/audiences", {"name": "list", "kind": "static"})
    content = (
        b"Email,first_name,plan\n"
        b"ann@example.com,Ann,pro\n"
        b"not-an-email,Bad,free\n"
        b"bo@example.com,Bo\n"
        b"cy@example.com,Cy,free\n"
        b"\n"
        b"ANN@example.com,Ann again,pro\n"
        b"dee@example.com,Dee,\n"
        b"ann@example.com,Ann thrice,pro\n"
        b'"eve@example.com","Eve, the second",free\n'
    )
    response = upload(ws, f"/audiences/{audience['id']}/import", content)
    assert response.status_code == 201, response.text
    report = response.json()
    assert report["status"] == "succeeded"
    assert (report["rows_read"], report["accepted"], report["rejected"]) == (8, 4, 4)
    assert report["written"] == 4
    reasons = {item["row"]: item["reason"] for item in report["rejections"]}
    assert "not a valid email" in reasons[3]
    assert "expected 3 fields, got 2" in reasons[4]
    assert "duplicate email 'ann@example.com' (first on line 2)" in reasons[7]
    assert "duplicate" in reasons[9]
    listed = members(ws, audience["id"])
    assert [m["key"] for m in listed] == [
        "ann@example.com",
        "cy@example.com",
        "dee@example.com",
        "eve@example.com",
    ]
    assert listed[0]["metadata"] == {"plan": "pro"} and listed[3]["first_name"] == "Eve, the second"
    assert "metadata" not in listed[2], "an empty cell sets no metadata"
    again = ws.get(f"/audiences/imports/{report['id']}", params={"rejections": 2}).json()
    assert again["rejected"] == 4 and len(again["rejections"]) == 2
    got = ws.get(f"/audiences/{audience['id']}", params={"include": "imports"}).json()
    assert got["imports"][0]["id"] == report["id"]


@pytest.mark.parametrize(
    ("content", "status", "fragment"),
    [
        (b"name,phone\nAnn,1\n", 422, "'email' column"),
        (b"email,name,Name\na@b.co,x,y\n", 422, "more than once"),
        (b"email,,x\na@b.co,1,2\n", 422, "empty column name"),
        (b"", 422, "empty"),
        (
            b"email,name\na@example.com,Ann\n"
            + b"b@example.com,"
            + b"x" * (10 * 1024 * 1024)
            + b"\nc@example.com,Cy\n",
            413,
            "longer than",
        ),
        (b"email,name\na@example.com,Ann\nb@example.com,\xff\xfe\n", 400, "not UTF-8"),
        (b'email,name\na@example.com,Ann\nb@example.com,"unterminated\n', 422, "not valid CSV"),
    ],
)
def test_a_file_refused_whole_writes_nothing(
    ws: WorkspaceClient, content: bytes, status: int, fragment: str
) -> None:
    audience = ws.create("/audiences", {"name": "list", "kind": "static"})
    ws.post(f"/audiences/{audience['id']}/members", json={"members": [{"email": "z@example.com"}]})
    response = upload(ws, f"/audiences/{audience['id']}/import", content)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert fragment in error["message"]
    assert [m["key"] for m in members(ws, audience["id"])] == ["z@example.com"]
    record = ws.get(f"/audiences/imports/{error['details']['import_id']}").json()
    assert record["status"] == "failed" and fragment in record["error"]
    assert ws.get(f"/audiences/{audience['id']}/status").json()["status"] == "ready"


def test_contact_store_import_updates_only_the_columns_it_has(ws: WorkspaceClient) -> None:
    with session_scope() as session:
        upsert_contacts(
            session,
            ws.id,
            [
                {
                    "email": "ann@example.com",
                    "first_name": "Ann",
                    "last_name": "Old",
                    "properties": {"plan": "free", "seats": "3"},
                }
            ],
        )
    content = b"email,last_name,metadata.plan\nANN@example.com,New,pro\nbo@example.com,Bo,free\n"
    response = ws.post("/audiences/imports", content=content, headers={"Content-Type": "text/csv"})
    assert response.status_code == 201, response.text
    assert response.json()["target"] == "contacts" and response.json()["written"] == 2
    audience = ws.create("/audiences", {"name": "everyone"})
    listed = {m["key"]: m for m in members(ws, audience["id"])}
    assert listed["ann@example.com"]["first_name"] == "Ann"
    assert listed["ann@example.com"]["last_name"] == "New"
    assert listed["ann@example.com"]["metadata"] == {"plan": "pro", "seats": "3"}
    assert listed["bo@example.com"]["last_name"] == "Bo"


def test_progress_is_readable_while_an_import_runs(ws: WorkspaceClient) -> None:
    audience = ws.create("/audiences", {"name": "big", "kind": "static"})
    rows = 40_000
    content = "email,first_name\n" + "".join(f"u{i}@example.com,U{i}\n" for i in range(rows))
    result: dict[str, Any] = {}
    worker = threading.Thread(
        target=lambda: result.update(
            response=upload(ws, f"/audiences/{audience['id']}/import", content.encode())
        )
    )
    worker.start()
    try:

        def running() -> dict[str, Any] | None:
            imports = ws.get(f"/audiences/{audience['id']}/imports").json()
            if imports and imports[0]["status"] == "running" and imports[0]["rows_read"] > 0:
                return dict(imports[0])
            return None

        seen = wait_until(running, timeout=60, interval=0.01)
        assert 0 < seen["rows_read"] < rows and seen["written"] == 0
        assert ws.get(f"/audiences/{audience['id']}/status").json()["status"] == "importing"
        assert (
            ws.post(
                f"/audiences/{audience['id']}/import", files={"file": ("x.csv", b"email\na@b.co\n")}
            ).status_code
            == 409
        )
    finally:
        worker.join(timeout=120)
    assert result["response"].status_code == 201
    assert result["response"].json()["accepted"] == rows
    assert ws.get(f"/audiences/{audience['id']}/count").json()["count"] == rows
    assert ws.get(f"/audiences/{audience['id']}/status").json()["status"] == "ready"


def test_an_external_source_takes_no_import(ws: WorkspaceClient, app_database: str) -> None:
    source = ws.create(
        "/sources",
        {
            "name": "app",
            "kind": "sql",
            "url": app_database,
            "config": {"table": "users", "key_column": "id"},
        },
    )
    audience = ws.create("/audiences", {"name": "a", "source_id": source["id"]})
    response = upload(ws, f"/audiences/{audience['id']}/import", b"email\na@b.co\n")
    assert response.status_code == 400 and "read-only" in response.json()["error"]["message"]
