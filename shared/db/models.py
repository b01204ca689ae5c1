"""The tables of audiencesync.

Run history, sync state and errors are rows of our own (Flower forgets on restart); a task only
ever carries the id of a row.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from shared.db.types import JSONType, UTCDateTime, new_id, utcnow

ACTIVE_RUN_STATUSES = ("pending", "running")


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSONType,
    }


class Timestamped:
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Workspace(Timestamped, Base):
    __tablename__ = "workspaces"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))


class ApiKey(Base):
    """A workspace's bearer token. Only its SHA-256 is stored; the token is shown once."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class Source(Timestamped, Base):
    """Where members come from: ``contacts`` (the built-in store) or ``sql`` (an external DB)."""

    __tablename__ = "sources"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    secret_encrypted: Mapped[str | None] = mapped_column(Text, default=None)


class Audience(Timestamped, Base):
    __tablename__ = "audiences"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    source_id: Mapped[str | None] = mapped_column(ForeignKey("sources.id"), default=None)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    kind: Mapped[str] = mapped_column(String(20), default="rules")
    rules: Mapped[dict[str, Any]] = mapped_column(default=dict)
    archived_at: Mapped[datetime | None] = mapped_column(default=None)
    # Materialization state: ready, importing (a CSV import is writing), syncing (a synced list
    # is being read from its external source), error; and when it last changed.
    status: Mapped[str] = mapped_column(String(20), default="ready", server_default="ready")
    status_error: Mapped[str] = mapped_column(Text, default="", server_default="")
    status_changed_at: Mapped[datetime | None] = mapped_column(default=utcnow)
    # A synced list's external source: {"type": "klaviyo", "destination_id", "list_id"}.
    sync_source: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)
    group_id: Mapped[str | None] = mapped_column(String(36), default=None, index=True)
    group_config: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)


class Destination(Timestamped, Base):
    """A connector type plus its settings; credentials are Fernet-encrypted and never returned."""

    __tablename__ = "destinations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(40))
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    credentials_encrypted: Mapped[str] = mapped_column(Text)


class AudienceSync(Timestamped, Base):
    """Seed 002's Audience Sync Object."""

    __tablename__ = "audience_syncs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    audience_id: Mapped[str] = mapped_column(ForeignKey("audiences.id"))
    destination_id: Mapped[str] = mapped_column(ForeignKey("destinations.id"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    field_mapping: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    sync_mode: Mapped[str] = mapped_column(String(10))
    schedule: Mapped[str | None] = mapped_column(String(120), default=None)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC", server_default="UTC")
    catch_up: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    schedule_changed_at: Mapped[datetime | None] = mapped_column(default=None)
    last_tick_at: Mapped[datetime | None] = mapped_column(default=None)
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(10), default="draft")
    status_error: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str | None] = mapped_column(String(36), default=None)
    last_synced_at: Mapped[datetime | None] = mapped_column(default=None)
    last_run_id: Mapped[str | None] = mapped_column(String(36), default=None)
    split_group_id: Mapped[str | None] = mapped_column(String(36), default=None)

    audience: Mapped[Audience] = relationship(lazy="joined")
    destination: Mapped[Destination] = relationship(lazy="joined")


class SyncRun(Base):
    """One execution of a sync; ``attempts`` counts deliveries of its task (poison guard)."""

    __tablename__ = "sync_runs"
    __table_args__ = (
        # One run at a time per sync: the database, not a lock, is the guard.
        Index(
            "uq_sync_runs_one_active",
            "sync_id",
            unique=True,
            postgresql_where=text("status IN ('pending', 'running')"),
            sqlite_where=text("status IN ('pending', 'running')"),
        ),
        # Each scheduled tick of a sync is recorded once, whatever number of beats run.
        Index("uq_sync_runs_tick", "sync_id", "scheduled_for", unique=True),
        Index("ix_sync_runs_sync_created", "sync_id", "created_at"),
        Index("ix_sync_runs_status", "status"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    sync_id: Mapped[str] = mapped_column(ForeignKey("audience_syncs.id", ondelete="CASCADE"))
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    trigger: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default="pending")
    sync_mode: Mapped[str] = mapped_column(String(10))
    error: Mapped[str] = mapped_column(Text, default="")
    scheduled_for: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(default=None)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    heartbeat_at: Mapped[datetime | None] = mapped_column(default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    planned_total: Mapped[int] = mapped_column(Integer, default=0)
    processed: Mapped[int] = mapped_column(Integer, default=0)
    added: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    removed: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    destination_requests: Mapped[int] = mapped_column(Integer, default=0)
    delivery_paths: Mapped[dict[str, Any]] = mapped_column(default=dict)
    allow_mass_removal: Mapped[bool] = mapped_column(Boolean, default=False)


class SyncState(Base):
    """What this sync last delivered for one member: the snapshot the diff runs against.

    ``delivered`` says the destination holds the member because of this sync; ``payload_hash`` is
    the hash of what it holds. Both change only after the destination confirmed a batch.
    """

    __tablename__ = "sync_state"

    sync_id: Mapped[str] = mapped_column(
        ForeignKey("audience_syncs.id", ondelete="CASCADE"), primary_key=True
    )
    member_key: Mapped[str] = mapped_column(String(320), primary_key=True)
    payload_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    destination_ref: Mapped[str | None] = mapped_column(String(200), default=None)
    delivered: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(10), default="pending")
    last_error: Mapped[str] = mapped_column(Text, default="")
    last_run_id: Mapped[str | None] = mapped_column(String(36), default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class RunError(Base):
    """One record the destination refused in a run, with the service's own message."""

    __tablename__ = "run_errors"
    __table_args__ = (Index("ix_run_errors_run", "run_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("sync_runs.id", ondelete="CASCADE"))
    member_key: Mapped[str] = mapped_column(String(320))
    operation: Mapped[str] = mapped_column(String(10))
    status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Contact(Timestamped, Base):
    """The built-in contact store, one row per (workspace, email)."""

    __tablename__ = "contacts"
    __table_args__ = (
        UniqueConstraint("workspace_id", "email", name="uq_contacts_workspace_email"),
        Index("ix_contacts_workspace_active", "workspace_id", "last_active_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(320))
    first_name: Mapped[str | None] = mapped_column(String(200), default=None)
    last_name: Mapped[str | None] = mapped_column(String(200), default=None)
    phone: Mapped[str | None] = mapped_column(String(40), default=None)
    user_id: Mapped[str | None] = mapped_column(String(200), default=None)
    last_active_at: Mapped[datetime | None] = mapped_column(default=None)
    properties: Mapped[dict[str, Any]] = mapped_column(default=dict)


# Tables of later features live in modules of their own; importing them here puts them in
# Base.metadata for Alembic and for every process.
from shared.db import audience_models, event_models  # noqa: E402, F401
