"""App-safe unsubscribe: the link in an email (``GET /unsubscribe``) and issuing links.

The page is plain HTML for a person's browser; every refusal (forged, expired, unknown) is a
4xx page that changes nothing.
"""

from __future__ import annotations

import html
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.deps import DbSession, WorkspaceId
from api.errors import ApiError
from api.routes.events import check_app, check_email
from shared.events import EventError, known_apps, record_event
from shared.unsubscribe import ExpiredLink, InvalidLink, issue_link, verify_token
from worker.event_tasks import publish_contact_events

router = APIRouter(tags=["unsubscribe"])


class LinkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(max_length=320)
    app: str
    ttl_days: int = Field(default=365, ge=1, le=3650)

    _email = field_validator("email")(check_email)
    _app = field_validator("app")(check_app)


class LinkOut(BaseModel):
    url: str
    token: str
    expires_at: datetime


@router.post(
    "/api/v1/workspaces/{id}/unsubscribe-links",
    response_model=LinkOut,
    status_code=201,
    summary="Issue an app-safe unsubscribe link for one email and one app",
)
def create_link(
    body: LinkRequest, request: Request, workspace_id: WorkspaceId, session: DbSession
) -> LinkOut:
    if body.app not in known_apps(session, workspace_id):
        raise ApiError(
            422,
            f"unknown app identifier {body.app!r}: no destination of this workspace has it",
            code="unknown_app",
        )
    link = issue_link(
        str(request.base_url), workspace_id, body.email, body.app, body.ttl_days * 86400
    )
    return LinkOut(url=link.url, token=link.token, expires_at=link.expires_at)


def _page(status: int, title: str, message: str) -> HTMLResponse:
    body = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)}</title></head>"
        "<body style='font-family: sans-serif; max-width: 32rem; margin: 4rem auto'>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(message)}</p></body></html>"
    )
    return HTMLResponse(body, status_code=status)


@router.get(
    "/unsubscribe",
    response_class=HTMLResponse,
    summary="Unsubscribe one email from one app (the link in an email)",
)
def unsubscribe_page(
    session: DbSession,
    email: Annotated[str, Query(max_length=320)] = "",
    app: Annotated[str, Query(max_length=20)] = "",
    token: Annotated[str, Query(max_length=200)] = "",
) -> HTMLResponse:
    try:
        email = check_email(email)
        check_app(app or None)
    except ValueError:
        return _page(400, "Invalid link", "This unsubscribe link is incomplete or damaged.")
    if not app or not token:
        return _page(400, "Invalid link", "This unsubscribe link is incomplete or damaged.")
    try:
        workspace_id = verify_token(token, email, app)
    except ExpiredLink:
        return _page(410, "Link expired", "This unsubscribe link has expired.")
    except InvalidLink:
        return _page(403, "Invalid link", "This unsubscribe link is not valid for this address.")
    try:
        record_event(session, workspace_id, "unsubscribe", email, {"via": "link"}, app=app)
    except EventError as exc:
        if exc.code == "unknown_app":
            return _page(404, "Unknown list", "This list no longer exists.")
        return _page(404, "Not subscribed", "This address is not on the list.")
    session.commit()
    publish_contact_events(workspace_id)
    return _page(
        200,
        "You are unsubscribed",
        f"{email} will no longer receive emails from {app}. Other subscriptions are unchanged.",
    )
