"""Audiences: static list members, CSV imports, groups; audience status and sync source.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import shared.db.types

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
WHEN = shared.db.types.UTCDateTime(timezone=True)
KEY = sa.String(length=320).with_variant(sa.String(length=320, collation="C"), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("audiences", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("status", sa.String(length=20), nullable=False, server_default="ready")
        )
        batch_op.add_column(sa.Column("status_error", sa.Text(), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("status_changed_at", WHEN, nullable=True))
        batch_op.add_column(sa.Column("sync_source", JSON, nullable=True))
        batch_op.add_column(sa.Column("group_id", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("group_config", JSON, nullable=True))
        batch_op.create_index(batch_op.f("ix_audiences_group_id"), ["group_id"], unique=False)

    op.create_table(
        "static_list_members",
        sa.Column("audience_id", sa.String(length=36), nullable=False),
        sa.Column("member_key", KEY, nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("first_name", sa.String(length=200), nullable=True),
        sa.Column("last_name", sa.String(length=200), nullable=True),
        sa.Column("phone", sa.String(length=40), nullable=True),
        sa.Column("user_id", sa.String(length=200), nullable=True),
        sa.Column("last_active_at", WHEN, nullable=True),
        sa.Column("properties", JSON, nullable=False),
        sa.Column("added_at", WHEN, nullable=False),
        sa.Column("import_id", sa.String(length=36), nullable=True),
        sa.ForeignKeyConstraint(["audience_id"], ["audiences.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("audience_id", "member_key"),
    )
    op.create_table(
        "audience_imports",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("workspace_id", sa.String(length=36), nullable=False),
        sa.Column("audience_id", sa.String(length=36), nullable=True),
        sa.Column("target", sa.String(length=20), nullable=False),
        sa.Column("filename", sa.String(length=300), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("rows_read", sa.Integer(), nullable=False),
        sa.Column("accepted", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.Column("written", sa.Integer(), nullable=False),
        sa.Column("bytes_read", sa.Integer(), nullable=False),
        sa.Column("bytes_total", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("started_at", WHEN, nullable=True),
        sa.Column("finished_at", WHEN, nullable=True),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(["audience_id"], ["audiences.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("audience_imports", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_audience_imports_audience_id"), ["audience_id"], unique=False
        )
        batch_op.create_index(
            "ix_audience_imports_workspace_created", ["workspace_id", "created_at"], unique=False
        )
    op.create_table(
        "audience_import_rows",
        sa.Column("import_id", sa.String(length=36), nullable=False),
        sa.Column("member_key", sa.String(length=320), nullable=False),
        sa.Column("row_number", sa.Integer(), nullable=False),
        sa.Column("new_id", sa.String(length=36), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("first_name", sa.String(length=200), nullable=True),
        sa.Column("last_name", sa.String(length=200), nullable=True),
        sa.Column("phone", sa.String(length=40), nullable=True),
        sa.Column("user_id", sa.String(length=200), nullable=True),
        sa.Column("last_active_at", WHEN, nullable=True),
        sa.Column("properties", JSON, nullable=False),
        sa.ForeignKeyConstraint(["import_id"], ["audience_imports.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("import_id", "member_key"),
    )
    op.create_table(
        "audience_import_rejections",
        sa.Column("import_id", sa.String(length=36), nullable=False),
        sa.Column("row_number", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["import_id"], ["audience_imports.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("import_id", "row_number"),
    )
    op.create_table(
        "audience_groups",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("workspace_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("config", JSON, nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("audience_groups", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_audience_groups_workspace_id"), ["workspace_id"], unique=False
        )


def downgrade() -> None:
    op.drop_table("audience_groups")
    op.drop_table("audience_import_rejections")
    op.drop_table("audience_import_rows")
    op.drop_table("audience_imports")
    op.drop_table("static_list_members")
    with op.batch_alter_table("audiences", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audiences_group_id"))
        batch_op.drop_column("group_config")
        batch_op.drop_column("group_id")
        batch_op.drop_column("sync_source")
        batch_op.drop_column("status_changed_at")
        batch_op.drop_column("status_error")
        batch_op.drop_column("status")
