"""Indexes for the console's operations view and CAD studio (issue 18): their summaries
are SQL aggregates over a time window, read from indexes rather than whole tables.

- ``routing_decisions (created_at)`` covering tier, latency, cost and person: the routing
  summary per tier and per day reads the window from the index alone;
- ``device_commands (created_at)`` covering status: commands by outcome per day;
- ``print_monitor_events (occurred_at)`` covering the type: alerts by kind;
- ``cad_charges (created_at)``: the day's spend of everyone together (the per-person
  index leads with the person);
- ``cad_jobs (created_at)``: the studio's newest parts;
- ``procrastinate_events (at)``: background jobs finished in the window (procrastinate's
  own schema indexes events by job only).

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_routing_decisions_created_at",
        "routing_decisions",
        ["created_at"],
        postgresql_include=["selected_tier", "latency_ms", "cost_estimate", "performed_by"],
    )
    op.create_index(
        "ix_device_commands_created_at",
        "device_commands",
        ["created_at"],
        postgresql_include=["status"],
    )
    op.create_index(
        "ix_print_monitor_events_occurred_at",
        "print_monitor_events",
        ["occurred_at"],
        postgresql_include=["event_type"],
    )
    op.create_index("ix_cad_charges_created_at", "cad_charges", ["created_at"])
    op.create_index("ix_cad_jobs_created_at", "cad_jobs", ["created_at"])
    op.execute("CREATE INDEX ix_kittylab_procrastinate_events_at ON procrastinate_events (at)")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_kittylab_procrastinate_events_at")
    op.drop_index("ix_cad_jobs_created_at", table_name="cad_jobs")
    op.drop_index("ix_cad_charges_created_at", table_name="cad_charges")
    op.drop_index("ix_print_monitor_events_occurred_at", table_name="print_monitor_events")
    op.drop_index("ix_device_commands_created_at", table_name="device_commands")
    op.drop_index("ix_routing_decisions_created_at", table_name="routing_decisions")
