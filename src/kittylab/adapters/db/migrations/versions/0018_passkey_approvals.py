"""A console passkey as an approval key (issue 17): ``user_keys.passkey_id`` links an
approver key to the passkey whose WebAuthn assertions sign approvals. Such a key is
enrolled by its owner and confirmed by a second safety person like any other.

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("user_keys", sa.Column("passkey_id", sa.UUID(), nullable=True))
    op.create_foreign_key(
        "fk_user_keys_passkey_id_passkeys",
        "user_keys",
        "passkeys",
        ["passkey_id"],
        ["id"],
        ondelete="CASCADE",
    )
    op.create_unique_constraint("uq_user_keys_passkey_id", "user_keys", ["passkey_id"])


def downgrade() -> None:
    op.drop_constraint("uq_user_keys_passkey_id", "user_keys", type_="unique")
    op.drop_constraint("fk_user_keys_passkey_id_passkeys", "user_keys", type_="foreignkey")
    op.drop_column("user_keys", "passkey_id")
