"""PostgreSQL tables for the 15 entities of the data model, plus the auth tables.

Names and enum values follow ``shared/seed/data-model.md``. Primary keys are time-ordered
UUIDs (v7), so ordering by id orders by creation; cursor pagination relies on it.
"""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy import Enum as SAEnum
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import UUID as PGUUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from kittylab.domain.clock import uuid7
from kittylab.domain.enums import (
    ArtifactType,
    CADJobStatus,
    CADPolicyMode,
    CADProvider,
    CommandStatus,
    DeviceKind,
    FabricationStatus,
    HazardLevel,
    MonitorEventType,
    NotificationChannel,
    NotificationStatus,
    OnlineState,
    PresenceSource,
    PresenceStatus,
    Role,
    SafetyEventType,
    SafetyStatus,
    TerminalStatus,
    Tier,
)

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def pg_enum(cls: type[enum.Enum], name: str) -> SAEnum:
    return SAEnum(cls, name=name, values_callable=lambda e: [m.value for m in e])


ROLE = pg_enum(Role, "role")
TS = DateTime(timezone=True)


def pk() -> Mapped[UUID]:
    return mapped_column(PGUUID(as_uuid=True), primary_key=True, default=uuid7)


def created() -> Mapped[datetime]:
    return mapped_column(TS, nullable=False, server_default=func.now())


def fk(target: str, *, nullable: bool, ondelete: str | None = None) -> Mapped[Any]:
    return mapped_column(
        PGUUID(as_uuid=True), ForeignKey(target, ondelete=ondelete), nullable=nullable, index=True
    )


def jsonb(default: str = "{}") -> Mapped[dict[str, Any]]:
    return mapped_column(JSONB, nullable=False, server_default=text(f"'{default}'::jsonb"))


class User(Base):
    __tablename__ = "users"
    id: Mapped[UUID] = pk()
    username: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    display_name: Mapped[str] = mapped_column(String(200), nullable=False)
    email: Mapped[str | None] = mapped_column(String(320))
    roles: Mapped[list[Role]] = mapped_column(ARRAY(ROLE), nullable=False)
    tailscale_id: Mapped[str | None] = mapped_column(String(128))
    # The UniFi Access user id whose door events check this person in.
    unifi_user_id: Mapped[str | None] = mapped_column(String(128), unique=True)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("true"))
    # True for people declared in the lab manifest: only they are deactivated when the
    # manifest drops them; people added through the API or CLI are left alone.
    managed_by_manifest: Mapped[bool] = mapped_column(
        Boolean, nullable=False, server_default=text("false")
    )
    created_at: Mapped[datetime] = created()
    __table_args__ = (
        CheckConstraint("cardinality(roles) > 0", name="roles_not_empty"),
        CheckConstraint("length(trim(display_name)) > 0", name="display_name_required"),
    )


class ApiToken(Base):
    """A bearer token. Only the SHA-256 of the token is stored."""

    __tablename__ = "api_tokens"
    id: Mapped[UUID] = pk()
    user_id: Mapped[UUID] = fk("users.id", nullable=False, ondelete="CASCADE")
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    label: Mapped[str] = mapped_column(String(100), nullable=False, server_default="cli")
    created_at: Mapped[datetime] = created()
    last_used_at: Mapped[datetime | None] = mapped_column(TS)
    revoked_at: Mapped[datetime | None] = mapped_column(TS)
    expires_at: Mapped[datetime | None] = mapped_column(TS)  # None: never (issue 11)
    # Issue 13, separation of duties. A machine token reaches only its scopes' endpoints
    # (``domain.machine_scopes``); none: a person's token. ``parent_id``: the token that
    # minted this one over the API; revoking a token revokes what it minted.
    scopes: Mapped[list[str]] = mapped_column(
        ARRAY(String(32)), nullable=False, server_default=text("'{}'")
    )
    parent_id: Mapped[UUID | None] = fk("api_tokens.id", nullable=True, ondelete="CASCADE")


class UserKey(Base):
    """A public key an approver signs with (Ed25519 or OpenSSH, including FIDO2)."""

    __tablename__ = "user_keys"
    id: Mapped[UUID] = pk()
    user_id: Mapped[UUID] = fk("users.id", nullable=False, ondelete="CASCADE")
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    public_key: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = created()
    revoked_at: Mapped[datetime | None] = mapped_column(TS)
    # Issue 13: a key enrolled over the API signs nothing until a second person with the
    # safety role confirms it. Keys from the host CLI and the manifest are confirmed.
    awaiting_confirmation: Mapped[bool] = mapped_column(
        Boolean, nullable=False, server_default=text("false")
    )
    confirmed_by: Mapped[UUID | None] = fk("users.id", nullable=True)
    confirmed_at: Mapped[datetime | None] = mapped_column(TS)
    # Issue 17: a console passkey used to approve. Its public key stays in ``passkeys``;
    # ``public_key`` then holds ``webauthn:<credential id>`` (safety/passkey_approvals.py).
    passkey_id: Mapped[UUID | None] = mapped_column(
        PGUUID(as_uuid=True),
        ForeignKey("passkeys.id", ondelete="CASCADE"),
        nullable=True,
        unique=True,
    )
    __table_args__ = (UniqueConstraint("user_id", "public_key"),)


class KeyChallenge(Base):
    """A challenge an approver signs to prove they hold the key they enrol (issue 13):
    random, short-lived, bound to one person, used once."""

    __tablename__ = "key_challenges"
    id: Mapped[UUID] = pk()
    user_id: Mapped[UUID] = fk("users.id", nullable=False, ondelete="CASCADE")
    challenge: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = created()
    expires_at: Mapped[datetime] = mapped_column(TS, nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(TS)


class RoleGrant(Base):
    """A grant of the safety or admin role asked for over the API (issue 13): the role is
    added only when a second person confirms it (``domain.duties``)."""

    __tablename__ = "role_grants"
    id: Mapped[UUID] = pk()
    user_id: Mapped[UUID] = fk("users.id", nullable=False, ondelete="CASCADE")
    role: Mapped[Role] = mapped_column(ROLE, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, server_default="pending")
    requested_by: Mapped[UUID] = fk("users.id", nullable=False)
    created_at: Mapped[datetime] = created()
    decided_by: Mapped[UUID | None] = fk("users.id", nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(TS)
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'granted', 'refused')", name="status_known"),
        # One open request per person and role.
        Index(
            "uq_role_grants_pending",
            "user_id",
            "role",
            unique=True,
            postgresql_where=text("status = 'pending'"),
        ),
    )


class Zone(Base):
    __tablename__ = "zones"
    id: Mapped[UUID] = pk()
    name: Mapped[str] = mapped_column(String(100), nullable=False, unique=True)
    hazard_level: Mapped[HazardLevel] = mapped_column(
        pg_enum(HazardLevel, "hazard_level"), nullable=False
    )
    requires_ppe: Mapped[bool] = mapped_column(
        Boolean, nullable=False, server_default=text("false")
    )
    unifi_door_ids: Mapped[list[str]] = mapped_column(
        ARRAY(String(128)), nullable=False, server_default=text("'{}'")
    )
    # Extension (issue 13): the presence sources that count here; NULL: the hazard level's
    # default (``domain.zones.DEFAULT_PRESENCE_SOURCES``).
    presence_sources: Mapped[list[str] | None] = mapped_column(ARRAY(String(16)), nullable=True)
    created_at: Mapped[datetime] = created()


class ZonePresence(Base):
    __tablename__ = "zone_presence"
    id: Mapped[UUID] = pk()
    zone_id: Mapped[UUID] = fk("zones.id", nullable=False, ondelete="CASCADE")
    user_id: Mapped[UUID] = fk("users.id", nullable=False, ondelete="CASCADE")
    source: Mapped[PresenceSource] = mapped_column(
        pg_enum(PresenceSource, "presence_source"), nullable=False
    )
    status: Mapped[PresenceStatus] = mapped_column(
        pg_enum(PresenceStatus, "presence_status"), nullable=False
    )
    observed_at: Mapped[datetime] = mapped_column(TS, nullable=False)
    __table_args__ = (Index("ix_zone_presence_lookup", "user_id", "zone_id", "observed_at"),)


class Device(Base):
    __tablename__ = "devices"
    id: Mapped[UUID] = pk()
    external_id: Mapped[str] = mapped_column(String(128), nullable=False)
    integration: Mapped[str] = mapped_column(String(64), nullable=False)
    display_name: Mapped[str] = mapped_column(String(200), nullable=False)
    kind: Mapped[DeviceKind] = mapped_column(pg_enum(DeviceKind, "device_kind"), nullable=False)
    zone_id: Mapped[UUID] = fk("zones.id", nullable=False)
    capabilities: Mapped[dict[str, Any]] = jsonb()
    aliases: Mapped[list[str]] = mapped_column(
        ARRAY(String(100)), nullable=False, server_default=text("'{}'")
    )
    connection: Mapped[dict[str, Any]] = jsonb()
    attributes: Mapped[dict[str, Any]] = jsonb()
    online_state: Mapped[OnlineState] = mapped_column(
        pg_enum(OnlineState, "online_state"), nullable=False, server_default="offline"
    )
    last_seen: Mapped[datetime | None] = mapped_column(TS)
    retired_at: Mapped[datetime | None] = mapped_column(TS)
    created_at: Mapped[datetime] = created()
    __table_args__ = (UniqueConstraint("integration", "external_id"),)


class ConversationSession(Base):
    __tablename__ = "conversation_sessions"
    id: Mapped[UUID] = pk()
    context_key: Mapped[str] = mapped_column(String(200), nullable=False, unique=True)
    state: Mapped[dict[str, Any]] = jsonb()
    active_participants: Mapped[list[UUID]] = mapped_column(
        ARRAY(PGUUID(as_uuid=True)), nullable=False, server_default=text("'{}'")
    )
    last_message_at: Mapped[datetime] = mapped_column(
        TS, nullable=False, server_default=func.now(), index=True
    )
    created_at: Mapped[datetime] = created()


class DeviceCommand(Base):
    __tablename__ = "device_commands"
    id: Mapped[UUID] = pk()
    device_id: Mapped[UUID] = fk("devices.id", nullable=False)
    conversation_id: Mapped[UUID | None] = fk(
        "conversation_sessions.id", nullable=True, ondelete="SET NULL"
    )
    fabrication_job_id: Mapped[UUID | None] = fk(
        "fabrication_jobs.id", nullable=True, ondelete="SET NULL"
    )
    safety_event_id: Mapped[UUID | None] = fk("safety_events.id", nullable=True)
    intent: Mapped[str] = mapped_column(String(64), nullable=False)
    payload: Mapped[dict[str, Any]] = jsonb()
    requested_by: Mapped[UUID] = fk("users.id", nullable=False)
    correlation_id: Mapped[str | None] = mapped_column(String(128))
    status: Mapped[CommandStatus] = mapped_column(
        pg_enum(CommandStatus, "command_status"), nullable=False, server_default="pending"
    )
    status_history: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, nullable=False, server_default=text("'[]'::jsonb")
    )
    failure_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created()
    ack_at: Mapped[datetime | None] = mapped_column(TS)
    __table_args__ = (
        # A retried request with the same correlation id is the same command.
        UniqueConstraint("requested_by", "correlation_id"),
        Index(
            "ix_device_commands_open",
            "status",
            postgresql_where=text("status IN ('pending','sent')"),
        ),
        # The operations view's commands by outcome per day (issue 18).
        Index("ix_device_commands_created_at", "created_at", postgresql_include=["status"]),
    )


class TelemetryEvent(Base):
    __tablename__ = "telemetry_events"
    id: Mapped[UUID] = pk()
    device_id: Mapped[UUID] = fk("devices.id", nullable=False)
    topic: Mapped[str] = mapped_column(String(256), nullable=False, index=True)
    payload: Mapped[Any] = mapped_column(JSONB, nullable=False)
    recorded_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    fabrication_job_id: Mapped[UUID | None] = fk(
        "fabrication_jobs.id", nullable=True, ondelete="SET NULL"
    )
    conversation_id: Mapped[UUID | None] = fk(
        "conversation_sessions.id", nullable=True, ondelete="SET NULL"
    )
    __table_args__ = (
        Index("ix_telemetry_events_device_time", "device_id", "recorded_at"),
        # Retention deletes by age across all devices.
        Index("ix_telemetry_events_recorded_at", "recorded_at"),
    )


class RoutingDecision(Base):
    """Append-only (a trigger refuses UPDATE and DELETE). ``conversation_id`` deliberately
    has no foreign key: sessions expire, but cost and audit records must outlive them."""

    __tablename__ = "routing_decisions"
    id: Mapped[UUID] = pk()
    conversation_id: Mapped[UUID | None] = mapped_column(PGUUID(as_uuid=True), index=True)
    request_id: Mapped[UUID] = mapped_column(PGUUID(as_uuid=True), nullable=False, unique=True)
    input_hash: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    selected_tier: Mapped[Tier] = mapped_column(pg_enum(Tier, "routing_tier"), nullable=False)
    confidence: Mapped[float] = mapped_column(Float, nullable=False)
    confidence_factors: Mapped[dict[str, Any]] = jsonb()
    cost_estimate: Mapped[Decimal] = mapped_column(
        Numeric(14, 6), nullable=False, server_default=text("0")
    )
    latency_ms: Mapped[int] = mapped_column(Integer, nullable=False)
    escalation_reason: Mapped[str | None] = mapped_column(Text)
    performed_by: Mapped[UUID | None] = fk("users.id", nullable=True)
    details: Mapped[dict[str, Any]] = jsonb()
    created_at: Mapped[datetime] = created()
    __table_args__ = (
        CheckConstraint("confidence >= 0 AND confidence <= 1", name="confidence_range"),
        CheckConstraint("cost_estimate >= 0", name="cost_not_negative"),
        CheckConstraint("latency_ms >= 0", name="latency_not_negative"),
        # The routing summaries read a time window from this index alone (issue 18).
        Index(
            "ix_routing_decisions_created_at",
            "created_at",
            postgresql_include=["selected_tier", "latency_ms", "cost_estimate", "performed_by"],
        ),
    )


class CADJob(Base):
    __tablename__ = "cad_jobs"
    id: Mapped[UUID] = pk()
    conversation_id: Mapped[UUID | None] = fk(
        "conversation_sessions.id", nullable=True, ondelete="SET NULL"
    )
    prompt: Mapped[str] = mapped_column(Text, nullable=False)
    policy_mode: Mapped[CADPolicyMode] = mapped_column(
        pg_enum(CADPolicyMode, "cad_policy_mode"), nullable=False
    )
    status: Mapped[CADJobStatus] = mapped_column(
        pg_enum(CADJobStatus, "cad_job_status"), nullable=False, server_default="queued"
    )
    requested_by: Mapped[UUID | None] = fk("users.id", nullable=True)
    parent_job_id: Mapped[UUID | None] = fk("cad_jobs.id", nullable=True)
    details: Mapped[dict[str, Any]] = jsonb()
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created()
    completed_at: Mapped[datetime | None] = mapped_column(TS)
    __table_args__ = (Index("ix_cad_jobs_created_at", "created_at"),)  # the newest parts


class CADCharge(Base):
    """One paid online CAD provider call (issue 15): ``held`` at its estimate while the call
    runs, then ``settled`` (the cost stands) or ``released`` (nothing was spent). Held and
    settled charges count in the person's daily budget with the routing decisions' costs."""

    __tablename__ = "cad_charges"
    id: Mapped[UUID] = pk()
    cad_job_id: Mapped[UUID] = fk("cad_jobs.id", nullable=False, ondelete="CASCADE")
    user_id: Mapped[UUID | None] = mapped_column(
        PGUUID(as_uuid=True), ForeignKey("users.id"), nullable=True
    )
    provider: Mapped[CADProvider] = mapped_column(
        pg_enum(CADProvider, "cad_provider"), nullable=False
    )
    estimate_usd: Mapped[Decimal] = mapped_column(Numeric(14, 6), nullable=False)
    cost_usd: Mapped[Decimal] = mapped_column(Numeric(14, 6), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    created_at: Mapped[datetime] = created()
    settled_at: Mapped[datetime | None] = mapped_column(TS)
    __table_args__ = (
        CheckConstraint("estimate_usd >= 0", name="estimate_not_negative"),
        CheckConstraint("cost_usd >= 0", name="cost_not_negative"),
        CheckConstraint("status IN ('held', 'settled', 'released')", name="status_known"),
        Index("ix_cad_charges_user_created", "user_id", "created_at"),
        Index("ix_cad_charges_created_at", "created_at"),  # everyone's spend per day
    )


class CADArtifact(Base):
    __tablename__ = "cad_artifacts"
    id: Mapped[UUID] = pk()
    cad_job_id: Mapped[UUID] = fk("cad_jobs.id", nullable=False)
    provider: Mapped[CADProvider] = mapped_column(
        pg_enum(CADProvider, "cad_provider"), nullable=False
    )
    artifact_key: Mapped[str] = mapped_column(String(512), nullable=False, unique=True)
    artifact_type: Mapped[ArtifactType] = mapped_column(
        pg_enum(ArtifactType, "artifact_type"), nullable=False
    )
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONB, nullable=False)
    quality_score: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = created()
    __table_args__ = (
        CheckConstraint(
            "quality_score IS NULL OR (quality_score >= 0 AND quality_score <= 1)",
            name="quality_range",
        ),
        CheckConstraint(
            "metadata ?& array['bounding_box','material_hints','generation_params']",
            name="metadata_required_keys",
        ),
    )


class FabricationJob(Base):
    __tablename__ = "fabrication_jobs"
    id: Mapped[UUID] = pk()
    device_id: Mapped[UUID] = fk("devices.id", nullable=False)
    cad_artifact_id: Mapped[UUID | None] = fk("cad_artifacts.id", nullable=True)
    origin_command_id: Mapped[UUID | None] = mapped_column(
        PGUUID(as_uuid=True),
        ForeignKey("device_commands.id", use_alter=True, ondelete="SET NULL"),
        index=True,
    )
    gcode_path: Mapped[str] = mapped_column(String(512), nullable=False)
    status: Mapped[FabricationStatus] = mapped_column(
        pg_enum(FabricationStatus, "fabrication_status"), nullable=False, server_default="preparing"
    )
    details: Mapped[dict[str, Any]] = jsonb()
    requested_by: Mapped[UUID] = fk("users.id", nullable=False)
    created_at: Mapped[datetime] = created()
    started_at: Mapped[datetime | None] = mapped_column(TS)
    completed_at: Mapped[datetime | None] = mapped_column(TS)


class PrintMonitorEvent(Base):
    __tablename__ = "print_monitor_events"
    id: Mapped[UUID] = pk()
    fabrication_job_id: Mapped[UUID] = fk("fabrication_jobs.id", nullable=False)
    event_type: Mapped[MonitorEventType] = mapped_column(
        pg_enum(MonitorEventType, "monitor_event_type"), nullable=False
    )
    confidence: Mapped[float] = mapped_column(Float, nullable=False)
    snapshot_key: Mapped[str | None] = mapped_column(String(512))
    details: Mapped[dict[str, Any]] = jsonb()
    occurred_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    __table_args__ = (
        CheckConstraint("confidence >= 0 AND confidence <= 1", name="confidence_range"),
        CheckConstraint(
            "event_type NOT IN ('spaghetti_detected','nozzle_clog') OR snapshot_key IS NOT NULL",
            name="failure_needs_snapshot",
        ),
        # Alerts by kind over a time window (issue 18).
        Index(
            "ix_print_monitor_events_occurred_at",
            "occurred_at",
            postgresql_include=["event_type"],
        ),
    )


class AccessPolicy(Base):
    __tablename__ = "access_policies"
    id: Mapped[UUID] = pk()
    name: Mapped[str] = mapped_column(String(100), nullable=False, unique=True)
    zone_id: Mapped[UUID] = fk("zones.id", nullable=False, ondelete="CASCADE")
    intents: Mapped[list[str]] = mapped_column(ARRAY(String(64)), nullable=False)
    required_roles: Mapped[list[Role]] = mapped_column(ARRAY(ROLE), nullable=False)
    requires_dual_confirm: Mapped[bool] = mapped_column(Boolean, nullable=False)
    requires_presence: Mapped[bool] = mapped_column(Boolean, nullable=False)
    # Whose presence counts: the person asking, or each approver.
    presence_of: Mapped[str] = mapped_column(String(16), nullable=False, server_default="initiator")
    pqe_checks: Mapped[dict[str, Any]] = jsonb()
    retired_at: Mapped[datetime | None] = mapped_column(TS)
    created_at: Mapped[datetime] = created()
    __table_args__ = (
        CheckConstraint("cardinality(required_roles) > 0", name="required_roles_not_empty"),
        CheckConstraint("presence_of IN ('initiator', 'approver')", name="presence_of_known"),
    )


class SafetyEvent(Base):
    __tablename__ = "safety_events"
    id: Mapped[UUID] = pk()
    event_type: Mapped[SafetyEventType] = mapped_column(
        pg_enum(SafetyEventType, "safety_event_type"), nullable=False
    )
    device_id: Mapped[UUID | None] = fk("devices.id", nullable=True)
    zone_id: Mapped[UUID | None] = fk("zones.id", nullable=True)
    policy_id: Mapped[UUID | None] = fk("access_policies.id", nullable=True)
    initiated_by: Mapped[UUID] = fk("users.id", nullable=False)
    approved_by: Mapped[UUID | None] = fk("users.id", nullable=True)
    signature: Mapped[str | None] = mapped_column(Text)
    evidence_key: Mapped[str | None] = mapped_column(String(512))
    status: Mapped[SafetyStatus] = mapped_column(
        pg_enum(SafetyStatus, "safety_status"), nullable=False, server_default="pending"
    )
    reason: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = jsonb()
    created_at: Mapped[datetime] = created()
    expires_at: Mapped[datetime | None] = mapped_column(TS)
    resolved_at: Mapped[datetime | None] = mapped_column(TS)
    __table_args__ = (
        CheckConstraint(
            "status <> 'approved' OR approved_by IS NOT NULL", name="approved_needs_approver"
        ),
    )


class Notification(Base):
    __tablename__ = "notifications"
    id: Mapped[UUID] = pk()
    channel: Mapped[NotificationChannel] = mapped_column(
        pg_enum(NotificationChannel, "notification_channel"), nullable=False
    )
    recipient: Mapped[str] = mapped_column(String(512), nullable=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    status: Mapped[NotificationStatus] = mapped_column(
        pg_enum(NotificationStatus, "notification_status"), nullable=False, server_default="queued"
    )
    related_job_id: Mapped[UUID | None] = fk(
        "fabrication_jobs.id", nullable=True, ondelete="SET NULL"
    )
    related_safety_event_id: Mapped[UUID | None] = fk("safety_events.id", nullable=True)
    related_decision_id: Mapped[UUID | None] = fk("routing_decisions.id", nullable=True)
    requested_by: Mapped[UUID | None] = fk("users.id", nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    metadata_: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    created_at: Mapped[datetime] = created()
    sent_at: Mapped[datetime | None] = mapped_column(TS)
    __table_args__ = (
        Index("ix_notifications_queued", "status", postgresql_where=text("status = 'queued'")),
    )


class SafetyApproval(Base):
    """One approver's signed approval of a safety event. The nonce is unique across all
    approvals, so a signature can never be presented twice (replay)."""

    __tablename__ = "safety_approvals"
    id: Mapped[UUID] = pk()
    event_id: Mapped[UUID] = fk("safety_events.id", nullable=False)
    approver_id: Mapped[UUID] = fk("users.id", nullable=False)
    key_id: Mapped[UUID] = fk("user_keys.id", nullable=False)
    nonce: Mapped[str] = mapped_column(String(128), nullable=False, unique=True)
    signed_payload: Mapped[str] = mapped_column(Text, nullable=False)
    signature: Mapped[str] = mapped_column(Text, nullable=False)
    # PPE the approver attested to, and the presence facts seen when the approval counted.
    attestations: Mapped[dict[str, Any]] = jsonb()
    created_at: Mapped[datetime] = created()
    __table_args__ = (UniqueConstraint("event_id", "approver_id"),)


class DeviceLock(Base):
    """Lockout/tagout: a person's lock on a device. Hazardous intents on a locked device are
    denied until its owner removes the lock (or a safety override, itself audited)."""

    __tablename__ = "device_locks"
    id: Mapped[UUID] = pk()
    device_id: Mapped[UUID] = fk("devices.id", nullable=False)
    owner_id: Mapped[UUID] = fk("users.id", nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    placed_at: Mapped[datetime] = created()
    removed_at: Mapped[datetime | None] = mapped_column(TS)
    removed_by: Mapped[UUID | None] = fk("users.id", nullable=True)
    override_event_id: Mapped[UUID | None] = fk("safety_events.id", nullable=True)
    __table_args__ = (
        CheckConstraint("length(trim(reason)) > 0", name="reason_required"),
        # At most one active lock per person per device.
        Index(
            "uq_device_locks_active",
            "device_id",
            "owner_id",
            unique=True,
            postgresql_where=text("removed_at IS NULL"),
        ),
    )


class AuditEntry(Base):
    """The hash-chained audit log of safety-relevant acts. ``seq`` orders the chain; each
    entry's ``entry_hash`` covers its content and ``prev_hash``, so an edited, inserted or
    deleted entry breaks every hash after it. The database refuses updates and deletes."""

    __tablename__ = "audit_log"
    # Assigned as last + 1 under a lock, not from a sequence: a rolled-back transaction
    # would leave a gap a verifier must read as a deleted entry.
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    occurred_at: Mapped[datetime] = mapped_column(TS, nullable=False)
    actor_id: Mapped[UUID | None] = mapped_column(PGUUID(as_uuid=True))
    action: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    subject_type: Mapped[str | None] = mapped_column(String(64))
    subject_id: Mapped[str | None] = mapped_column(String(128), index=True)
    details: Mapped[dict[str, Any]] = jsonb()
    prev_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    entry_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)


_OUTCOME_ONLY = text("kind = 'outcome'")  # here: the class below has a column named text


class ConversationMessage(Base):
    """What was said in a conversation (issue 16): a person's ``request``, the lab's
    ``reply`` to it, and the ``outcome`` of a device command decided later (written in the
    transaction that decides the command, at most one per command). Texts are stored
    sanitized (``domain.sanitize``); messages past ``conversations.message_retention_days``
    are purged, and they go with their conversation."""

    __tablename__ = "conversation_messages"
    id: Mapped[UUID] = pk()
    conversation_id: Mapped[UUID] = fk(
        "conversation_sessions.id", nullable=False, ondelete="CASCADE"
    )
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    text: Mapped[str] = mapped_column(Text, nullable=False)
    author_id: Mapped[UUID | None] = fk("users.id", nullable=True, ondelete="SET NULL")
    channel: Mapped[str | None] = mapped_column(String(32))
    request_id: Mapped[UUID | None] = mapped_column(PGUUID(as_uuid=True), index=True)
    command_id: Mapped[UUID | None] = fk("device_commands.id", nullable=True, ondelete="SET NULL")
    details: Mapped[dict[str, Any]] = jsonb()
    created_at: Mapped[datetime] = mapped_column(TS, nullable=False, index=True)
    __table_args__ = (
        CheckConstraint("kind IN ('request', 'reply', 'outcome')", name="kind_known"),
        # The outcome of a command is said once, however many jobs decide it.
        Index(
            "uq_conversation_messages_outcome",
            "command_id",
            unique=True,
            postgresql_where=_OUTCOME_ONLY,
        ),
    )


class Project(Base):
    """A piece of work (issue 16): conversations, CAD jobs, artifacts and print jobs
    grouped under one name (``project_items``)."""

    __tablename__ = "projects"
    id: Mapped[UUID] = pk()
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[UUID | None] = fk("users.id", nullable=True, ondelete="SET NULL")
    created_at: Mapped[datetime] = created()
    updated_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    __table_args__ = (CheckConstraint("length(trim(name)) > 0", name="name_required"),)


class ProjectItem(Base):
    """One member of a project: exactly one of a conversation, a CAD job, a CAD artifact,
    a stored artifact's key or a print job. The link goes when its item is deleted."""

    __tablename__ = "project_items"
    id: Mapped[UUID] = pk()
    project_id: Mapped[UUID] = fk("projects.id", nullable=False, ondelete="CASCADE")
    conversation_id: Mapped[UUID | None] = fk(
        "conversation_sessions.id", nullable=True, ondelete="CASCADE"
    )
    cad_job_id: Mapped[UUID | None] = fk("cad_jobs.id", nullable=True, ondelete="CASCADE")
    cad_artifact_id: Mapped[UUID | None] = fk("cad_artifacts.id", nullable=True, ondelete="CASCADE")
    artifact_key: Mapped[str | None] = mapped_column(String(512))
    fabrication_job_id: Mapped[UUID | None] = fk(
        "fabrication_jobs.id", nullable=True, ondelete="CASCADE"
    )
    added_by: Mapped[UUID | None] = fk("users.id", nullable=True, ondelete="SET NULL")
    added_at: Mapped[datetime] = created()
    __table_args__ = (
        CheckConstraint(
            "num_nonnulls(conversation_id, cad_job_id, cad_artifact_id, artifact_key, "
            "fabrication_job_id) = 1",
            name="one_item",
        ),
        UniqueConstraint("project_id", "conversation_id"),
        UniqueConstraint("project_id", "cad_job_id"),
        UniqueConstraint("project_id", "cad_artifact_id"),
        UniqueConstraint("project_id", "artifact_key"),
        UniqueConstraint("project_id", "fabrication_job_id"),
    )


# --- The web console's sign-in (issue 17) ------------------------------------------------


class ConsoleInvite(Base):
    """A one-time enrolment link: the person who opens it registers their first passkey.
    Only the SHA-256 of the link's secret is stored; it is valid minutes and used once."""

    __tablename__ = "console_invites"
    id: Mapped[UUID] = pk()
    user_id: Mapped[UUID] = fk("users.id", nullable=False, ondelete="CASCADE")
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    created_at: Mapped[datetime] = created()
    created_by: Mapped[UUID | None] = fk("users.id", nullable=True)  # None: the host CLI
    expires_at: Mapped[datetime] = mapped_column(TS, nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(TS)


class Passkey(Base):
    """A WebAuthn credential (a passkey or a security key) a person signs in with."""

    __tablename__ = "passkeys"
    id: Mapped[UUID] = pk()
    user_id: Mapped[UUID] = fk("users.id", nullable=False, ondelete="CASCADE")
    credential_id: Mapped[str] = mapped_column(String(1400), nullable=False, unique=True)
    """base64url of the authenticator's credential id (at most 1023 bytes by the spec)."""
    public_key: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)  # COSE
    sign_count: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    transports: Mapped[list[str]] = mapped_column(
        ARRAY(String(32)), nullable=False, server_default=text("'{}'")
    )
    invite_id: Mapped[UUID | None] = fk("console_invites.id", nullable=True, ondelete="SET NULL")
    created_at: Mapped[datetime] = created()
    last_used_at: Mapped[datetime | None] = mapped_column(TS)
    revoked_at: Mapped[datetime | None] = mapped_column(TS)


class WebauthnChallenge(Base):
    """A challenge handed to a browser for one ceremony: random, short-lived, used once.
    ``purpose`` is ``register`` (bound to an invite) or ``authenticate``."""

    __tablename__ = "webauthn_challenges"
    id: Mapped[UUID] = pk()
    purpose: Mapped[str] = mapped_column(String(16), nullable=False)
    challenge: Mapped[str] = mapped_column(String(128), nullable=False)
    invite_id: Mapped[UUID | None] = fk("console_invites.id", nullable=True, ondelete="CASCADE")
    created_at: Mapped[datetime] = created()
    expires_at: Mapped[datetime] = mapped_column(TS, nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(TS)
    __table_args__ = (
        CheckConstraint("purpose IN ('register', 'authenticate')", name="purpose_known"),
    )


class WebSession(Base):
    """A signed-in browser: the cookie's SHA-256, its CSRF token, idle and absolute ends."""

    __tablename__ = "web_sessions"
    id: Mapped[UUID] = pk()
    user_id: Mapped[UUID] = fk("users.id", nullable=False, ondelete="CASCADE")
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    csrf_token: Mapped[str] = mapped_column(String(64), nullable=False)
    passkey_id: Mapped[UUID | None] = fk("passkeys.id", nullable=True, ondelete="SET NULL")
    user_agent: Mapped[str] = mapped_column(String(200), nullable=False, server_default="")
    address: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = created()
    last_seen_at: Mapped[datetime] = mapped_column(TS, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(TS, nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(TS)
    terminal_id: Mapped[UUID | None] = fk("terminals.id", nullable=True, ondelete="CASCADE")
    """A tap-in on a wall terminal (issue 18): the short session of the person at it."""


class Terminal(Base):
    """A wall terminal (issue 18): a tablet bound to one zone by an admin, who confirms the
    one-time code it shows. The tablet's cookie holds a random secret; only its SHA-256 is
    stored, as is the code's."""

    __tablename__ = "terminals"
    id: Mapped[UUID] = pk()
    name: Mapped[str] = mapped_column(String(100), nullable=False, server_default="")
    zone_id: Mapped[UUID | None] = fk("zones.id", nullable=True, ondelete="CASCADE")
    status: Mapped[TerminalStatus] = mapped_column(
        pg_enum(TerminalStatus, "terminal_status"), nullable=False
    )
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    code_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    code_expires_at: Mapped[datetime | None] = mapped_column(TS)
    address: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = created()
    paired_by: Mapped[UUID | None] = fk("users.id", nullable=True, ondelete="SET NULL")
    paired_at: Mapped[datetime | None] = mapped_column(TS)
    revoked_by: Mapped[UUID | None] = fk("users.id", nullable=True, ondelete="SET NULL")
    revoked_at: Mapped[datetime | None] = mapped_column(TS)
    last_seen_at: Mapped[datetime | None] = mapped_column(TS)
