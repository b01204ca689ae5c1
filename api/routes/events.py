"""Contact events (seed 001): signup, update, unsubscribe, re-subscribe, delete.

Each answers 202 once the contact change and its event row are committed together; only then
is the worker told. A lost message costs a few seconds (the sweeper re-publishes), never the
event.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select

from api.deps import DbSession, WorkspaceId
from api.errors import ApiError
from shared.db.event_models import ContactEvent
from shared.events import EventError, record_event, seed_field_mapping
from worker.event_tasks import publish_contact_events

router = APIRouter(prefix="/api/v1/workspaces/{id}/events", tags=["contact events"])

EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s.]{2,}$")
APP = re.compile(r"^[A-Za-z0-9]{1,20}$")


def check_email(value: str) -> str:
    value = value.strip().lower()
    if len(value) > 320 or not EMAIL.match(value):
        raise ValueError("not a valid email address")
    return value


def check_app(value: str | None) -> str | None:
    if value is not None and not APP.match(value):
        raise ValueError("an app identifier is 1-20 letters or digits")
    return value


class EventBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(max_length=320)
    app: str | None = Field(
        default=None,
        description="the app identifier (a destination's config.app); seed 001's properties "
        "are stored as {app}_{name} on the contact",
    )

    _email = field_validator("email")(check_email)
    _app = field_validator("app")(check_app)


class SignupBody(EventBody):
    first_name: str | None = Field(default=None, max_length=200)
    last_name: str | None = Field(default=None, max_length=200)
    user_id: str | None = Field(default=None, max_length=200)
    subscription_type: Literal["newsletter", "waitlist"] = "newsletter"
    properties: dict[str, Any] = Field(default_factory=dict)


class UpdateBody(EventBody):
    first_name: str | None = Field(default=None, max_length=200)
    last_name: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, max_length=40)
    user_id: str | None = Field(default=None, max_length=200)
    account_status: Literal["free", "trial", "paid"] | None = None
    user_role: str | None = Field(default=None, max_length=40)
    billing_plan: str | None = Field(default=None, max_length=100)
    billing_interval: Literal["monthly", "yearly"] | None = None
    last_activity_at: datetime | None = None
    properties: dict[str, Any] = Field(default_factory=dict)

    @field_validator("last_activity_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("give a time zone (e.g. 2025-01-15T10:30:00Z)")
        return value


class EventAccepted(BaseModel):
    event_id: int
    kind: str
    email: str
    status: str = "pending"


class EventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    email: str
    app: str | None
    status: str = Field(description="pending, done, or failed after repeated errors")
    attempts: int
    error: str = Field(description="the last error while processing it, if any")
    created_at: datetime
    processed_at: datetime | None


def _accept(
    session: DbSession, workspace_id: str, kind: str, body: EventBody, data: dict[str, Any]
) -> EventAccepted:
    try:
        event = record_event(session, workspace_id, kind, body.email, data, app=body.app)
    except EventError as exc:
        raise ApiError(exc.status, exc.message, code=exc.code) from None
    accepted = EventAccepted(event_id=event.id, kind=kind, email=event.email)
    session.commit()  # the promise is in the database before the 202 and before the doorbell
    publish_contact_events(workspace_id)
    return accepted


@router.post("/signup", status_code=202, response_model=EventAccepted, summary="A user signed up")
def signup(body: SignupBody, workspace_id: WorkspaceId, session: DbSession) -> EventAccepted:
    data = body.model_dump(exclude={"email", "app"})
    return _accept(session, workspace_id, "signup", body, data)


@router.post("/update", status_code=202, response_model=EventAccepted, summary="A user changed")
def update(body: UpdateBody, workspace_id: WorkspaceId, session: DbSession) -> EventAccepted:
    data = body.model_dump(exclude={"email", "app"}, exclude_unset=True)
    return _accept(session, workspace_id, "update", body, data)


@router.post("/unsubscribe", status_code=202, response_model=EventAccepted, summary="Unsubscribe")
def unsubscribe(body: EventBody, workspace_id: WorkspaceId, session: DbSession) -> EventAccepted:
    return _accept(session, workspace_id, "unsubscribe", body, {})


@router.post("/resubscribe", status_code=202, response_model=EventAccepted, summary="Re-subscribe")
def resubscribe(body: EventBody, workspace_id: WorkspaceId, session: DbSession) -> EventAccepted:
    return _accept(session, workspace_id, "resubscribe", body, {})


@router.post(
    "/delete",
    status_code=202,
    response_model=EventAccepted,
    summary="Delete a contact here and from every destination it was synced to (GDPR)",
)
def delete(body: EventBody, workspace_id: WorkspaceId, session: DbSession) -> EventAccepted:
    return _accept(session, workspace_id, "delete", body, {})


@router.get("/field-mapping", summary="The field mapping that syncs seed 001's properties")
def field_mapping(
    workspace_id: WorkspaceId,
    app: Annotated[str | None, Query(max_length=20)] = None,
) -> list[dict[str, Any]]:
    try:
        check_app(app)
    except ValueError as exc:
        raise ApiError(422, str(exc)) from None
    return seed_field_mapping(app)


@router.get("/{event_id}", response_model=EventOut, summary="One event and whether it was pushed")
def get_event(event_id: int, workspace_id: WorkspaceId, session: DbSession) -> ContactEvent:
    event = session.execute(
        select(ContactEvent).where(
            ContactEvent.id == event_id, ContactEvent.workspace_id == workspace_id
        )
    ).scalar_one_or_none()
    if event is None:
        raise ApiError(404, "event not found")
    return event
