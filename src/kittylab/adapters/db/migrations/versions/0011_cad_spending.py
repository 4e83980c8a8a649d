"""Online CAD spending (issue 15): ``cad_charges``, one row per paid provider call, held
while the call runs and settled (or released) after; counted with the routing decisions'
costs in each person's daily budget.

Revision ID: 0011
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cad_charges",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("cad_job_id", sa.UUID(), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=True),
        sa.Column(
            "provider",
            postgresql.ENUM(name="cad_provider", create_type=False),
            nullable=False,
        ),
        sa.Column("estimate_usd", sa.Numeric(14, 6), nullable=False),
        sa.Column("cost_usd", sa.Numeric(14, 6), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["cad_job_id"],
            ["cad_jobs.id"],
            name="fk_cad_charges_cad_job_id_cad_jobs",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_cad_charges_user_id_users"),
        sa.PrimaryKeyConstraint("id", name="pk_cad_charges"),
        sa.CheckConstraint("estimate_usd >= 0", name="ck_cad_charges_estimate_not_negative"),
        sa.CheckConstraint("cost_usd >= 0", name="ck_cad_charges_cost_not_negative"),
        sa.CheckConstraint(
            "status IN ('held', 'settled', 'released')", name="ck_cad_charges_status_known"
        ),
    )
    op.create_index("ix_cad_charges_cad_job_id", "cad_charges", ["cad_job_id"])
    op.create_index("ix_cad_charges_user_created", "cad_charges", ["user_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_cad_charges_user_created", table_name="cad_charges")
    op.drop_index("ix_cad_charges_cad_job_id", table_name="cad_charges")
    op.drop_table("cad_charges")
