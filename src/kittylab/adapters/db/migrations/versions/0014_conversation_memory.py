"""Conversation memory and projects (issue 16): ``conversation_messages`` (what was said
in a conversation, and the later outcome of its device commands), ``projects`` and
``project_items`` (conversations, CAD jobs, artifacts and print jobs grouped as one
piece of work).

Revision ID: 0014
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0014"
down_revision = "0011"
branch_labels = None
depends_on = None


def _id() -> sa.Column[object]:
    return sa.Column("id", sa.UUID(), nullable=False)


def _now(name: str) -> sa.Column[object]:
    return sa.Column(
        name, sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "conversation_messages",
        _id(),
        sa.Column("conversation_id", sa.UUID(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("author_id", sa.UUID(), nullable=True),
        sa.Column("channel", sa.String(32), nullable=True),
        sa.Column("request_id", sa.UUID(), nullable=True),
        sa.Column("command_id", sa.UUID(), nullable=True),
        sa.Column(
            "details",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversation_sessions.id"],
            name="fk_conversation_messages_conversation_id_conversation_sessions",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["author_id"],
            ["users.id"],
            name="fk_conversation_messages_author_id_users",
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["command_id"],
            ["device_commands.id"],
            name="fk_conversation_messages_command_id_device_commands",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_conversation_messages"),
        sa.CheckConstraint(
            "kind IN ('request', 'reply', 'outcome')", name="ck_conversation_messages_kind_known"
        ),
    )
    for column in ("conversation_id", "author_id", "request_id", "command_id", "created_at"):
        op.create_index(f"ix_conversation_messages_{column}", "conversation_messages", [column])
    op.create_index(
        "uq_conversation_messages_outcome",
        "conversation_messages",
        ["command_id"],
        unique=True,
        postgresql_where=sa.text("kind = 'outcome'"),
    )

    op.create_table(
        "projects",
        _id(),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("created_by", sa.UUID(), nullable=True),
        _now("created_at"),
        _now("updated_at"),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name="fk_projects_created_by_users", ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_projects"),
        sa.CheckConstraint("length(trim(name)) > 0", name="ck_projects_name_required"),
    )
    op.create_index("ix_projects_created_by", "projects", ["created_by"])

    items = {
        "conversation_id": "conversation_sessions",
        "cad_job_id": "cad_jobs",
        "cad_artifact_id": "cad_artifacts",
        "fabrication_job_id": "fabrication_jobs",
    }
    op.create_table(
        "project_items",
        _id(),
        sa.Column("project_id", sa.UUID(), nullable=False),
        *(sa.Column(column, sa.UUID(), nullable=True) for column in items),
        sa.Column("artifact_key", sa.String(512), nullable=True),
        sa.Column("added_by", sa.UUID(), nullable=True),
        _now("added_at"),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name="fk_project_items_project_id_projects",
            ondelete="CASCADE",
        ),
        *(
            sa.ForeignKeyConstraint(
                [column],
                [f"{table}.id"],
                name=f"fk_project_items_{column}_{table}",
                ondelete="CASCADE",
            )
            for column, table in items.items()
        ),
        sa.ForeignKeyConstraint(
            ["added_by"], ["users.id"], name="fk_project_items_added_by_users", ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_project_items"),
        sa.CheckConstraint(
            "num_nonnulls(conversation_id, cad_job_id, cad_artifact_id, artifact_key, "
            "fabrication_job_id) = 1",
            name="ck_project_items_one_item",
        ),
        *(
            sa.UniqueConstraint("project_id", column, name=f"uq_project_items_project_id_{column}")
            for column in (*items, "artifact_key")
        ),
    )
    for column in ("project_id", *items, "added_by"):
        op.create_index(f"ix_project_items_{column}", "project_items", [column])


def downgrade() -> None:
    op.drop_table("project_items")
    op.drop_table("projects")
    op.drop_table("conversation_messages")
