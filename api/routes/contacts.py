"""Per-contact sync status, audit trail, retries, and bulk re-sends (seed 001)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from api.deps import DbSession, WorkspaceId
from api.errors import ApiError
from api.routes.events import check_email
from api.routes.lookups import get_owned
from api.schemas import SyncRunOut
from shared.contact_status import (
    BulkSyncRefused,
    contact_statuses,
    mark_for_full_resync,
    retry_failed,
    sync_contacts,
)
from shared.db.event_models import ContactAudit
from shared.db.models import AudienceSync, Contact, SyncRun
from shared.events import add_retry, was_deleted
from shared.runs import SyncAlreadyRunning, SyncPaused, create_run, mark_published
from worker.event_tasks import publish_contact_events
from worker.publish import publish_run

router = APIRouter(prefix="/api/v1/workspaces/{id}", tags=["contact status"])

EmailPath = Annotated[str, Path(description="the contact's email", max_length=320)]


class ContactSyncStatusOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    sync_id: str
    sync_name: str
    destination_id: str
    email: str
    status: str
    delivered: bool
    last_error: str
    updated_at: datetime | None
    last_run_id: str | None


class ContactStatusPage(BaseModel):
    items: list[ContactSyncStatusOut]
    next_after: str | None


class AuditOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    operation: str
    target: str
    sync_id: str | None
    destination_id: str | None
    event_id: int | None
    run_id: str | None
    result: str
    status_code: int | None
    message: str
    created_at: datetime


class AuditPage(BaseModel):
    items: list[AuditOut]
    next_after: int | None


class RetryAccepted(BaseModel):
    queued: int


class BulkSyncAccepted(BaseModel):
    run: SyncRunOut
    reset_contacts: int


def _email(value: str) -> str:
    try:
        return check_email(value)
    except ValueError as exc:
        raise ApiError(422, f"email: {exc}") from None


@router.get(
    "/contacts/{email}/sync-status",
    response_model=list[ContactSyncStatusOut],
    summary="One contact's status in every sync: synced / pending / failed",
)
def contact_sync_status(
    email: EmailPath, workspace_id: WorkspaceId, session: DbSession
) -> list[ContactSyncStatusOut]:
    email = _email(email)
    statuses = contact_statuses(session, workspace_id, email)
    known = any(item.status != "not_synced" for item in statuses)
    if not known and _contact(session, workspace_id, email) is None:
        raise ApiError(404, f"contact {email} not found", code="contact_not_found")
    return [ContactSyncStatusOut.model_validate(item) for item in statuses]


def _contact(session: DbSession, workspace_id: str, email: str) -> Contact | None:
    return session.execute(
        select(Contact).where(Contact.workspace_id == workspace_id, Contact.email == email)
    ).scalar_one_or_none()


@router.get(
    "/contacts/{email}/audit",
    response_model=AuditPage,
    summary="Every sync operation on a contact: what, where, when, result",
)
def contact_audit(
    email: EmailPath,
    workspace_id: WorkspaceId,
    session: DbSession,
    after: Annotated[int | None, Query(description="the next_after of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> AuditPage:
    email = _email(email)
    query = select(ContactAudit).where(
        ContactAudit.workspace_id == workspace_id, ContactAudit.email == email
    )
    if after is not None:
        query = query.where(ContactAudit.id > after)
    rows = list(session.execute(query.order_by(ContactAudit.id).limit(limit)).scalars())
    return AuditPage(
        items=[AuditOut.model_validate(row) for row in rows],
        next_after=rows[-1].id if len(rows) == limit else None,
    )


@router.post(
    "/contacts/{email}/retry",
    status_code=202,
    response_model=RetryAccepted,
    summary="Push one contact again (to one sync, or every event-triggered sync)",
)
def retry_contact(
    email: EmailPath,
    workspace_id: WorkspaceId,
    session: DbSession,
    sync_id: Annotated[str | None, Query()] = None,
) -> RetryAccepted:
    email = _email(email)
    if sync_id is not None:
        get_owned(session, AudienceSync, sync_id, workspace_id, "audience sync")
    if _contact(session, workspace_id, email) is None:
        if was_deleted(session, workspace_id, email):
            raise ApiError(410, f"contact {email} was deleted", code="contact_deleted")
        raise ApiError(404, f"contact {email} not found", code="contact_not_found")
    queued = add_retry(session, workspace_id, [email], sync_id)
    session.commit()
    publish_contact_events(workspace_id)
    return RetryAccepted(queued=queued)


@router.get(
    "/audience-syncs/{sync_id}/contacts",
    response_model=ContactStatusPage,
    summary="The contacts a sync knows, with their status (keyset-paginated by email)",
)
def list_sync_contacts(
    sync_id: str,
    workspace_id: WorkspaceId,
    session: DbSession,
    status: Annotated[Literal["synced", "pending", "failed"] | None, Query()] = None,
    after: Annotated[str | None, Query(description="the next_after of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> ContactStatusPage:
    sync = get_owned(session, AudienceSync, sync_id, workspace_id, "audience sync")
    items = sync_contacts(session, sync, status, after, limit)
    return ContactStatusPage(
        items=[ContactSyncStatusOut.model_validate(item) for item in items],
        next_after=items[-1].email if len(items) == limit else None,
    )


@router.post(
    "/audience-syncs/{sync_id}/contacts/retry-failed",
    status_code=202,
    response_model=RetryAccepted,
    summary="Push every failed contact of the sync again",
)
def retry_failed_contacts(
    sync_id: str, workspace_id: WorkspaceId, session: DbSession
) -> RetryAccepted:
    sync = get_owned(session, AudienceSync, sync_id, workspace_id, "audience sync")
    if sync.status == "paused":
        raise ApiError(409, f"sync {sync.id} is paused", code="sync_paused")
    queued = retry_failed(session, sync)
    session.commit()
    if queued:
        publish_contact_events(workspace_id)
    return RetryAccepted(queued=queued)


@router.post(
    "/audience-syncs/{sync_id}/bulk-sync",
    status_code=202,
    response_model=BulkSyncAccepted,
    summary="Re-send every member (seed 001's Bulk Sync); progress is the run's",
)
def bulk_sync(sync_id: str, workspace_id: WorkspaceId, session: DbSession) -> BulkSyncAccepted:
    sync = get_owned(session, AudienceSync, sync_id, workspace_id, "audience sync")
    try:
        run = create_run(session, sync, trigger="api")
        reset = mark_for_full_resync(session, sync)
    except SyncAlreadyRunning as exc:
        raise ApiError(409, str(exc), code="run_in_progress") from None
    except SyncPaused as exc:
        raise ApiError(409, str(exc), code="sync_paused") from None
    except BulkSyncRefused as exc:
        raise ApiError(422, str(exc), code="bulk_sync_refused") from None
    session.commit()
    if publish_run(run.id):
        mark_published(session, run.id)
        session.commit()
    refreshed = session.get_one(SyncRun, run.id)
    return BulkSyncAccepted(run=SyncRunOut.model_validate(refreshed), reset_contacts=reset)
