"""Per-contact sync status (seed 001's synced / pending / failed), retries and bulk re-sends.

The status comes from the sync state (what the last delivery did), except that a contact with
an event not yet pushed is ``pending``: the API has accepted a change the destination does not
hold yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from shared.db.event_models import ContactEvent
from shared.db.models import AudienceSync, SyncState
from shared.domain.members import ordered_key
from shared.events import add_retry

STATUSES = ("synced", "pending", "failed")


@dataclass(frozen=True)
class ContactSyncStatus:
    sync_id: str
    sync_name: str
    destination_id: str
    email: str
    status: str
    delivered: bool
    last_error: str
    updated_at: datetime | None
    last_run_id: str | None


def _pending_since(session: Session, workspace_id: str, emails: list[str]) -> dict[str, Any]:
    """The oldest unprocessed event per contact."""
    if not emails:
        return {}
    rows = session.execute(
        select(ContactEvent.email, func.min(ContactEvent.created_at))
        .where(
            ContactEvent.workspace_id == workspace_id,
            ContactEvent.email.in_(emails),
            ContactEvent.status == "pending",
        )
        .group_by(ContactEvent.email)
    )
    return {email: since for email, since in rows}


def _status(row: SyncState | None, pending_since: datetime | None, event_sync: bool) -> str:
    if row is None:
        return "pending" if pending_since and event_sync else "not_synced"
    if pending_since and event_sync and pending_since >= row.updated_at:
        return "pending"
    return row.status


def contact_statuses(session: Session, workspace_id: str, email: str) -> list[ContactSyncStatus]:
    """One contact across every sync of the workspace."""
    syncs = list(
        session.execute(
            select(AudienceSync)
            .where(AudienceSync.workspace_id == workspace_id)
            .order_by(AudienceSync.created_at)
        ).scalars()
    )
    states = {
        row.sync_id: row
        for row in session.execute(
            select(SyncState).where(
                SyncState.sync_id.in_([s.id for s in syncs]), SyncState.member_key == email
            )
        ).scalars()
    }
    since = _pending_since(session, workspace_id, [email]).get(email)
    out = []
    for sync in syncs:
        row = states.get(sync.id)
        event_sync = bool((sync.config or {}).get("event_triggered")) and sync.status == "active"
        out.append(
            ContactSyncStatus(
                sync_id=sync.id,
                sync_name=sync.name,
                destination_id=sync.destination_id,
                email=email,
                status=_status(row, since, event_sync),
                delivered=bool(row and row.delivered),
                last_error=row.last_error if row else "",
                updated_at=row.updated_at if row else None,
                last_run_id=row.last_run_id if row else None,
            )
        )
    return out


def sync_contacts(
    session: Session, sync: AudienceSync, status: str | None, after: str | None, limit: int
) -> list[ContactSyncStatus]:
    """The contacts a sync knows, by key, ``limit`` at a time after ``after`` (keyset)."""
    dialect = session.get_bind().dialect.name
    query = select(SyncState).where(SyncState.sync_id == sync.id)
    if status in ("synced", "failed"):
        query = query.where(SyncState.status == status)
    if status == "pending":
        waiting = select(ContactEvent.email).where(
            ContactEvent.workspace_id == sync.workspace_id, ContactEvent.status == "pending"
        )
        query = query.where((SyncState.status == "pending") | SyncState.member_key.in_(waiting))
    if after:
        query = query.where(ordered_key(SyncState.member_key, dialect) > after)
    rows = list(
        session.execute(
            query.order_by(ordered_key(SyncState.member_key, dialect)).limit(limit)
        ).scalars()
    )
    event_sync = bool((sync.config or {}).get("event_triggered")) and sync.status == "active"
    since = _pending_since(session, sync.workspace_id, [row.member_key for row in rows])
    out = [
        ContactSyncStatus(
            sync_id=sync.id,
            sync_name=sync.name,
            destination_id=sync.destination_id,
            email=row.member_key,
            status=_status(row, since.get(row.member_key), event_sync),
            delivered=row.delivered,
            last_error=row.last_error,
            updated_at=row.updated_at,
            last_run_id=row.last_run_id,
        )
        for row in rows
    ]
    if status == "pending":
        return [item for item in out if item.status == "pending"]
    return out


def retry_failed(session: Session, sync: AudienceSync) -> int:
    """Queue a forced re-push of every failed contact of the sync; returns how many."""
    emails = list(
        session.execute(
            select(SyncState.member_key).where(
                SyncState.sync_id == sync.id, SyncState.status == "failed"
            )
        ).scalars()
    )
    return add_retry(session, sync.workspace_id, emails, sync.id)


class BulkSyncRefused(ValueError):
    """A remove-only sync has no members to re-send."""


def mark_for_full_resync(session: Session, sync: AudienceSync) -> int:
    """Make the next run re-send every member: forget the delivered payload hashes (so every
    delivered member is "changed"), or for an add-only sync (which never updates) forget that
    they were delivered. Removals still work: mirror keeps ``delivered``. Returns the rows."""
    if sync.sync_mode == "remove":
        raise BulkSyncRefused("a remove sync only removes members; it has none to re-send")
    values: dict[str, Any] = (
        {"delivered": False} if sync.sync_mode == "add" else {"payload_hash": None}
    )
    result = session.execute(
        update(SyncState)
        .where(SyncState.sync_id == sync.id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
