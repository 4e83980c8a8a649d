"""Routing decisions become append-only; the procrastinate job tables are created.

procrastinate ships its full schema for fresh installs and separate migration files for
upgrades. This revision installs the schema of whichever procrastinate is installed (the
pinned one) and records that version in ``kittylab_component_versions``. A later revision
that upgrades procrastinate applies its migration files only where the recorded version is
older, so fresh and upgraded databases end up identical.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from procrastinate import __version__ as procrastinate_version
from procrastinate.schema import SchemaManager

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Decisions are audit records: the database itself refuses edits and deletions, so no
    # code path (or hurried operator with psql) can rewrite the cost history.
    op.execute(
        """
        CREATE FUNCTION kittylab_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '% is append-only', TG_TABLE_NAME
                USING ERRCODE = 'integrity_constraint_violation';
        END $$;
        """
    )
    op.execute(
        """
        CREATE TRIGGER routing_decisions_append_only
        BEFORE UPDATE OR DELETE ON routing_decisions
        FOR EACH ROW EXECUTE FUNCTION kittylab_refuse_change();
        """
    )
    # The job queue lives in the same database, so a job and the record it works on share
    # backups and never drift apart. The schema is the one of the pinned procrastinate.
    op.execute(SchemaManager.get_schema())
    versions = op.create_table(
        "kittylab_component_versions",
        sa.Column("component", sa.String(64), primary_key=True),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("installed_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
    )
    op.bulk_insert(versions, [{"component": "procrastinate", "version": procrastinate_version}])


def downgrade() -> None:
    op.drop_table("kittylab_component_versions")
    op.execute("DROP TRIGGER IF EXISTS routing_decisions_append_only ON routing_decisions")
    op.execute("DROP FUNCTION IF EXISTS kittylab_refuse_change()")
    for table in (
        "procrastinate_events",
        "procrastinate_periodic_defers",
        "procrastinate_jobs",
        "procrastinate_workers",
    ):
        op.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
    op.execute(
        "DO $$ DECLARE r record; BEGIN "
        "FOR r IN SELECT oid::regprocedure AS f FROM pg_proc WHERE proname LIKE 'procrastinate%' "
        "LOOP EXECUTE 'DROP FUNCTION IF EXISTS ' || r.f || ' CASCADE'; END LOOP; "
        "FOR r IN SELECT typname FROM pg_type WHERE typname LIKE 'procrastinate%' AND typtype IN ('e', 'c') "
        "LOOP EXECUTE 'DROP TYPE IF EXISTS ' || r.typname || ' CASCADE'; END LOOP; END $$"
    )
