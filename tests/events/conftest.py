"""Fixtures for contact events: a Resend destination shared by apps, an event-triggered sync."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import WorkspaceClient

APP = "tinykit"
SIGNED_UP = {"all": [{"field": f"metadata.{APP}_subscriptionType", "op": "is_not_null"}]}


def event_sync(
    ws: WorkspaceClient,
    resend_url: str,
    app: str = APP,
    sync_mode: str = "mirror",
    rules: dict[str, Any] | None = None,
    **config: Any,
) -> dict[str, Any]:
    """A destination with ``config.app`` and a sync of everyone who signed up for that app,
    with seed 001's mapping (as ``GET /events/field-mapping`` gives it) and events on."""
    destination = ws.create(
        "/destinations",
        {
            "name": f"resend {app}",
            "type": "resend",
            "config": {"base_url": resend_url, "rate_limit": 200, "app": app},
            "credentials": {"api_key": "re_test_key"},
        },
    )
    audience = ws.create(
        "/audiences",
        {
            "name": f"{app} signups",
            "rules": rules
            or {"all": [{"field": f"metadata.{app}_subscriptionType", "op": "is_not_null"}]},
        },
    )
    mapping = ws.get("/events/field-mapping", params={"app": app}).json()
    return ws.create(
        "/audience-syncs",
        {
            "name": f"{app} to resend",
            "audience_id": audience["id"],
            "destination_id": destination["id"],
            "field_mapping": mapping,
            "sync_mode": sync_mode,
            "config": {"event_triggered": True, **config},
        },
    )


@pytest.fixture
def app_id() -> str:
    return APP
