"""The safety workflow: signed approvals (a nonce used once), lockout/tagout, the
hash-chained audit log (append-only, like routing decisions), the UniFi Access
identity of a user, and whose presence an access policy requires.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UUID = postgresql.UUID(as_uuid=True)
TS = sa.DateTime(timezone=True)
EMPTY_JSON = sa.text("'{}'::jsonb")


def upgrade() -> None:
    op.add_column("users", sa.Column("unifi_user_id", sa.String(128), nullable=True))
    op.add_column(
        "access_policies",
        sa.Column("presence_of", sa.String(16), server_default="initiator", nullable=False),
    )
    op.create_check_constraint(
        op.f("ck_access_policies_presence_of_known"),
        "access_policies",
        "presence_of IN ('initiator', 'approver')",
    )
    op.create_unique_constraint(op.f("uq_users_unifi_user_id"), "users", ["unifi_user_id"])

    op.create_table(
        "safety_approvals",
        sa.Column("id", UUID, nullable=False),
        sa.Column("event_id", UUID, nullable=False),
        sa.Column("approver_id", UUID, nullable=False),
        sa.Column("key_id", UUID, nullable=False),
        sa.Column("nonce", sa.String(128), nullable=False),
        sa.Column("signed_payload", sa.Text(), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.Column("attestations", postgresql.JSONB(), server_default=EMPTY_JSON, nullable=False),
        sa.Column("created_at", TS, server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["safety_events.id"],
            name=op.f("fk_safety_approvals_event_id_safety_events"),
        ),
        sa.ForeignKeyConstraint(
            ["approver_id"], ["users.id"], name=op.f("fk_safety_approvals_approver_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["key_id"], ["user_keys.id"], name=op.f("fk_safety_approvals_key_id_user_keys")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_safety_approvals")),
        sa.UniqueConstraint("nonce", name=op.f("uq_safety_approvals_nonce")),
        sa.UniqueConstraint(
            "event_id", "approver_id", name=op.f("uq_safety_approvals_event_id_approver_id")
        ),
    )
    for column in ("event_id", "approver_id", "key_id"):
        op.create_index(op.f(f"ix_safety_approvals_{column}"), "safety_approvals", [column])

    op.create_table(
        "device_locks",
        sa.Column("id", UUID, nullable=False),
        sa.Column("device_id", UUID, nullable=False),
        sa.Column("owner_id", UUID, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("placed_at", TS, server_default=sa.func.now(), nullable=False),
        sa.Column("removed_at", TS, nullable=True),
        sa.Column("removed_by", UUID, nullable=True),
        sa.Column("override_event_id", UUID, nullable=True),
        sa.CheckConstraint(
            "length(trim(reason)) > 0", name=op.f("ck_device_locks_reason_required")
        ),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_device_locks_device_id_devices")
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_device_locks_owner_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["removed_by"], ["users.id"], name=op.f("fk_device_locks_removed_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["override_event_id"],
            ["safety_events.id"],
            name=op.f("fk_device_locks_override_event_id_safety_events"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_locks")),
    )
    for column in ("device_id", "owner_id", "removed_by", "override_event_id"):
        op.create_index(op.f(f"ix_device_locks_{column}"), "device_locks", [column])
    op.create_index(
        "uq_device_locks_active",
        "device_locks",
        ["device_id", "owner_id"],
        unique=True,
        postgresql_where=sa.text("removed_at IS NULL"),
    )

    op.create_table(
        "audit_log",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("occurred_at", TS, nullable=False),
        sa.Column("actor_id", UUID, nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("subject_type", sa.String(64), nullable=True),
        sa.Column("subject_id", sa.String(128), nullable=True),
        sa.Column("details", postgresql.JSONB(), server_default=EMPTY_JSON, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("entry_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_log")),
        sa.UniqueConstraint("entry_hash", name=op.f("uq_audit_log_entry_hash")),
    )
    op.create_index(op.f("ix_audit_log_action"), "audit_log", ["action"])
    op.create_index(op.f("ix_audit_log_subject_id"), "audit_log", ["subject_id"])
    # The chain makes tampering visible; the trigger makes it take a superuser.
    op.execute(
        """
        CREATE TRIGGER audit_log_append_only
        BEFORE UPDATE OR DELETE ON audit_log
        FOR EACH ROW EXECUTE FUNCTION kittylab_refuse_change();
        """
    )
    # TRUNCATE fires no row trigger; without this it would empty the chain silently.
    op.execute(
        """
        CREATE TRIGGER audit_log_no_truncate
        BEFORE TRUNCATE ON audit_log
        FOR EACH STATEMENT EXECUTE FUNCTION kittylab_refuse_change();
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log")
    op.execute("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
    op.drop_table("audit_log")
    op.drop_table("device_locks")
    op.drop_table("safety_approvals")
    op.drop_constraint(
        op.f("ck_access_policies_presence_of_known"), "access_policies", type_="check"
    )
    op.drop_column("access_policies", "presence_of")
    op.drop_constraint(op.f("uq_users_unifi_user_id"), "users", type_="unique")
    op.drop_column("users", "unifi_user_id")
