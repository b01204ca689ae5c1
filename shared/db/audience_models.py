"""Tables for audiences beyond rules: static list members, CSV imports and their rejections,
groups (loyalty tiers, splits)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.models import Base
from shared.db.types import new_id, utcnow

# Member keys sort in code-point order (see shared.domain.members.ordered_key): on PostgreSQL the
# column itself has the "C" collation, so the primary key index serves keyset pages in that order.
MemberKey = String(320).with_variant(String(320, collation="C"), "postgresql")


class StaticMember(Base):
    """One member of a static list, with the data it was added with; keyed by lower-cased email."""

    __tablename__ = "static_list_members"

    audience_id: Mapped[str] = mapped_column(
        ForeignKey("audiences.id", ondelete="CASCADE"), primary_key=True
    )
    member_key: Mapped[str] = mapped_column(MemberKey, primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    first_name: Mapped[str | None] = mapped_column(String(200), default=None)
    last_name: Mapped[str | None] = mapped_column(String(200), default=None)
    phone: Mapped[str | None] = mapped_column(String(40), default=None)
    user_id: Mapped[str | None] = mapped_column(String(200), default=None)
    last_active_at: Mapped[datetime | None] = mapped_column(default=None)
    properties: Mapped[dict[str, Any]] = mapped_column(default=dict)
    added_at: Mapped[datetime] = mapped_column(default=utcnow)
    import_id: Mapped[str | None] = mapped_column(String(36), default=None)


class AudienceImport(Base):
    """A CSV import into a static list (``audience_id``) or the contact store (no audience).

    Its counters are committed as it goes, so a client polling it sees the progress; the rows
    themselves reach their target only when the whole file was read (``ImportRow`` stages them).
    """

    __tablename__ = "audience_imports"
    __table_args__ = (Index("ix_audience_imports_workspace_created", "workspace_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    audience_id: Mapped[str | None] = mapped_column(
        ForeignKey("audiences.id", ondelete="CASCADE"), default=None, index=True
    )
    target: Mapped[str] = mapped_column(String(20))  # static_list | contacts
    filename: Mapped[str] = mapped_column(String(300), default="")
    status: Mapped[str] = mapped_column(String(20), default="pending")
    rows_read: Mapped[int] = mapped_column(Integer, default=0)
    accepted: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)
    written: Mapped[int] = mapped_column(Integer, default=0)
    bytes_read: Mapped[int] = mapped_column(Integer, default=0)
    bytes_total: Mapped[int | None] = mapped_column(Integer, default=None)
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ImportRow(Base):
    """A row accepted by a running import, staged until the file has been read whole."""

    __tablename__ = "audience_import_rows"

    import_id: Mapped[str] = mapped_column(
        ForeignKey("audience_imports.id", ondelete="CASCADE"), primary_key=True
    )
    member_key: Mapped[str] = mapped_column(String(320), primary_key=True)
    row_number: Mapped[int] = mapped_column(Integer)
    new_id: Mapped[str] = mapped_column(String(36))  # the id a new contact gets
    email: Mapped[str] = mapped_column(String(320))
    first_name: Mapped[str | None] = mapped_column(String(200), default=None)
    last_name: Mapped[str | None] = mapped_column(String(200), default=None)
    phone: Mapped[str | None] = mapped_column(String(40), default=None)
    user_id: Mapped[str | None] = mapped_column(String(200), default=None)
    last_active_at: Mapped[datetime | None] = mapped_column(default=None)
    properties: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ImportRejection(Base):
    """A row an import refused, and why (the first ``MAX_REJECTIONS_KEPT`` of an import)."""

    __tablename__ = "audience_import_rejections"

    import_id: Mapped[str] = mapped_column(
        ForeignKey("audience_imports.id", ondelete="CASCADE"), primary_key=True
    )
    row_number: Mapped[int] = mapped_column(Integer, primary_key=True)
    reason: Mapped[str] = mapped_column(Text)
    raw: Mapped[str] = mapped_column(Text, default="")


class AudienceGroup(Base):
    """A group of audiences made together: loyalty tiers over one field's value ranges."""

    __tablename__ = "audience_groups"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(200))
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
