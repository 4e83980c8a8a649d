"""Wall terminals (issue 18): ``terminals`` (a tablet an admin bound to a zone by the
one-time code it showed), the presence source ``terminal`` (a check-in with a personal
security key on the zone's own terminal), and ``web_sessions.terminal_id`` (the short
session of the person who tapped in there).

Revision ID: 0020
Revises: 0019
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

STATUS = sa.Enum("waiting", "paired", "revoked", name="terminal_status")


def upgrade() -> None:
    # PostgreSQL 12+ adds an enum value inside a transaction; it is not used in this one.
    op.execute("ALTER TYPE presence_source ADD VALUE IF NOT EXISTS 'terminal'")
    op.create_table(
        "terminals",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("name", sa.String(100), server_default="", nullable=False),
        sa.Column("zone_id", sa.UUID(), nullable=True),
        sa.Column("status", STATUS, nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=True),
        sa.Column("code_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("address", sa.String(64), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("paired_by", sa.UUID(), nullable=True),
        sa.Column("paired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.UUID(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["zone_id"], ["zones.id"], name="fk_terminals_zone_id_zones", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["paired_by"], ["users.id"], name="fk_terminals_paired_by_users", ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["revoked_by"],
            ["users.id"],
            name="fk_terminals_revoked_by_users",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_terminals"),
        sa.UniqueConstraint("token_hash", name="uq_terminals_token_hash"),
        sa.UniqueConstraint("code_hash", name="uq_terminals_code_hash"),
    )
    for column in ("zone_id", "paired_by", "revoked_by"):
        op.create_index(f"ix_terminals_{column}", "terminals", [column])
    op.add_column("web_sessions", sa.Column("terminal_id", sa.UUID(), nullable=True))
    op.create_foreign_key(
        "fk_web_sessions_terminal_id_terminals",
        "web_sessions",
        "terminals",
        ["terminal_id"],
        ["id"],
        ondelete="CASCADE",
    )
    op.create_index("ix_web_sessions_terminal_id", "web_sessions", ["terminal_id"])


def downgrade() -> None:
    op.drop_index("ix_web_sessions_terminal_id", "web_sessions")
    op.drop_constraint("fk_web_sessions_terminal_id_terminals", "web_sessions", type_="foreignkey")
    op.drop_column("web_sessions", "terminal_id")
    op.drop_table("terminals")
    STATUS.drop(op.get_bind(), checkfirst=True)
    # An enum value cannot be dropped: the type is rebuilt without it, and a terminal
    # check-in becomes the manual check-in it was before terminals existed.
    op.execute("ALTER TYPE presence_source RENAME TO presence_source_old")
    op.execute("CREATE TYPE presence_source AS ENUM ('unifi', 'manual', 'override', 'confirmed')")
    op.execute(
        "ALTER TABLE zone_presence ALTER COLUMN source TYPE presence_source USING "
        "(CASE source::text WHEN 'terminal' THEN 'manual' ELSE source::text END)"
        "::presence_source"
    )
    op.execute("DROP TYPE presence_source_old")
