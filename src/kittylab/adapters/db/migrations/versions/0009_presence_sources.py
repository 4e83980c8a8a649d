"""Presence you can trust (issue 13): the presence source ``confirmed`` (a check-in
confirmed by someone already present) and ``zones.presence_sources`` (which sources count
in a zone; NULL: the hazard level's default).

Revision ID: 0009
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # PostgreSQL 12+ adds an enum value inside a transaction; it is not used in this one.
    op.execute("ALTER TYPE presence_source ADD VALUE IF NOT EXISTS 'confirmed'")
    op.add_column("zones", sa.Column("presence_sources", sa.ARRAY(sa.String(16)), nullable=True))


def downgrade() -> None:
    op.drop_column("zones", "presence_sources")
    # An enum value cannot be dropped: the type is rebuilt without it, and a confirmed
    # check-in becomes the manual check-in it confirmed.
    op.execute("ALTER TYPE presence_source RENAME TO presence_source_old")
    op.execute("CREATE TYPE presence_source AS ENUM ('unifi', 'manual', 'override')")
    op.execute(
        "ALTER TABLE zone_presence ALTER COLUMN source TYPE presence_source USING "
        "(CASE source::text WHEN 'confirmed' THEN 'manual' ELSE source::text END)"
        "::presence_source"
    )
    op.execute("DROP TYPE presence_source_old")
