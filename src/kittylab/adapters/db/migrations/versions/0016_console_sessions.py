"""The web console's sign-in (issue 17): one-time enrolment links (``console_invites``),
passkeys (``passkeys``), WebAuthn ceremony challenges (``webauthn_challenges``) and
signed-in browsers (``web_sessions``).

Revision ID: 0016
Revises: 0014
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0016"
down_revision = "0014"
branch_labels = None
depends_on = None


def _created() -> sa.Column[datetime]:
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "console_invites",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        _created(),
        sa.Column("created_by", sa.UUID(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_console_invites_user_id_users", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name="fk_console_invites_created_by_users"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_console_invites"),
        sa.UniqueConstraint("token_hash", name="uq_console_invites_token_hash"),
    )
    op.create_index("ix_console_invites_user_id", "console_invites", ["user_id"])
    op.create_index("ix_console_invites_created_by", "console_invites", ["created_by"])

    op.create_table(
        "passkeys",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("credential_id", sa.String(1400), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("sign_count", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column(
            "transports",
            postgresql.ARRAY(sa.String(32)),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column("invite_id", sa.UUID(), nullable=True),
        _created(),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_passkeys_user_id_users", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["invite_id"],
            ["console_invites.id"],
            name="fk_passkeys_invite_id_console_invites",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_passkeys"),
        sa.UniqueConstraint("credential_id", name="uq_passkeys_credential_id"),
    )
    op.create_index("ix_passkeys_user_id", "passkeys", ["user_id"])
    op.create_index("ix_passkeys_invite_id", "passkeys", ["invite_id"])

    op.create_table(
        "webauthn_challenges",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("challenge", sa.String(128), nullable=False),
        sa.Column("invite_id", sa.UUID(), nullable=True),
        _created(),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["invite_id"],
            ["console_invites.id"],
            name="fk_webauthn_challenges_invite_id_console_invites",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_webauthn_challenges"),
        sa.CheckConstraint(
            "purpose IN ('register', 'authenticate')", name="ck_webauthn_challenges_purpose_known"
        ),
    )
    op.create_index("ix_webauthn_challenges_invite_id", "webauthn_challenges", ["invite_id"])

    op.create_table(
        "web_sessions",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("passkey_id", sa.UUID(), nullable=True),
        sa.Column("user_agent", sa.String(200), server_default="", nullable=False),
        sa.Column("address", sa.String(64), nullable=True),
        _created(),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_web_sessions_user_id_users", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["passkey_id"],
            ["passkeys.id"],
            name="fk_web_sessions_passkey_id_passkeys",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_web_sessions"),
        sa.UniqueConstraint("token_hash", name="uq_web_sessions_token_hash"),
    )
    op.create_index("ix_web_sessions_user_id", "web_sessions", ["user_id"])
    op.create_index("ix_web_sessions_passkey_id", "web_sessions", ["passkey_id"])


def downgrade() -> None:
    op.drop_table("web_sessions")
    op.drop_table("webauthn_challenges")
    op.drop_table("passkeys")
    op.drop_table("console_invites")
