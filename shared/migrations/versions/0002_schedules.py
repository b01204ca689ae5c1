"""Schedules: time zone, catch-up, tick per run; C-collation indexes for sorted streaming.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import shared.db.types

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audience_syncs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("timezone", sa.String(length=64), nullable=False, server_default="UTC")
        )
        batch_op.add_column(
            sa.Column("catch_up", sa.Boolean(), nullable=False, server_default=sa.true())
        )
        batch_op.add_column(
            sa.Column("last_tick_at", shared.db.types.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column(
                "schedule_changed_at", shared.db.types.UTCDateTime(timezone=True), nullable=True
            )
        )

    with op.batch_alter_table("sync_runs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("scheduled_for", shared.db.types.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.create_index("uq_sync_runs_tick", ["sync_id", "scheduled_for"], unique=True)

    if op.get_bind().dialect.name == "postgresql":
        # The diff streams members and state in code-point order (COLLATE "C"); these indexes
        # let PostgreSQL read them in that order instead of sorting everything first.
        # (SQLite compares bytes already.) Names start with ixc_ so autogenerate ignores them.
        op.execute('CREATE INDEX ixc_contacts_email ON contacts (workspace_id, email COLLATE "C")')
        op.execute(
            'CREATE INDEX ixc_sync_state_key ON sync_state (sync_id, member_key COLLATE "C")'
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX ixc_sync_state_key")
        op.execute("DROP INDEX ixc_contacts_email")
    with op.batch_alter_table("sync_runs", schema=None) as batch_op:
        batch_op.drop_index("uq_sync_runs_tick")
        batch_op.drop_column("scheduled_for")

    with op.batch_alter_table("audience_syncs", schema=None) as batch_op:
        batch_op.drop_column("schedule_changed_at")
        batch_op.drop_column("last_tick_at")
        batch_op.drop_column("catch_up")
        batch_op.drop_column("timezone")
