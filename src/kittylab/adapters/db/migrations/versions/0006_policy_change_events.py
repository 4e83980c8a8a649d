"""Safety events of type ``policy_change``: a lab change over the API that weakens safety,
held for a second person (issue 13).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_OLD_VALUES = ("hazard_request", "unlock", "power_enable", "override")


def upgrade() -> None:
    # Allowed in a transaction since PostgreSQL 12; the value is not used in this one.
    op.execute("ALTER TYPE safety_event_type ADD VALUE IF NOT EXISTS 'policy_change'")


def downgrade() -> None:
    # PostgreSQL cannot drop an enum value: the type is rebuilt without it. Held lab
    # changes become ``override`` events, which need the strictest approvals; compared
    # as text so this runs even in the transaction that added the value.
    op.execute(
        "UPDATE safety_events SET event_type = 'override' WHERE event_type::text = 'policy_change'"
    )
    op.execute("ALTER TYPE safety_event_type RENAME TO safety_event_type_0006")
    values = ", ".join(f"'{v}'" for v in _OLD_VALUES)
    op.execute(f"CREATE TYPE safety_event_type AS ENUM ({values})")
    op.execute(
        "ALTER TABLE safety_events ALTER COLUMN event_type TYPE safety_event_type "
        "USING event_type::text::safety_event_type"
    )
    op.execute("DROP TYPE safety_event_type_0006")
