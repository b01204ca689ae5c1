"""Contact events: what an app reports about its users, and pushing each change to the syncs.

Recording (API side): ``record_event`` applies the change to the contact store and writes the
event row (the outbox) in the caller's transaction; the caller commits, answers 202, then
publishes. Nothing is promised that is not in the database.

Processing (worker side): ``process_events`` takes a lease on a few contacts with pending
events (one worker per contact at a time, so a contact's events apply in order), re-evaluates
each contact's *current* row against every active, event-triggered sync whose audience reads the
contact store, and pushes the single-contact diff through ``shared.key_delivery``. Because the
push reads the current row, a burst of events for one contact is coalesced into one push.

Full runs and event pushes of the same sync: a push never happens while a run of that sync is
pending or running (the contact is deferred with a ``recheck`` event until the run ended, and
the run itself reads the new row anyway). A run created while a push was in flight may have
delivered an older version after ours; then a forced ``recheck`` re-sends the contact once the
run is over. State is thus never left claiming what the destination does not hold.

The seed 001 properties live in ``Contact.properties`` under ``{app}_{name}`` when the event
names an app (the ``config.app`` of a destination in the workspace), else under ``{name}``;
``seed_field_mapping(app)`` gives the field mapping that sends them to that app's destination.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import ColumnElement, delete, exists, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from shared.config import Settings
from shared.db.event_models import ContactAudit, ContactEvent, ContactEventLease
from shared.db.models import (
    ACTIVE_RUN_STATUSES,
    Audience,
    AudienceSync,
    Contact,
    Destination,
    Source,
    SyncRun,
    SyncState,
)
from shared.db.types import utcnow
from shared.delivery.connector import Connector
from shared.key_delivery import deliver_changes, plan_keys
from shared.logs import log_event

logger = logging.getLogger(__name__)

EVENT_KINDS = ("signup", "update", "unsubscribe", "resubscribe", "delete")
SYSTEM_KINDS = ("retry", "recheck")
SEED_PROPERTIES = (
    "subscriptionType",
    "subscriptionStatus",
    "subscribedAt",
    "userId",
    "accountStatus",
    "userRole",
    "billingPlan",
    "billingInterval",
    "lastActivityAt",
)
# Event body field -> seed 001 property.
UPDATE_FIELDS = {
    "account_status": "accountStatus",
    "user_role": "userRole",
    "billing_plan": "billingPlan",
    "billing_interval": "billingInterval",
    "last_activity_at": "lastActivityAt",
}


class EventSettings(BaseSettings):
    """Knobs of event processing (``AUDIENCESYNC_EVENT_*``)."""

    model_config = SettingsConfigDict(env_prefix="AUDIENCESYNC_EVENT_", extra="ignore")

    batch_contacts: int = 200
    lease_seconds: float = 30.0
    republish_after_seconds: float = 3.0
    sweep_interval_seconds: float = 2.0
    recheck_seconds: float = 1.0
    # Tasks per workspace queued and not started before the API stops publishing more (about
    # one per worker process: more would only claim nothing).
    queued_tasks: int = 2
    # A contact whose processing raises is tried again after retry_initial_seconds, doubling,
    # and its events fail (status ``failed``, with the error) after max_attempts.
    max_attempts: int = 5
    retry_initial_seconds: float = 2.0


class EventError(ValueError):
    """An event that cannot apply; ``status`` is the HTTP status the API answers."""

    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def normalise_email(email: str) -> str:
    return email.strip().lower()


def known_apps(session: Session, workspace_id: str) -> set[str]:
    """App identifiers of the workspace: the ``config.app`` of its destinations."""
    configs = session.execute(
        select(Destination.config).where(Destination.workspace_id == workspace_id)
    ).scalars()
    return {str(config["app"]) for config in configs if config and config.get("app")}


def property_name(app: str | None, name: str) -> str:
    return f"{app}_{name}" if app else name


def seed_field_mapping(app: str | None) -> list[dict[str, Any]]:
    """The field mapping that sends seed 001's properties (and the names) to a destination
    whose ``config.app`` is ``app``: the store's ``{app}_{name}`` becomes the destination field
    ``{name}``, which the Resend connector writes as ``{app}_{name}``."""
    mapping: list[dict[str, Any]] = [
        {"source_column": "email", "destination_field": "email"},
        {"source_column": "first_name", "destination_field": "first_name"},
        {"source_column": "last_name", "destination_field": "last_name"},
    ]
    mapping += [
        {"source_column": f"metadata.{property_name(app, name)}", "destination_field": name}
        for name in SEED_PROPERTIES
    ]
    return mapping


def _contact(session: Session, workspace_id: str, email: str) -> Contact | None:
    return session.execute(
        select(Contact).where(Contact.workspace_id == workspace_id, Contact.email == email)
    ).scalar_one_or_none()


def was_deleted(session: Session, workspace_id: str, email: str) -> bool:
    return bool(
        session.execute(
            select(
                exists().where(
                    ContactEvent.workspace_id == workspace_id,
                    ContactEvent.email == email,
                    ContactEvent.kind == "delete",
                )
            )
        ).scalar_one()
    )


def _existing(session: Session, workspace_id: str, email: str) -> Contact:
    contact = _contact(session, workspace_id, email)
    if contact is not None:
        return contact
    if was_deleted(session, workspace_id, email):
        raise EventError(410, f"contact {email} was deleted", "contact_deleted")
    raise EventError(404, f"contact {email} not found", "contact_not_found")


def _timestamp(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def record_event(
    session: Session,
    workspace_id: str,
    kind: str,
    email: str,
    data: dict[str, Any],
    app: str | None = None,
) -> ContactEvent:
    """Apply ``kind`` to the contact and add its event row, in the caller's transaction.

    ``data`` holds the event's fields (already validated by the API). Raises ``EventError``
    (nothing changed) for an unknown app, or a contact that does not exist or was deleted.
    """
    email = normalise_email(email)
    if app is not None and app not in known_apps(session, workspace_id):
        raise EventError(
            422,
            f"unknown app identifier {app!r}: no destination of this workspace has config.app "
            f"= {app!r}",
            "unknown_app",
        )
    now = utcnow()

    def prop(name: str) -> str:
        return property_name(app, name)

    if kind == "signup":
        contact = _contact(session, workspace_id, email)
        if contact is None:
            contact = Contact(workspace_id=workspace_id, email=email, properties={})
            session.add(contact)
        properties = dict(contact.properties or {})
        properties.update(data.get("properties") or {})
        if properties.get(prop("subscriptionStatus")) != "active":
            properties[prop("subscribedAt")] = _timestamp(now)
        properties[prop("subscriptionStatus")] = "active"
        properties[prop("subscriptionType")] = data.get("subscription_type") or "newsletter"
        if data.get("user_id"):
            properties[prop("userId")] = data["user_id"]
            contact.user_id = data["user_id"]
        for name in ("first_name", "last_name"):
            if data.get(name) is not None:
                setattr(contact, name, data[name])
        contact.properties = properties
    elif kind == "update":
        contact = _existing(session, workspace_id, email)
        properties = dict(contact.properties or {})
        properties.update(data.get("properties") or {})
        for name in ("first_name", "last_name", "phone"):
            if name in data:
                setattr(contact, name, data[name])
        if "user_id" in data:
            contact.user_id = data["user_id"]
            properties[prop("userId")] = data["user_id"]
        for field_name, seed_name in UPDATE_FIELDS.items():
            if field_name in data:
                value = data[field_name]
                if isinstance(value, datetime):
                    if field_name == "last_activity_at":
                        contact.last_active_at = value
                    value = _timestamp(value)
                properties[prop(seed_name)] = value
        contact.properties = properties
    elif kind in ("unsubscribe", "resubscribe"):
        contact = _existing(session, workspace_id, email)
        properties = dict(contact.properties or {})
        if kind == "unsubscribe":
            properties[prop("subscriptionStatus")] = "unsubscribed"
            properties[prop("unsubscribedAt")] = _timestamp(now)
        else:
            properties[prop("subscriptionStatus")] = "active"
            properties[prop("subscribedAt")] = _timestamp(now)
            properties.pop(prop("unsubscribedAt"), None)
        contact.properties = properties
    elif kind == "delete":
        contact = _existing(session, workspace_id, email)
        session.delete(contact)
        session.add(
            ContactAudit(
                workspace_id=workspace_id,
                email=email,
                operation="erase",
                target="contact_store",
                result="ok",
                message="contact deleted from the contact store (GDPR erasure requested)",
            )
        )
    else:
        raise EventError(422, f"unknown event kind {kind!r}", "unknown_event")
    event = ContactEvent(
        workspace_id=workspace_id,
        email=email,
        kind=kind,
        app=app,
        payload=_stored_payload(data),
        force=kind == "delete",
    )
    session.add(event)
    session.flush()
    return event


def _stored_payload(data: dict[str, Any]) -> dict[str, Any]:
    return {
        key: (_timestamp(value) if isinstance(value, datetime) else value)
        for key, value in data.items()
    }


def add_retry(
    session: Session,
    workspace_id: str,
    emails: Sequence[str],
    sync_id: str | None,
    kind: str = "retry",
    not_before: datetime | None = None,
    force: bool = True,
) -> int:
    """Ask for a re-push of these contacts (to one sync, or every event sync); ``force``
    re-sends an unchanged payload too."""
    if not emails:
        return 0
    session.execute(
        insert(ContactEvent),
        [
            {
                "workspace_id": workspace_id,
                "email": email,
                "kind": kind,
                "payload": {},
                "sync_id": sync_id,
                "force": force,
                "status": "pending",
                "not_before": not_before,
                "attempts": 0,
                "error": "",
                "created_at": utcnow(),
            }
            for email in emails
        ],
    )
    return len(emails)


# --- processing -------------------------------------------------------------------------------


@dataclass
class ProcessResult:
    contacts: int = 0
    events: int = 0
    pushed: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    deferred: int = 0
    failed: int = 0


def event_syncs(session: Session, workspace_id: str) -> list[AudienceSync]:
    """Active syncs with ``config.event_triggered`` whose audience reads the contact store."""
    syncs = session.execute(
        select(AudienceSync)
        .join(Audience, AudienceSync.audience_id == Audience.id)
        .outerjoin(Source, Audience.source_id == Source.id)
        .where(
            AudienceSync.workspace_id == workspace_id,
            AudienceSync.status == "active",
            Audience.archived_at.is_(None),
            or_(Audience.source_id.is_(None), Source.kind == "contacts"),
        )
    ).scalars()
    return [sync for sync in syncs if (sync.config or {}).get("event_triggered") is True]


def workspaces_with_work(session: Session, now: datetime, republish_after: float) -> list[str]:
    """Workspaces with due pending events nobody rang the doorbell for recently; marks them
    published. This is the sweeper's half of the outbox."""
    quiet = now - timedelta(seconds=republish_after)
    due = (
        (ContactEvent.status == "pending")
        & or_(ContactEvent.not_before.is_(None), ContactEvent.not_before <= now)
        & or_(ContactEvent.published_at.is_(None), ContactEvent.published_at < quiet)
    )
    ids = list(session.execute(select(ContactEvent.workspace_id).where(due).distinct()).scalars())
    if ids:
        session.execute(
            update(ContactEvent)
            .where(due)
            .values(published_at=now)
            .execution_options(synchronize_session=False)
        )
    return ids


def _claim_contacts(
    sessions: sessionmaker[Session], workspace_id: str, settings: EventSettings
) -> tuple[str, list[str]]:
    """Lease up to ``batch_contacts`` contacts with due pending events, oldest first."""
    token = str(uuid.uuid4())
    now = utcnow()
    with sessions.begin() as session:
        session.execute(
            delete(ContactEventLease).where(
                ContactEventLease.workspace_id == workspace_id,
                ContactEventLease.claimed_at < now - timedelta(seconds=settings.lease_seconds),
            )
        )
        leased = select(ContactEventLease.email).where(
            ContactEventLease.workspace_id == workspace_id
        )
        candidates = list(
            session.execute(
                select(ContactEvent.email)
                .where(
                    ContactEvent.workspace_id == workspace_id,
                    ContactEvent.status == "pending",
                    or_(ContactEvent.not_before.is_(None), ContactEvent.not_before <= now),
                    ContactEvent.email.not_in(leased),
                )
                .group_by(ContactEvent.email)
                .order_by(func.min(ContactEvent.id))
                .limit(settings.batch_contacts)
            ).scalars()
        )
        if not candidates:
            return token, []
        dialect = session.get_bind().dialect.name
        dialect_insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = (
            dialect_insert(ContactEventLease)
            .values(
                [
                    {"workspace_id": workspace_id, "email": e, "token": token, "claimed_at": now}
                    for e in candidates
                ]
            )
            .on_conflict_do_nothing(index_elements=["workspace_id", "email"])
        )
        session.execute(statement)
        got = list(
            session.execute(
                select(ContactEventLease.email).where(
                    ContactEventLease.workspace_id == workspace_id,
                    ContactEventLease.token == token,
                )
            ).scalars()
        )
    return token, got


def process_events(
    sessions: sessionmaker[Session],
    settings: Settings,
    workspace_id: str,
    connector_for: Callable[[Destination, Settings], Connector],
    event_settings: EventSettings | None = None,
) -> ProcessResult:
    """Push every due pending event of the workspace, a leased batch of contacts at a time,
    until none is left that this worker can take."""
    event_settings = event_settings or EventSettings()
    total = ProcessResult()
    while True:
        token, emails = _claim_contacts(sessions, workspace_id, event_settings)
        if not emails:
            return total
        try:
            _process_isolating(
                sessions, settings, workspace_id, emails, connector_for, total, event_settings
            )
        finally:
            with sessions.begin() as session:
                session.execute(
                    delete(ContactEventLease).where(
                        ContactEventLease.workspace_id == workspace_id,
                        ContactEventLease.token == token,
                    )
                )


def _process_isolating(
    sessions: sessionmaker[Session],
    settings: Settings,
    workspace_id: str,
    emails: list[str],
    connector_for: Callable[[Destination, Settings], Connector],
    total: ProcessResult,
    event_settings: EventSettings,
) -> None:
    """Process a leased batch; if it raises, each contact alone, so that one contact whose
    events cannot be processed (a bug, a value the database refuses) holds back only itself.
    That contact is tried again with backoff, then its events fail with the error after
    ``max_attempts``. Pushing again is safe: what a sync already has is planned unchanged."""
    try:
        _process_batch(sessions, settings, workspace_id, emails, connector_for, total)
        return
    except Exception as exc:
        if len(emails) == 1:
            _give_back(sessions, workspace_id, emails, exc, event_settings)
            return
    for email in emails:
        try:
            _process_batch(sessions, settings, workspace_id, [email], connector_for, total)
        except Exception as exc:
            _give_back(sessions, workspace_id, [email], exc, event_settings)


def _due_events(
    session: Session, workspace_id: str, emails: list[str], now: datetime
) -> list[ContactEvent]:
    """The pending events of these contacts that are due now."""
    return list(
        session.execute(
            select(ContactEvent).where(
                ContactEvent.workspace_id == workspace_id,
                ContactEvent.email.in_(emails),
                ContactEvent.status == "pending",
                or_(ContactEvent.not_before.is_(None), ContactEvent.not_before <= now),
            )
        ).scalars()
    )


def _give_back(
    sessions: sessionmaker[Session],
    workspace_id: str,
    emails: list[str],
    exc: Exception,
    event_settings: EventSettings,
) -> None:
    """Count a failed attempt on the contact's due events: later with backoff, or failed."""
    error = f"{type(exc).__name__}: {exc}"[:2000]
    now = utcnow()
    with sessions.begin() as session:
        events = _due_events(session, workspace_id, emails, now)
        for event in events:
            event.attempts += 1
            event.error = error
            if event.attempts >= event_settings.max_attempts:
                event.status, event.processed_at = "failed", now
            else:
                backoff = event_settings.retry_initial_seconds * 2 ** (event.attempts - 1)
                event.not_before = now + timedelta(seconds=min(backoff, 300.0))
                event.published_at = None
    failed = sum(1 for event in events if event.status == "failed")
    logger.warning(
        "events.gave_back",
        exc_info=exc,
        extra={"fields": {"contacts": len(emails), "events": len(events), "failed": failed}},
    )


def _process_batch(
    sessions: sessionmaker[Session],
    settings: Settings,
    workspace_id: str,
    emails: list[str],
    connector_for: Callable[[Destination, Settings], Connector],
    total: ProcessResult,
) -> None:
    now = utcnow()
    with sessions() as session:
        events = _due_events(session, workspace_id, emails, now)
        existing = set(
            session.execute(
                select(Contact.email).where(
                    Contact.workspace_id == workspace_id, Contact.email.in_(emails)
                )
            ).scalars()
        )
        syncs = event_syncs(session, workspace_id)
        erase = {e.email for e in events if e.email not in existing}
        if erase:  # a deleted contact leaves every sync that delivered it, whatever its mode
            holders = set(
                session.execute(
                    select(SyncState.sync_id).where(
                        SyncState.member_key.in_(erase), SyncState.delivered.is_(True)
                    )
                ).scalars()
            )
            known = {sync.id for sync in syncs}
            syncs += [
                sync
                for sync in session.execute(
                    select(AudienceSync).where(
                        AudienceSync.workspace_id == workspace_id,
                        AudienceSync.id.in_(holders - known),
                    )
                ).scalars()
            ]
    total.contacts += len(emails)
    total.events += len(events)
    first_event: dict[str, int] = {}
    for event in sorted(events, key=lambda e: e.id):
        first_event.setdefault(event.email, event.id)
    keep: set[int] = set()  # rechecks that wait for a run to end stay pending
    for sync in syncs:
        targeted = [e for e in events if e.sync_id in (None, sync.id)]
        keys = {e.email for e in targeted}
        if sync.status != "active" or not (sync.config or {}).get("event_triggered"):
            keys &= erase  # erasure only, for the syncs that are not event-triggered
        if not keys:
            continue
        force = {e.email for e in targeted if e.force}
        rechecks = [e for e in targeted if e.kind == "recheck" and e.sync_id == sync.id]
        pushed = _push_to_sync(
            sessions, settings, sync, keys, force, erase & keys, first_event, connector_for, total
        )
        if not pushed:
            keep |= _defer(sessions, sync, keys, force, rechecks)
            total.deferred += len(keys)
    with sessions.begin() as session:
        session.execute(
            update(ContactEvent)
            .where(ContactEvent.id.in_([e.id for e in events if e.id not in keep]))
            .values(status="done", processed_at=utcnow(), attempts=ContactEvent.attempts + 1)
            .execution_options(synchronize_session=False)
        )


def _run_active(session: Session, sync_id: str, since: datetime | None = None) -> bool:
    condition: ColumnElement[bool] = SyncRun.status.in_(ACTIVE_RUN_STATUSES)
    if since is not None:
        condition = or_(condition, SyncRun.created_at >= since)
    return bool(
        session.execute(select(exists().where(SyncRun.sync_id == sync_id, condition))).scalar_one()
    )


def _push_to_sync(
    sessions: sessionmaker[Session],
    settings: Settings,
    sync: AudienceSync,
    keys: set[str],
    force: set[str],
    erase: set[str],
    first_event: dict[str, int],
    connector_for: Callable[[Destination, Settings], Connector],
    total: ProcessResult,
) -> bool:
    """Push ``keys`` to ``sync``; ``False`` (nothing sent) while a run of the sync is going."""
    event_settings = EventSettings()
    checked_at = utcnow()
    with sessions() as session:
        if _run_active(session, sync.id):
            return False
        changes = plan_keys(session, sync, keys, force=force, erase=erase)
    connector = connector_for(sync.destination, settings)
    result = deliver_changes(
        sessions,
        sync,
        changes,
        connector,
        lambda key: {"workspace_id": sync.workspace_id, "event_id": first_event.get(key)},
    )
    for op in result.ops.values():
        total.pushed[op] += 1
    total.failed += len(result.failed)
    with sessions.begin() as session:
        if _run_active(session, sync.id, since=checked_at):
            # A run started while we pushed: which of the two deliveries landed last is
            # unknown, so re-send these contacts once the run is over.
            later = utcnow() + timedelta(seconds=event_settings.recheck_seconds)
            sent = [key for key, op in result.ops.items() if op in ("add", "update")]
            add_retry(session, sync.workspace_id, sent, sync.id, "recheck", later)
    log_event(
        logger,
        "events.pushed",
        sync_id=sync.id,
        contacts=len(keys),
        failed=len(result.failed),
        requests=result.requests,
    )
    return True


def _defer(
    sessions: sessionmaker[Session],
    sync: AudienceSync,
    keys: set[str],
    force: set[str],
    rechecks: list[ContactEvent],
) -> set[int]:
    """A run of the sync is going (it reads the new rows itself): look at these contacts again
    after it. A recheck that is already waiting is moved on rather than copied, so a long run
    does not pile rows up; returns the ids of the rechecks kept pending."""
    later = utcnow() + timedelta(seconds=EventSettings().recheck_seconds)
    kept = {e.id for e in rechecks}
    covered = {e.email for e in rechecks}
    with sessions.begin() as session:
        if kept:
            session.execute(
                update(ContactEvent)
                .where(ContactEvent.id.in_(kept))
                .values(not_before=later, published_at=None)
                .execution_options(synchronize_session=False)
            )
        rest = sorted(keys - covered)
        add_retry(
            session,
            sync.workspace_id,
            [k for k in rest if k in force],
            sync.id,
            "recheck",
            later,
            force=True,
        )
        add_retry(
            session,
            sync.workspace_id,
            [k for k in rest if k not in force],
            sync.id,
            "recheck",
            later,
            force=False,
        )
    log_event(logger, "events.deferred", sync_id=sync.id, contacts=len(keys))
    return kept


def prune_events(session: Session, older_than: timedelta) -> int:
    """Delete processed events past the retention. ``delete`` events stay: they are how an
    event for an erased contact is told apart (410) from one for an unknown contact (404)."""
    cutoff = utcnow() - older_than
    result = session.execute(
        delete(ContactEvent)
        .where(
            ContactEvent.status == "done",
            ContactEvent.kind != "delete",
            ContactEvent.created_at < cutoff,
        )
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def prune_audit(session: Session, older_than: timedelta) -> int:
    """Delete audit rows past the retention, except erasures: the record that a contact was
    erased on request is kept as long as the workspace."""
    result = session.execute(
        delete(ContactAudit)
        .where(ContactAudit.operation != "erase", ContactAudit.created_at < utcnow() - older_than)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
