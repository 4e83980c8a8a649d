"""Initial schema: the 15 entities of the data model, API tokens and signing keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-27 10:15:34.419469
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "conversation_sessions",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("context_key", sa.String(length=200), nullable=False),
        sa.Column(
            "state",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "active_participants",
            sa.ARRAY(sa.UUID()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column(
            "last_message_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversation_sessions")),
        sa.UniqueConstraint("context_key", name=op.f("uq_conversation_sessions_context_key")),
    )
    op.create_index(
        op.f("ix_conversation_sessions_last_message_at"),
        "conversation_sessions",
        ["last_message_at"],
        unique=False,
    )
    op.create_table(
        "users",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column(
            "roles",
            sa.ARRAY(sa.Enum("operator", "engineer", "safety", "admin", name="role")),
            nullable=False,
        ),
        sa.Column("tailscale_id", sa.String(length=128), nullable=True),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "managed_by_manifest", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("cardinality(roles) > 0", name=op.f("ck_users_roles_not_empty")),
        sa.CheckConstraint(
            "length(trim(display_name)) > 0", name=op.f("ck_users_display_name_required")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("username", name=op.f("uq_users_username")),
    )
    op.create_table(
        "zones",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column(
            "hazard_level", sa.Enum("low", "medium", "high", name="hazard_level"), nullable=False
        ),
        sa.Column("requires_ppe", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "unifi_door_ids",
            sa.ARRAY(sa.String(length=128)),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_zones")),
        sa.UniqueConstraint("name", name=op.f("uq_zones_name")),
    )
    op.create_table(
        "access_policies",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("zone_id", sa.UUID(), nullable=False),
        sa.Column("intents", sa.ARRAY(sa.String(length=64)), nullable=False),
        sa.Column(
            "required_roles",
            sa.ARRAY(sa.Enum("operator", "engineer", "safety", "admin", name="role")),
            nullable=False,
        ),
        sa.Column("requires_dual_confirm", sa.Boolean(), nullable=False),
        sa.Column("requires_presence", sa.Boolean(), nullable=False),
        sa.Column(
            "pqe_checks",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "cardinality(required_roles) > 0",
            name=op.f("ck_access_policies_required_roles_not_empty"),
        ),
        sa.ForeignKeyConstraint(
            ["zone_id"],
            ["zones.id"],
            name=op.f("fk_access_policies_zone_id_zones"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_policies")),
        sa.UniqueConstraint("name", name=op.f("uq_access_policies_name")),
    )
    op.create_index(
        op.f("ix_access_policies_zone_id"), "access_policies", ["zone_id"], unique=False
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=100), server_default="cli", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_api_tokens_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )
    op.create_index(op.f("ix_api_tokens_user_id"), "api_tokens", ["user_id"], unique=False)
    op.create_table(
        "cad_jobs",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("conversation_id", sa.UUID(), nullable=True),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column(
            "policy_mode", sa.Enum("online", "offline", name="cad_policy_mode"), nullable=False
        ),
        sa.Column(
            "status",
            sa.Enum("queued", "running", "completed", "failed", name="cad_job_status"),
            server_default="queued",
            nullable=False,
        ),
        sa.Column("requested_by", sa.UUID(), nullable=True),
        sa.Column("parent_job_id", sa.UUID(), nullable=True),
        sa.Column(
            "details",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversation_sessions.id"],
            name=op.f("fk_cad_jobs_conversation_id_conversation_sessions"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["parent_job_id"], ["cad_jobs.id"], name=op.f("fk_cad_jobs_parent_job_id_cad_jobs")
        ),
        sa.ForeignKeyConstraint(
            ["requested_by"], ["users.id"], name=op.f("fk_cad_jobs_requested_by_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cad_jobs")),
    )
    op.create_index(
        op.f("ix_cad_jobs_conversation_id"), "cad_jobs", ["conversation_id"], unique=False
    )
    op.create_index(op.f("ix_cad_jobs_parent_job_id"), "cad_jobs", ["parent_job_id"], unique=False)
    op.create_index(op.f("ix_cad_jobs_requested_by"), "cad_jobs", ["requested_by"], unique=False)
    op.create_table(
        "devices",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("external_id", sa.String(length=128), nullable=False),
        sa.Column("integration", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column(
            "kind",
            sa.Enum("printer", "camera", "light", "door", "power", "sensor", name="device_kind"),
            nullable=False,
        ),
        sa.Column("zone_id", sa.UUID(), nullable=False),
        sa.Column(
            "capabilities",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "aliases",
            sa.ARRAY(sa.String(length=100)),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column(
            "connection",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "attributes",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "online_state",
            sa.Enum("online", "offline", "fault", name="online_state"),
            server_default="offline",
            nullable=False,
        ),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(["zone_id"], ["zones.id"], name=op.f("fk_devices_zone_id_zones")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_devices")),
        sa.UniqueConstraint(
            "integration", "external_id", name=op.f("uq_devices_integration_external_id")
        ),
    )
    op.create_index(op.f("ix_devices_zone_id"), "devices", ["zone_id"], unique=False)
    op.create_table(
        "routing_decisions",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("conversation_id", sa.UUID(), nullable=True),
        sa.Column("request_id", sa.UUID(), nullable=False),
        sa.Column("input_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "selected_tier",
            sa.Enum("local", "mcp", "frontier", name="routing_tier"),
            nullable=False,
        ),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column(
            "confidence_factors",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "cost_estimate",
            sa.Numeric(precision=14, scale=6),
            server_default=sa.text("0"),
            nullable=False,
        ),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("escalation_reason", sa.Text(), nullable=True),
        sa.Column("performed_by", sa.UUID(), nullable=True),
        sa.Column(
            "details",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "confidence >= 0 AND confidence <= 1",
            name=op.f("ck_routing_decisions_confidence_range"),
        ),
        sa.CheckConstraint(
            "cost_estimate >= 0", name=op.f("ck_routing_decisions_cost_not_negative")
        ),
        sa.CheckConstraint(
            "latency_ms >= 0", name=op.f("ck_routing_decisions_latency_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["performed_by"], ["users.id"], name=op.f("fk_routing_decisions_performed_by_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_routing_decisions")),
        sa.UniqueConstraint("request_id", name=op.f("uq_routing_decisions_request_id")),
    )
    op.create_index(
        op.f("ix_routing_decisions_conversation_id"),
        "routing_decisions",
        ["conversation_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_routing_decisions_input_hash"), "routing_decisions", ["input_hash"], unique=False
    )
    op.create_index(
        op.f("ix_routing_decisions_performed_by"),
        "routing_decisions",
        ["performed_by"],
        unique=False,
    )
    op.create_table(
        "user_keys",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_user_keys_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_keys")),
        sa.UniqueConstraint("user_id", "public_key", name=op.f("uq_user_keys_user_id_public_key")),
    )
    op.create_index(op.f("ix_user_keys_user_id"), "user_keys", ["user_id"], unique=False)
    op.create_table(
        "zone_presence",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("zone_id", sa.UUID(), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column(
            "source", sa.Enum("unifi", "manual", "override", name="presence_source"), nullable=False
        ),
        sa.Column(
            "status",
            sa.Enum("present", "unknown", "vacated", name="presence_status"),
            nullable=False,
        ),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_zone_presence_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["zone_id"],
            ["zones.id"],
            name=op.f("fk_zone_presence_zone_id_zones"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_zone_presence")),
    )
    op.create_index(
        "ix_zone_presence_lookup",
        "zone_presence",
        ["user_id", "zone_id", "observed_at"],
        unique=False,
    )
    op.create_index(op.f("ix_zone_presence_user_id"), "zone_presence", ["user_id"], unique=False)
    op.create_index(op.f("ix_zone_presence_zone_id"), "zone_presence", ["zone_id"], unique=False)
    op.create_table(
        "cad_artifacts",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("cad_job_id", sa.UUID(), nullable=False),
        sa.Column(
            "provider",
            sa.Enum(
                "zoo", "tripo", "cadquery", "freecad", "triposr", "instantmesh", name="cad_provider"
            ),
            nullable=False,
        ),
        sa.Column("artifact_key", sa.String(length=512), nullable=False),
        sa.Column(
            "artifact_type",
            sa.Enum("step", "dxf", "stl", "obj", "preview", name="artifact_type"),
            nullable=False,
        ),
        sa.Column("metadata", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("quality_score", sa.Float(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "metadata ?& array['bounding_box','material_hints','generation_params']",
            name=op.f("ck_cad_artifacts_metadata_required_keys"),
        ),
        sa.CheckConstraint(
            "quality_score IS NULL OR (quality_score >= 0 AND quality_score <= 1)",
            name=op.f("ck_cad_artifacts_quality_range"),
        ),
        sa.ForeignKeyConstraint(
            ["cad_job_id"], ["cad_jobs.id"], name=op.f("fk_cad_artifacts_cad_job_id_cad_jobs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cad_artifacts")),
        sa.UniqueConstraint("artifact_key", name=op.f("uq_cad_artifacts_artifact_key")),
    )
    op.create_index(
        op.f("ix_cad_artifacts_cad_job_id"), "cad_artifacts", ["cad_job_id"], unique=False
    )
    op.create_table(
        "safety_events",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column(
            "event_type",
            sa.Enum(
                "hazard_request", "unlock", "power_enable", "override", name="safety_event_type"
            ),
            nullable=False,
        ),
        sa.Column("device_id", sa.UUID(), nullable=True),
        sa.Column("zone_id", sa.UUID(), nullable=True),
        sa.Column("policy_id", sa.UUID(), nullable=True),
        sa.Column("initiated_by", sa.UUID(), nullable=False),
        sa.Column("approved_by", sa.UUID(), nullable=True),
        sa.Column("signature", sa.Text(), nullable=True),
        sa.Column("evidence_key", sa.String(length=512), nullable=True),
        sa.Column(
            "status",
            sa.Enum("pending", "approved", "denied", name="safety_status"),
            server_default="pending",
            nullable=False,
        ),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column(
            "details",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status <> 'approved' OR approved_by IS NOT NULL",
            name=op.f("ck_safety_events_approved_needs_approver"),
        ),
        sa.ForeignKeyConstraint(
            ["approved_by"], ["users.id"], name=op.f("fk_safety_events_approved_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_safety_events_device_id_devices")
        ),
        sa.ForeignKeyConstraint(
            ["initiated_by"], ["users.id"], name=op.f("fk_safety_events_initiated_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["policy_id"],
            ["access_policies.id"],
            name=op.f("fk_safety_events_policy_id_access_policies"),
        ),
        sa.ForeignKeyConstraint(
            ["zone_id"], ["zones.id"], name=op.f("fk_safety_events_zone_id_zones")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_safety_events")),
    )
    op.create_index(
        op.f("ix_safety_events_approved_by"), "safety_events", ["approved_by"], unique=False
    )
    op.create_index(
        op.f("ix_safety_events_device_id"), "safety_events", ["device_id"], unique=False
    )
    op.create_index(
        op.f("ix_safety_events_initiated_by"), "safety_events", ["initiated_by"], unique=False
    )
    op.create_index(
        op.f("ix_safety_events_policy_id"), "safety_events", ["policy_id"], unique=False
    )
    op.create_index(op.f("ix_safety_events_zone_id"), "safety_events", ["zone_id"], unique=False)
    op.create_table(
        "fabrication_jobs",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("device_id", sa.UUID(), nullable=False),
        sa.Column("cad_artifact_id", sa.UUID(), nullable=True),
        sa.Column("origin_command_id", sa.UUID(), nullable=True),
        sa.Column("gcode_path", sa.String(length=512), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "preparing",
                "printing",
                "paused",
                "completed",
                "failed",
                "aborted",
                name="fabrication_status",
            ),
            server_default="preparing",
            nullable=False,
        ),
        sa.Column(
            "details",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("requested_by", sa.UUID(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["cad_artifact_id"],
            ["cad_artifacts.id"],
            name=op.f("fk_fabrication_jobs_cad_artifact_id_cad_artifacts"),
        ),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_fabrication_jobs_device_id_devices")
        ),
        sa.ForeignKeyConstraint(
            ["requested_by"], ["users.id"], name=op.f("fk_fabrication_jobs_requested_by_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fabrication_jobs")),
    )
    op.create_index(
        op.f("ix_fabrication_jobs_cad_artifact_id"),
        "fabrication_jobs",
        ["cad_artifact_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_fabrication_jobs_device_id"), "fabrication_jobs", ["device_id"], unique=False
    )
    op.create_index(
        op.f("ix_fabrication_jobs_origin_command_id"),
        "fabrication_jobs",
        ["origin_command_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_fabrication_jobs_requested_by"), "fabrication_jobs", ["requested_by"], unique=False
    )
    op.create_table(
        "device_commands",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("device_id", sa.UUID(), nullable=False),
        sa.Column("conversation_id", sa.UUID(), nullable=True),
        sa.Column("fabrication_job_id", sa.UUID(), nullable=True),
        sa.Column("safety_event_id", sa.UUID(), nullable=True),
        sa.Column("intent", sa.String(length=64), nullable=False),
        sa.Column(
            "payload",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("requested_by", sa.UUID(), nullable=False),
        sa.Column("correlation_id", sa.String(length=128), nullable=True),
        sa.Column(
            "status",
            sa.Enum("pending", "sent", "acked", "failed", name="command_status"),
            server_default="pending",
            nullable=False,
        ),
        sa.Column(
            "status_history",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("ack_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversation_sessions.id"],
            name=op.f("fk_device_commands_conversation_id_conversation_sessions"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_device_commands_device_id_devices")
        ),
        sa.ForeignKeyConstraint(
            ["fabrication_job_id"],
            ["fabrication_jobs.id"],
            name=op.f("fk_device_commands_fabrication_job_id_fabrication_jobs"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["requested_by"], ["users.id"], name=op.f("fk_device_commands_requested_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["safety_event_id"],
            ["safety_events.id"],
            name=op.f("fk_device_commands_safety_event_id_safety_events"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_commands")),
        sa.UniqueConstraint(
            "requested_by",
            "correlation_id",
            name=op.f("uq_device_commands_requested_by_correlation_id"),
        ),
    )
    op.create_index(
        op.f("ix_device_commands_conversation_id"),
        "device_commands",
        ["conversation_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_device_commands_device_id"), "device_commands", ["device_id"], unique=False
    )
    op.create_index(
        op.f("ix_device_commands_fabrication_job_id"),
        "device_commands",
        ["fabrication_job_id"],
        unique=False,
    )
    op.create_index(
        "ix_device_commands_open",
        "device_commands",
        ["status"],
        unique=False,
        postgresql_where=sa.text("status IN ('pending','sent')"),
    )
    op.create_index(
        op.f("ix_device_commands_requested_by"), "device_commands", ["requested_by"], unique=False
    )
    op.create_index(
        op.f("ix_device_commands_safety_event_id"),
        "device_commands",
        ["safety_event_id"],
        unique=False,
    )
    op.create_table(
        "notifications",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column(
            "channel",
            sa.Enum("push", "email", "slack", "webhook", name="notification_channel"),
            nullable=False,
        ),
        sa.Column("recipient", sa.String(length=512), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "status",
            sa.Enum("queued", "sent", "failed", name="notification_status"),
            server_default="queued",
            nullable=False,
        ),
        sa.Column("related_job_id", sa.UUID(), nullable=True),
        sa.Column("related_safety_event_id", sa.UUID(), nullable=True),
        sa.Column("related_decision_id", sa.UUID(), nullable=True),
        sa.Column("requested_by", sa.UUID(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column(
            "metadata",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["related_decision_id"],
            ["routing_decisions.id"],
            name=op.f("fk_notifications_related_decision_id_routing_decisions"),
        ),
        sa.ForeignKeyConstraint(
            ["related_job_id"],
            ["fabrication_jobs.id"],
            name=op.f("fk_notifications_related_job_id_fabrication_jobs"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["related_safety_event_id"],
            ["safety_events.id"],
            name=op.f("fk_notifications_related_safety_event_id_safety_events"),
        ),
        sa.ForeignKeyConstraint(
            ["requested_by"], ["users.id"], name=op.f("fk_notifications_requested_by_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_notifications_idempotency_key")),
    )
    op.create_index(
        "ix_notifications_queued",
        "notifications",
        ["status"],
        unique=False,
        postgresql_where=sa.text("status = 'queued'"),
    )
    op.create_index(
        op.f("ix_notifications_related_decision_id"),
        "notifications",
        ["related_decision_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_notifications_related_job_id"), "notifications", ["related_job_id"], unique=False
    )
    op.create_index(
        op.f("ix_notifications_related_safety_event_id"),
        "notifications",
        ["related_safety_event_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_notifications_requested_by"), "notifications", ["requested_by"], unique=False
    )
    op.create_table(
        "print_monitor_events",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("fabrication_job_id", sa.UUID(), nullable=False),
        sa.Column(
            "event_type",
            sa.Enum(
                "first_layer_ok",
                "spaghetti_detected",
                "nozzle_clog",
                "completed",
                name="monitor_event_type",
            ),
            nullable=False,
        ),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("snapshot_key", sa.String(length=512), nullable=True),
        sa.Column(
            "details",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "occurred_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "event_type NOT IN ('spaghetti_detected','nozzle_clog') OR snapshot_key IS NOT NULL",
            name=op.f("ck_print_monitor_events_failure_needs_snapshot"),
        ),
        sa.CheckConstraint(
            "confidence >= 0 AND confidence <= 1",
            name=op.f("ck_print_monitor_events_confidence_range"),
        ),
        sa.ForeignKeyConstraint(
            ["fabrication_job_id"],
            ["fabrication_jobs.id"],
            name=op.f("fk_print_monitor_events_fabrication_job_id_fabrication_jobs"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_print_monitor_events")),
    )
    op.create_index(
        op.f("ix_print_monitor_events_fabrication_job_id"),
        "print_monitor_events",
        ["fabrication_job_id"],
        unique=False,
    )
    op.create_table(
        "telemetry_events",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("device_id", sa.UUID(), nullable=False),
        sa.Column("topic", sa.String(length=256), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "recorded_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("fabrication_job_id", sa.UUID(), nullable=True),
        sa.Column("conversation_id", sa.UUID(), nullable=True),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversation_sessions.id"],
            name=op.f("fk_telemetry_events_conversation_id_conversation_sessions"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_telemetry_events_device_id_devices")
        ),
        sa.ForeignKeyConstraint(
            ["fabrication_job_id"],
            ["fabrication_jobs.id"],
            name=op.f("fk_telemetry_events_fabrication_job_id_fabrication_jobs"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_telemetry_events")),
    )
    op.create_index(
        op.f("ix_telemetry_events_conversation_id"),
        "telemetry_events",
        ["conversation_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_telemetry_events_device_id"), "telemetry_events", ["device_id"], unique=False
    )
    op.create_index(
        "ix_telemetry_events_device_time",
        "telemetry_events",
        ["device_id", "recorded_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_telemetry_events_fabrication_job_id"),
        "telemetry_events",
        ["fabrication_job_id"],
        unique=False,
    )
    op.create_index(op.f("ix_telemetry_events_topic"), "telemetry_events", ["topic"], unique=False)
    op.create_index(
        "ix_telemetry_events_recorded_at", "telemetry_events", ["recorded_at"], unique=False
    )
    # fabrication_jobs and device_commands refer to each other; the second of the two
    # foreign keys can only be added once both tables exist.
    op.create_foreign_key(
        op.f("fk_fabrication_jobs_origin_command_id_device_commands"),
        "fabrication_jobs",
        "device_commands",
        ["origin_command_id"],
        ["id"],
        ondelete="SET NULL",
    )


def downgrade() -> None:
    op.drop_index("ix_telemetry_events_recorded_at", table_name="telemetry_events")
    op.drop_constraint(
        op.f("fk_fabrication_jobs_origin_command_id_device_commands"),
        "fabrication_jobs",
        type_="foreignkey",
    )
    op.drop_index(op.f("ix_telemetry_events_topic"), table_name="telemetry_events")
    op.drop_index(op.f("ix_telemetry_events_fabrication_job_id"), table_name="telemetry_events")
    op.drop_index("ix_telemetry_events_device_time", table_name="telemetry_events")
    op.drop_index(op.f("ix_telemetry_events_device_id"), table_name="telemetry_events")
    op.drop_index(op.f("ix_telemetry_events_conversation_id"), table_name="telemetry_events")
    op.drop_table("telemetry_events")
    op.drop_index(
        op.f("ix_print_monitor_events_fabrication_job_id"), table_name="print_monitor_events"
    )
    op.drop_table("print_monitor_events")
    op.drop_index(op.f("ix_notifications_requested_by"), table_name="notifications")
    op.drop_index(op.f("ix_notifications_related_safety_event_id"), table_name="notifications")
    op.drop_index(op.f("ix_notifications_related_job_id"), table_name="notifications")
    op.drop_index(op.f("ix_notifications_related_decision_id"), table_name="notifications")
    op.drop_index(
        "ix_notifications_queued",
        table_name="notifications",
        postgresql_where=sa.text("status = 'queued'"),
    )
    op.drop_table("notifications")
    op.drop_index(op.f("ix_device_commands_safety_event_id"), table_name="device_commands")
    op.drop_index(op.f("ix_device_commands_requested_by"), table_name="device_commands")
    op.drop_index(
        "ix_device_commands_open",
        table_name="device_commands",
        postgresql_where=sa.text("status IN ('pending','sent')"),
    )
    op.drop_index(op.f("ix_device_commands_fabrication_job_id"), table_name="device_commands")
    op.drop_index(op.f("ix_device_commands_device_id"), table_name="device_commands")
    op.drop_index(op.f("ix_device_commands_conversation_id"), table_name="device_commands")
    op.drop_table("device_commands")
    op.drop_index(op.f("ix_fabrication_jobs_requested_by"), table_name="fabrication_jobs")
    op.drop_index(op.f("ix_fabrication_jobs_origin_command_id"), table_name="fabrication_jobs")
    op.drop_index(op.f("ix_fabrication_jobs_device_id"), table_name="fabrication_jobs")
    op.drop_index(op.f("ix_fabrication_jobs_cad_artifact_id"), table_name="fabrication_jobs")
    op.drop_table("fabrication_jobs")
    op.drop_index(op.f("ix_safety_events_zone_id"), table_name="safety_events")
    op.drop_index(op.f("ix_safety_events_policy_id"), table_name="safety_events")
    op.drop_index(op.f("ix_safety_events_initiated_by"), table_name="safety_events")
    op.drop_index(op.f("ix_safety_events_device_id"), table_name="safety_events")
    op.drop_index(op.f("ix_safety_events_approved_by"), table_name="safety_events")
    op.drop_table("safety_events")
    op.drop_index(op.f("ix_cad_artifacts_cad_job_id"), table_name="cad_artifacts")
    op.drop_table("cad_artifacts")
    op.drop_index(op.f("ix_zone_presence_zone_id"), table_name="zone_presence")
    op.drop_index(op.f("ix_zone_presence_user_id"), table_name="zone_presence")
    op.drop_index("ix_zone_presence_lookup", table_name="zone_presence")
    op.drop_table("zone_presence")
    op.drop_index(op.f("ix_user_keys_user_id"), table_name="user_keys")
    op.drop_table("user_keys")
    op.drop_index(op.f("ix_routing_decisions_performed_by"), table_name="routing_decisions")
    op.drop_index(op.f("ix_routing_decisions_input_hash"), table_name="routing_decisions")
    op.drop_index(op.f("ix_routing_decisions_conversation_id"), table_name="routing_decisions")
    op.drop_table("routing_decisions")
    op.drop_index(op.f("ix_devices_zone_id"), table_name="devices")
    op.drop_table("devices")
    op.drop_index(op.f("ix_cad_jobs_requested_by"), table_name="cad_jobs")
    op.drop_index(op.f("ix_cad_jobs_parent_job_id"), table_name="cad_jobs")
    op.drop_index(op.f("ix_cad_jobs_conversation_id"), table_name="cad_jobs")
    op.drop_table("cad_jobs")
    op.drop_index(op.f("ix_api_tokens_user_id"), table_name="api_tokens")
    op.drop_table("api_tokens")
    op.drop_index(op.f("ix_access_policies_zone_id"), table_name="access_policies")
    op.drop_table("access_policies")
    op.drop_table("zones")
    op.drop_table("users")
    op.drop_index(
        op.f("ix_conversation_sessions_last_message_at"), table_name="conversation_sessions"
    )
    op.drop_table("conversation_sessions")
    for enum_name in (
        "role",
        "hazard_level",
        "presence_source",
        "presence_status",
        "device_kind",
        "online_state",
        "command_status",
        "routing_tier",
        "cad_policy_mode",
        "cad_job_status",
        "cad_provider",
        "artifact_type",
        "fabrication_status",
        "monitor_event_type",
        "safety_event_type",
        "safety_status",
        "notification_channel",
        "notification_status",
    ):
        op.execute(f"DROP TYPE IF EXISTS {enum_name}")
