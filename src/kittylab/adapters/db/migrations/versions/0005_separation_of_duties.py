"""Separation of duties (issue 13): machine-token scopes and the token that minted a token;
approver keys awaiting a second person's confirmation, and the challenges that prove
possession of a key; grants of the safety and admin roles awaiting a second person.

Existing tokens are people's tokens (no scopes, no parent); existing keys stay usable
(they were added by an admin or on the host, the paths this revision replaces).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

UUID = postgresql.UUID(as_uuid=True)
TS = sa.DateTime(timezone=True)
ROLE = postgresql.ENUM(name="role", create_type=False)


def upgrade() -> None:
    op.add_column(
        "api_tokens",
        sa.Column(
            "scopes",
            postgresql.ARRAY(sa.String(32)),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
    )
    op.add_column("api_tokens", sa.Column("parent_id", UUID, nullable=True))
    op.create_foreign_key(
        op.f("fk_api_tokens_parent_id_api_tokens"),
        "api_tokens",
        "api_tokens",
        ["parent_id"],
        ["id"],
        ondelete="CASCADE",
    )
    op.create_index(op.f("ix_api_tokens_parent_id"), "api_tokens", ["parent_id"])

    op.add_column(
        "user_keys",
        sa.Column(
            "awaiting_confirmation", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
    )
    op.add_column("user_keys", sa.Column("confirmed_by", UUID, nullable=True))
    op.add_column("user_keys", sa.Column("confirmed_at", TS, nullable=True))
    op.create_foreign_key(
        op.f("fk_user_keys_confirmed_by_users"), "user_keys", "users", ["confirmed_by"], ["id"]
    )
    op.create_index(op.f("ix_user_keys_confirmed_by"), "user_keys", ["confirmed_by"])

    op.create_table(
        "key_challenges",
        sa.Column("id", UUID, nullable=False),
        sa.Column("user_id", UUID, nullable=False),
        sa.Column("challenge", sa.String(64), nullable=False),
        sa.Column("created_at", TS, server_default=sa.func.now(), nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("used_at", TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_key_challenges_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_key_challenges")),
    )
    op.create_index(op.f("ix_key_challenges_user_id"), "key_challenges", ["user_id"])

    op.create_table(
        "role_grants",
        sa.Column("id", UUID, nullable=False),
        sa.Column("user_id", UUID, nullable=False),
        sa.Column("role", ROLE, nullable=False),
        sa.Column("status", sa.String(16), server_default="pending", nullable=False),
        sa.Column("requested_by", UUID, nullable=False),
        sa.Column("created_at", TS, server_default=sa.func.now(), nullable=False),
        sa.Column("decided_by", UUID, nullable=True),
        sa.Column("decided_at", TS, nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'granted', 'refused')",
            name=op.f("ck_role_grants_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_role_grants_user_id_users"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["requested_by"], ["users.id"], name=op.f("fk_role_grants_requested_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["decided_by"], ["users.id"], name=op.f("fk_role_grants_decided_by_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_role_grants")),
    )
    op.create_index(op.f("ix_role_grants_user_id"), "role_grants", ["user_id"])
    op.create_index(op.f("ix_role_grants_requested_by"), "role_grants", ["requested_by"])
    op.create_index(op.f("ix_role_grants_decided_by"), "role_grants", ["decided_by"])
    op.create_index(
        "uq_role_grants_pending",
        "role_grants",
        ["user_id", "role"],
        unique=True,
        postgresql_where=sa.text("status = 'pending'"),
    )


def downgrade() -> None:
    op.drop_table("role_grants")
    op.drop_table("key_challenges")
    op.drop_index(op.f("ix_user_keys_confirmed_by"), table_name="user_keys")
    op.drop_constraint(op.f("fk_user_keys_confirmed_by_users"), "user_keys", type_="foreignkey")
    op.drop_column("user_keys", "confirmed_at")
    op.drop_column("user_keys", "confirmed_by")
    op.drop_column("user_keys", "awaiting_confirmation")
    op.drop_index(op.f("ix_api_tokens_parent_id"), table_name="api_tokens")
    op.drop_constraint(op.f("fk_api_tokens_parent_id_api_tokens"), "api_tokens", type_="foreignkey")
    op.drop_column("api_tokens", "parent_id")
    op.drop_column("api_tokens", "scopes")
