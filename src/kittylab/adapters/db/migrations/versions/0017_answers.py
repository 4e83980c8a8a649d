"""A conversation that answers (issue 16): the routing tier ``cache``, so a question
answered from the answer cache is recorded as a cache hit, not as the local tier.

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # PostgreSQL 12+ adds an enum value inside a transaction; it is not used in this one.
    op.execute("ALTER TYPE routing_tier ADD VALUE IF NOT EXISTS 'cache'")


def downgrade() -> None:
    # An enum value cannot be dropped: the type is rebuilt without it, and the cache hits
    # become local, as they were recorded before this revision. (Rewriting the column's
    # type fires no row trigger, so the append-only log's trigger does not object.)
    op.execute("ALTER TYPE routing_tier RENAME TO routing_tier_old")
    op.execute("CREATE TYPE routing_tier AS ENUM ('local', 'mcp', 'frontier')")
    op.execute(
        "ALTER TABLE routing_decisions ALTER COLUMN selected_tier TYPE routing_tier USING "
        "(CASE selected_tier::text WHEN 'cache' THEN 'local' ELSE selected_tier::text END)"
        "::routing_tier"
    )
    op.execute("DROP TYPE routing_tier_old")
