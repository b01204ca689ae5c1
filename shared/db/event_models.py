"""Tables for contact events (the outbox), per-contact leases, and the per-contact audit trail.

A contact event is written in the same transaction as the contact change it reports, before the
API answers 202: the row, not the broker message, is the promise. The broker only rings the
doorbell; a sweeper re-publishes events nobody processed (a lost message, a Redis restart).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.models import Base
from shared.db.types import utcnow

EVENT_STATUSES = ("pending", "done")


class ContactEvent(Base):
    """One thing that happened to a contact (signup, update, unsubscribe, ...), or a request to
    re-push it (``retry``, ``recheck``). ``pending`` until a worker pushed the contact's current
    state to every event-triggered sync; ``id`` orders a contact's events."""

    __tablename__ = "contact_events"
    __table_args__ = (
        Index("ix_contact_events_pending", "status", "not_before"),
        Index("ix_contact_events_contact", "workspace_id", "email", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(320))
    kind: Mapped[str] = mapped_column(String(20))
    app: Mapped[str | None] = mapped_column(String(20), default=None)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # A recheck or retry may target one sync and force a re-send of an unchanged payload.
    sync_id: Mapped[str | None] = mapped_column(String(36), default=None)
    force: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(10), default="pending")
    not_before: Mapped[datetime | None] = mapped_column(default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(default=None)
    processed_at: Mapped[datetime | None] = mapped_column(default=None)


class ContactEventLease(Base):
    """Whoever holds the row for a contact is the only worker pushing it: a contact's events
    apply in order. A lease older than the lease time belongs to a dead worker and is taken."""

    __tablename__ = "contact_event_leases"

    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    email: Mapped[str] = mapped_column(String(320), primary_key=True)
    token: Mapped[str] = mapped_column(String(36))
    claimed_at: Mapped[datetime] = mapped_column(default=utcnow)


class ContactAudit(Base):
    """One operation on one contact: what, where (sync, destination), when, and the result."""

    __tablename__ = "contact_audit"
    __table_args__ = (Index("ix_contact_audit_contact", "workspace_id", "email", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(320))
    operation: Mapped[str] = mapped_column(String(20))
    target: Mapped[str] = mapped_column(String(40))
    sync_id: Mapped[str | None] = mapped_column(String(36), default=None)
    destination_id: Mapped[str | None] = mapped_column(String(36), default=None)
    event_id: Mapped[int | None] = mapped_column(Integer, default=None)
    run_id: Mapped[str | None] = mapped_column(String(36), default=None)
    result: Mapped[str] = mapped_column(String(10))
    status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    message: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
