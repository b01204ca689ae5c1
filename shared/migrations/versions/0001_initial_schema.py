"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import shared.db.types

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workspaces",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", shared.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", shared.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("workspace_id", sa.String(length=36), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("created_at", shared.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", shared.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_table(
        "contacts",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("workspace_id", sa.String(length=36), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("first_name", sa.String(length=200), nullable=True),
        sa.Column("last_name", sa.String(length=200), nullable=True),
        sa.Column("phone", sa.String(length=40), nullable=True),
        sa.Column("user_id", sa.String(length=200), nullable=True),
        sa.Column("last_active_at", shared.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "properties",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", shared.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", shared.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("workspace_id", "email", name="uq_contacts_workspace_email"),
    )
    op.create_table(
        "destinations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("workspace_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column(
            "config",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("credentials_encrypted", sa.Text(), nullable=False),
        sa.Column("created_at", shared.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", shared.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("destinations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_destinations_workspace_id"), ["workspace_id"], unique=False
        )

    op.create_table(
        "sources",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("workspace_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column(
            "config",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("secret_encrypted", sa.Text(), nullable=True),
        sa.Column("created_at", shared.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", shared.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("sources", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sources_workspace_id"), ["workspace_id"], unique=False)

    op.create_table(
        "audiences",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("workspace_id", sa.String(length=36), nullable=False),
        sa.Column("source_id", sa.String(length=36), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column(
            "rules",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("archived_at", shared.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", shared.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", shared.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["sources.id"],
        ),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("audiences", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_audiences_workspace_id"), ["workspace_id"], unique=False
        )

    op.create_table(
        "audience_syncs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("workspace_id", sa.String(length=36), nullable=False),
        sa.Column("audience_id", sa.String(length=36), nullable=False),
        sa.Column("destination_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column(
            "field_mapping",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("sync_mode", sa.String(length=10), nullable=False),
        sa.Column("schedule", sa.String(length=120), nullable=True),
        sa.Column(
            "config",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("status_error", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=36), nullable=True),
        sa.Column("last_synced_at", shared.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_run_id", sa.String(length=36), nullable=True),
        sa.Column("split_group_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", shared.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", shared.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["audience_id"],
            ["audiences.id"],
        ),
        sa.ForeignKeyConstraint(
            ["destination_id"],
            ["destinations.id"],
        ),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("audience_syncs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_audience_syncs_workspace_id"), ["workspace_id"], unique=False
        )

    op.create_table(
        "sync_runs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("sync_id", sa.String(length=36), nullable=False),
        sa.Column("workspace_id", sa.String(length=36), nullable=False),
        sa.Column("trigger", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("sync_mode", sa.String(length=10), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("created_at", shared.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("published_at", shared.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("started_at", shared.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", shared.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", shared.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("planned_total", sa.Integer(), nullable=False),
        sa.Column("processed", sa.Integer(), nullable=False),
        sa.Column("added", sa.Integer(), nullable=False),
        sa.Column("updated", sa.Integer(), nullable=False),
        sa.Column("removed", sa.Integer(), nullable=False),
        sa.Column("unchanged", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("destination_requests", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["sync_id"], ["audience_syncs.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("sync_runs", schema=None) as batch_op:
        batch_op.create_index("ix_sync_runs_status", ["status"], unique=False)
        batch_op.create_index("ix_sync_runs_sync_created", ["sync_id", "created_at"], unique=False)
        batch_op.create_index(
            "uq_sync_runs_one_active",
            ["sync_id"],
            unique=True,
            postgresql_where=sa.text("status IN ('pending', 'running')"),
            sqlite_where=sa.text("status IN ('pending', 'running')"),
        )

    op.create_table(
        "sync_state",
        sa.Column("sync_id", sa.String(length=36), nullable=False),
        sa.Column("member_key", sa.String(length=320), nullable=False),
        sa.Column("payload_hash", sa.String(length=64), nullable=True),
        sa.Column("destination_ref", sa.String(length=200), nullable=True),
        sa.Column("delivered", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("last_run_id", sa.String(length=36), nullable=True),
        sa.Column("updated_at", shared.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["sync_id"], ["audience_syncs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("sync_id", "member_key"),
    )
    op.create_table(
        "run_errors",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("member_key", sa.String(length=320), nullable=False),
        sa.Column("operation", sa.String(length=10), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("created_at", shared.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["sync_runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("run_errors", schema=None) as batch_op:
        batch_op.create_index("ix_run_errors_run", ["run_id"], unique=False)

    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.create_index("ix_contacts_workspace_active", ["workspace_id", "last_active_at"])


def downgrade() -> None:
    with op.batch_alter_table("run_errors", schema=None) as batch_op:
        batch_op.drop_index("ix_run_errors_run")

    op.drop_table("run_errors")
    op.drop_table("sync_state")
    with op.batch_alter_table("sync_runs", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_sync_runs_one_active",
            postgresql_where=sa.text("status IN ('pending', 'running')"),
            sqlite_where=sa.text("status IN ('pending', 'running')"),
        )
        batch_op.drop_index("ix_sync_runs_sync_created")
        batch_op.drop_index("ix_sync_runs_status")

    op.drop_table("sync_runs")
    with op.batch_alter_table("audience_syncs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audience_syncs_workspace_id"))

    op.drop_table("audience_syncs")
    with op.batch_alter_table("audiences", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audiences_workspace_id"))

    op.drop_table("audiences")
    with op.batch_alter_table("sources", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sources_workspace_id"))

    op.drop_table("sources")
    with op.batch_alter_table("destinations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_destinations_workspace_id"))

    op.drop_table("destinations")
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.drop_index("ix_contacts_workspace_active")

    op.drop_table("contacts")
    op.drop_table("api_keys")
    op.drop_table("workspaces")
