"""Bad input answers a clear 4xx and changes nothing; the unsubscribe link is app-safe."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from sqlalchemy import func, select

from shared.db.event_models import ContactEvent
from shared.db.models import Contact
from shared.db.session import session_scope
from shared.unsubscribe import issue_token
from tests.conftest import WorkspaceClient, new_workspace
from tests.events.conftest import APP, event_sync

ADA = "ada@example.com"


def contact_properties(workspace_id: str, email: str = ADA) -> dict[str, Any] | None:
    with session_scope() as session:
        contact = session.execute(
            select(Contact).where(Contact.workspace_id == workspace_id, Contact.email == email)
        ).scalar_one_or_none()
        return dict(contact.properties) if contact else None


def event_count(workspace_id: str) -> int:
    with session_scope() as session:
        return int(
            session.execute(
                select(func.count()).where(ContactEvent.workspace_id == workspace_id)
            ).scalar_one()
        )


@pytest.fixture
def two_apps(ws: WorkspaceClient) -> WorkspaceClient:
    """Ada signed up for two apps that share one Resend account."""
    event_sync(ws, "http://127.0.0.1:9", app=APP)
    event_sync(ws, "http://127.0.0.1:9", app="otherapp")
    for app in (APP, "otherapp"):
        response = ws.post("/events/signup", json={"email": ADA, "app": app})
        assert response.status_code == 202, response.text
    return ws


@pytest.mark.parametrize("email", ["not-an-email", "a@b", "two@@example.com", "", "x y@ex.com"])
def test_a_malformed_email_is_refused(ws: WorkspaceClient, email: str) -> None:
    response = ws.post("/events/signup", json={"email": email})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"
    assert "email" in response.json()["error"]["message"]
    assert event_count(ws.id) == 0


def test_an_unknown_app_is_refused(two_apps: WorkspaceClient) -> None:
    before, events = contact_properties(two_apps.id), event_count(two_apps.id)
    response = two_apps.post("/events/unsubscribe", json={"email": ADA, "app": "nosuchapp"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "unknown_app"
    assert contact_properties(two_apps.id) == before and event_count(two_apps.id) == events
    response = two_apps.post("/unsubscribe-links", json={"email": ADA, "app": "nosuchapp"})
    assert response.status_code == 422


def test_events_for_a_contact_that_does_not_exist_are_refused(ws: WorkspaceClient) -> None:
    for kind in ("update", "unsubscribe", "resubscribe", "delete"):
        response = ws.post(f"/events/{kind}", json={"email": "nobody@example.com"})
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "contact_not_found"
    assert event_count(ws.id) == 0
    assert contact_properties(ws.id, "nobody@example.com") is None


def test_the_unsubscribe_link_changes_only_that_apps_status(
    two_apps: WorkspaceClient, api: Any
) -> None:
    response = two_apps.post("/unsubscribe-links", json={"email": ADA, "app": APP})
    assert response.status_code == 201, response.text
    url = urlparse(response.json()["url"])
    assert url.path == "/unsubscribe"
    assert parse_qs(url.query)["app"] == [APP]

    page = api.get(f"{url.path}?{url.query}")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert "unsubscribed" in page.text
    props = contact_properties(two_apps.id)
    assert props is not None
    assert props[f"{APP}_subscriptionStatus"] == "unsubscribed"
    assert props["otherapp_subscriptionStatus"] == "active"


def test_forged_expired_or_misused_tokens_change_nothing(
    two_apps: WorkspaceClient, api: Any
) -> None:
    before, events = contact_properties(two_apps.id), event_count(two_apps.id)
    good = two_apps.post("/unsubscribe-links", json={"email": ADA, "app": APP}).json()["token"]
    workspace, expires, signature = good.split(".")
    forged = f"{workspace}.{expires}.{'A' * len(signature)}"
    longer = f"{workspace}.{int(expires) + 1000}.{signature}"
    expired, _ = issue_token(two_apps.id, ADA, APP, ttl_seconds=-10)
    other_ws = new_workspace(api, "other")
    cases = [
        ({"email": ADA, "app": APP, "token": forged}, 403),
        ({"email": ADA, "app": APP, "token": longer}, 403),
        ({"email": ADA, "app": "otherapp", "token": good}, 403),  # another app's status
        ({"email": "eve@example.com", "app": APP, "token": good}, 403),  # another address
        ({"email": ADA, "app": APP, "token": good.replace(workspace, other_ws.id)}, 403),
        ({"email": ADA, "app": APP, "token": expired}, 410),
        ({"email": ADA, "app": APP, "token": "garbage"}, 403),
        ({"email": ADA, "app": APP}, 400),
        ({"email": "bad", "app": APP, "token": good}, 400),
    ]
    for params, status in cases:
        response = api.get("/unsubscribe", params=params)
        assert response.status_code == status, (params, response.text)
        assert "text/html" in response.headers["content-type"]
    assert contact_properties(two_apps.id) == before
    assert event_count(two_apps.id) == events


@pytest.mark.parametrize(
    "body",
    [
        {"email": ADA, "first_name": "A\u0000da"},
        {"email": ADA, "properties": {"plan": "pro\u0000"}},
        {"email": ADA, "properties": {"pl\u0000an": "pro"}},
    ],
)
def test_nul_characters_are_bad_input_not_a_fault(db: str, ws: WorkspaceClient, body: Any) -> None:
    """PostgreSQL's text cannot hold NUL: a 422 there, with nothing changed (SQLite stores it)."""
    response = ws.post("/events/signup", json=body)
    if db.startswith("sqlite"):
        assert response.status_code == 202, response.text
        return
    assert response.status_code == 422, response.text
    assert "NUL" in response.json()["error"]["message"]
    assert event_count(ws.id) == 0 and contact_properties(ws.id) is None
