"""Request and response bodies. The API speaks camelCase; Python stays snake_case."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    computed_field,
)
from pydantic.alias_generators import to_camel

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
    Tier,
)
from kittylab.domain.machine_scopes import MachineScope
from kittylab.fabrication.job_details import JobDetails

if TYPE_CHECKING:
    from kittylab.safety.stop import StopResult

# Text the database can store: no NUL characters, bounded length.
Text200 = Annotated[str, StringConstraints(max_length=200, pattern=r"^[^\x00]*$")]
Text2000 = Annotated[str, StringConstraints(max_length=2000, pattern=r"^[^\x00]*$")]
Name64 = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[^\x00]*$")]


class CamelModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, from_attributes=True)


class StrictInput(CamelModel):
    """Request bodies reject unknown fields, so a typo is an error, not a silent no-op."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


# --- identity ---------------------------------------------------------------------------


class UserOut(CamelModel):
    id: UUID
    username: str
    display_name: str
    email: str | None
    roles: list[Role]
    tailscale_id: str | None
    active: bool
    created_at: datetime
    pending_roles: list[Role] = Field(
        default_factory=list,
        description="Safety or admin asked for over the API, waiting for a second person "
        "(see /api/role-grants; issue 13).",
    )


class UserCreate(StrictInput):
    username: Name64
    display_name: Text200
    roles: list[Role] = Field(min_length=1, max_length=4)
    email: Text200 | None = None
    tailscale_id: Text200 | None = None


class UserUpdate(StrictInput):
    display_name: Text200 | None = None
    roles: list[Role] | None = Field(None, min_length=1, max_length=4)
    email: Text200 | None = None
    active: bool | None = None


class TokenCreate(StrictInput):
    label: Annotated[str, StringConstraints(max_length=100, pattern=r"^[^\x00]*$")] = "api"
    expires_in_seconds: int | None = Field(
        None,
        ge=60,
        le=3650 * 24 * 3600,
        strict=True,
        description="How long the token lives, in whole seconds (60 to ten years). Left "
        "out: the lab's default (KITTYLAB_TOKENS__DEFAULT_LIFETIME_SECONDS); null: never "
        "expires.",
    )
    scopes: list[MachineScope] = Field(
        default_factory=list,
        max_length=len(MachineScope),
        description="A machine token for a detector or an integration: it reaches only "
        "these scopes' endpoints (docs/configuration.md, 'Machine tokens'). Left out: a "
        "person's token.",
    )


class TokenInfo(CamelModel):
    id: UUID
    label: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    expires_at: datetime | None = Field(description="None: the token never expires.")
    scopes: list[str] = Field(default_factory=list, description="Empty: a person's token.")


class InviteSentOut(CamelModel):
    """Where an admin's invite went (issue 17): the address masked, never the link."""

    user_id: UUID
    notification_id: UUID
    sent_to: str
    expires_at: datetime


class TokenOut(CamelModel):
    token: str = Field(description="Shown once; only its hash is stored.")
    token_id: UUID
    user_id: UUID
    expires_at: datetime | None = Field(description="None: the token never expires.")
    scopes: list[str] = Field(default_factory=list, description="Empty: a person's token.")


class RoleGrantOut(CamelModel):
    id: UUID
    user_id: UUID
    role: Role
    status: str = Field(description="pending, granted or refused.")
    requested_by: UUID
    created_at: datetime
    decided_by: UUID | None
    decided_at: datetime | None


# --- lab --------------------------------------------------------------------------------


class ZoneOut(CamelModel):
    id: UUID
    name: str
    hazard_level: HazardLevel
    requires_ppe: bool
    requires_dual_confirmation: bool
    unifi_door_ids: list[str]
    presence_sources: list[PresenceSource] = Field(
        description="The presence sources that count in this zone for hazardous work."
    )
    created_at: datetime


class DeviceOut(CamelModel):
    id: UUID
    external_id: str
    integration: str
    display_name: str
    kind: DeviceKind
    zone_id: UUID
    capabilities: dict[str, Any]
    aliases: list[str]
    attributes: dict[str, Any]
    online_state: OnlineState
    last_seen: datetime | None
    retired_at: datetime | None
    created_at: datetime


class DeviceStateOut(CamelModel):
    device_id: UUID
    online_state: OnlineState
    state: Any | None
    reported_at: datetime | None


class PolicyOut(CamelModel):
    id: UUID
    name: str
    zone_id: UUID
    intents: list[str]
    required_roles: list[Role]
    requires_dual_confirm: bool
    requires_presence: bool
    presence_of: str
    pqe_checks: dict[str, Any]
    retired_at: datetime | None
    created_at: datetime


class PresenceOut(CamelModel):
    id: UUID
    zone_id: UUID
    user_id: UUID
    source: PresenceSource
    status: PresenceStatus
    observed_at: datetime


class PresenceCheckIn(StrictInput):
    zone_id: UUID
    status: PresenceStatus = PresenceStatus.PRESENT
    user_id: UUID | None = Field(
        None, description="Someone else's presence; needs the safety role."
    )


class PresenceConfirm(StrictInput):
    zone_id: UUID
    user_id: UUID = Field(description="The person whose check-in you confirm.")


class ZoneOccupancy(CamelModel):
    zone_id: UUID
    ttl_seconds: int
    present_user_ids: list[UUID] = Field(description="Everyone present, by any source.")
    counting_user_ids: list[UUID] = Field(
        description="Those whose presence counts for hazardous work (by the zone's sources)."
    )
    presence_sources: list[PresenceSource]


# --- conversations and routing ----------------------------------------------------------


class ConversationOut(CamelModel):
    id: UUID
    context_key: str
    state: dict[str, Any]
    active_participants: list[UUID]
    last_message_at: datetime
    created_at: datetime


class ConversationCreate(StrictInput):
    context_key: Name64 | None = Field(
        None, description="A client's own key for the conversation; generated when absent."
    )


class RoutingDecisionOut(CamelModel):
    id: UUID
    conversation_id: UUID | None
    request_id: UUID
    input_hash: str
    selected_tier: Tier
    confidence: float
    confidence_factors: dict[str, Any]
    cost_estimate: Decimal
    latency_ms: int
    escalation_reason: str | None
    performed_by: UUID | None
    created_at: datetime


# --- devices and telemetry --------------------------------------------------------------


class CommandOut(CamelModel):
    id: UUID
    device_id: UUID
    conversation_id: UUID | None
    fabrication_job_id: UUID | None
    safety_event_id: UUID | None
    intent: str
    payload: dict[str, Any]
    requested_by: UUID
    correlation_id: str | None
    status: CommandStatus
    status_history: list[dict[str, Any]]
    failure_reason: str | None
    created_at: datetime
    ack_at: datetime | None


class CommandRequest(StrictInput):
    intent: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")]
    payload: dict[str, Any] = Field(default_factory=dict)
    correlation_id: (
        Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\x00]*$")]
        | None
    ) = Field(None, description="Makes a retried request return the first command.")
    safety_signature: Text2000 | None = Field(
        None, description="Reserved for signed approvals (not accepted yet)."
    )


class HazardPolicyOut(CamelModel):
    """An access policy governing a held command's intent in its zone."""

    name: str
    required_roles: list[str]
    requires_dual_confirm: bool
    requires_presence: bool
    ppe: list[str]


class PendingHazard(CamelModel):
    """A command held for safety approval: nothing is sent until its event is approved.
    The same object on ``POST /api/device/{id}/command`` and ``POST /api/query``; the
    event is also announced on MQTT ``kitty/safety/<eventId>``."""

    intent: str
    device_id: UUID
    device: str = Field(description="The device's external id.")
    event_id: UUID = Field(description="The safety event: ``GET /api/safety/events/{id}``.")
    command_id: UUID
    status: Literal["awaiting_confirmation"]
    missing: list[str] = Field(description="What the event still needs, in words.")
    message: str = Field(description="The whole situation in one sentence, for people.")
    zone: str | None
    hazard_level: str | None
    policies: list[HazardPolicyOut]


class StopCommandOut(CamelModel):
    device_id: UUID
    device_name: str
    intent: str
    command_id: UUID


class StopRefusalOut(CamelModel):
    device_id: UUID
    device_name: str
    intent: str
    reason: str


class StopAccepted(CamelModel):
    """A stop's answer: the safe-direction commands sent per device, and each refusal (an
    offline device, a policy); a refusal never stops the other devices."""

    zone_id: UUID | None = Field(description="None: the whole lab.")
    commands: list[StopCommandOut]
    refusals: list[StopRefusalOut]


class CommandAccepted(CamelModel):
    command_id: UUID | None = Field(
        description="The command; null for a ``print_start``, which is a print job "
        "(``jobId``): the job's own start command is made when the printer's queue starts "
        "it (the job's ``originCommandId``)."
    )
    status: Literal["pending", "dispatched", "awaiting_confirmation", "queued"] = Field(
        description="``awaiting_confirmation``: held for safety approval (``pendingHazard``); "
        "``dispatched``: its dispatch is scheduled once the request commits (or it was sent "
        "already); ``queued``: a ``print_start`` became the print job ``jobId`` (issue 16), "
        "queued on the printer, followed and watched; ``pending``: kept for compatibility, "
        "not answered any more."
    )
    job_id: UUID | None = Field(
        None,
        description="For a ``print_start``: the print job it became (``GET "
        "/api/fabrication/jobs/{jobId}``).",
    )
    pending_hazard: PendingHazard | None = Field(
        None, description="Set when the command waits for safety approval."
    )
    hazard_event_id: UUID | None = Field(
        None,
        deprecated=True,
        description="Deprecated (kept for one release): the command's safety event; for a "
        "held command the same value as ``pendingHazard.eventId``.",
    )
    missing: list[str] = Field(
        default_factory=list,
        deprecated=True,
        description="Deprecated (kept for one release): the same as ``pendingHazard.missing``.",
    )


class TelemetryIn(StrictInput):
    device_id: UUID | None = None
    external_id: Name64 | None = Field(None, description="Alternative to deviceId.")
    integration: Name64 | None = Field(
        None, description="With externalId, when two integrations use the same id."
    )
    topic: Annotated[
        str,
        StringConstraints(
            strip_whitespace=True, min_length=1, max_length=256, pattern=r"^[^\x00#+]*$"
        ),
    ]
    payload: Any
    recorded_at: AwareDatetime | None = Field(
        None, description="When the device measured it; at most 7 days old. Default: now."
    )


class TelemetryBatch(StrictInput):
    events: list[TelemetryIn] = Field(min_length=1, max_length=1000)


class TelemetryAccepted(CamelModel):
    accepted: int


class TelemetryOut(CamelModel):
    id: UUID
    device_id: UUID
    topic: str
    payload: Any
    recorded_at: datetime
    fabrication_job_id: UUID | None


# --- CAD and fabrication ----------------------------------------------------------------


class CADJobOut(CamelModel):
    id: UUID
    conversation_id: UUID | None
    prompt: str
    policy_mode: CADPolicyMode
    status: CADJobStatus
    requested_by: UUID | None
    parent_job_id: UUID | None
    details: dict[str, Any]
    error: str | None
    created_at: datetime
    completed_at: datetime | None


class CADArtifactOut(CamelModel):
    id: UUID
    cad_job_id: UUID
    provider: CADProvider
    artifact_key: str
    artifact_type: ArtifactType
    metadata: dict[str, Any] = Field(validation_alias="metadata_")
    quality_score: float | None
    created_at: datetime


class FabricationJobOut(CamelModel):
    id: UUID
    device_id: UUID
    cad_artifact_id: UUID | None
    origin_command_id: UUID | None
    gcode_path: str
    status: FabricationStatus
    details: dict[str, Any]
    requested_by: UUID
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None

    @computed_field(  # type: ignore[prop-decorator]
        description="The hazard classes of the job's material (styrene, nylon, fibre, "
        "resin), from the request and the G-code's filament profile; empty when none."
    )
    @property
    def hazardous_materials(self) -> list[str]:
        flagged = JobDetails.from_json(self.details).hazardous_materials
        return list(flagged.classes) if flagged is not None else []


class UploadedFileOut(CamelModel):
    file_key: str
    name: str
    size: int
    sha256: str


class PrintJobRequest(StrictInput):
    device_id: UUID = Field(description="The printer.")
    file_key: Annotated[str, StringConstraints(min_length=1, max_length=512)] | None = Field(
        None, description="From PUT /api/fabrication/files/{name}."
    )
    cad_artifact_id: UUID | None = None
    profile: Name64 = Field("default", description="Job profile (its scene).")
    idempotency_key: (
        Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00]*$")]
        | None
    ) = Field(None, description="A retried request with the same key returns the first job.")
    material: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = Field(
        None, description="The filament or resin (ABS, PA6-CF, resin…): hazardous ones are flagged."
    )
    ppe_confirmed: list[Name64] = Field(
        default_factory=list,
        max_length=20,
        description="PPE the requester confirms wearing, for a zone policy on hazardous materials.",
    )


class BedClearOut(CamelModel):
    device_id: UUID
    jobs_cleared: int


class SnapshotOut(CamelModel):
    snapshot_key: str
    size: int


class MonitorEventIn(StrictInput):
    event_type: MonitorEventType
    confidence: float = Field(ge=0, le=1)
    snapshot_key: Annotated[str, StringConstraints(min_length=1, max_length=512)] | None = None
    severity: Literal["failure", "warning", "info"] | None = Field(
        None, description="Default: failure for spaghetti/clog, info otherwise."
    )
    details: dict[str, Any] = Field(default_factory=dict)


class MonitorReportOut(CamelModel):
    event_id: UUID
    pause_command_id: UUID | None
    notified: int
    note: str | None


class MonitorEventOut(CamelModel):
    id: UUID
    fabrication_job_id: UUID
    event_type: MonitorEventType
    confidence: float
    snapshot_key: str | None
    details: dict[str, Any]
    occurred_at: datetime


# --- safety and notifications -----------------------------------------------------------


class SafetyEventOut(CamelModel):
    id: UUID
    event_type: SafetyEventType
    device_id: UUID | None
    zone_id: UUID | None
    policy_id: UUID | None
    initiated_by: UUID
    approved_by: UUID | None
    evidence_key: str | None
    status: SafetyStatus
    reason: str | None
    details: dict[str, Any]
    created_at: datetime
    expires_at: datetime | None
    resolved_at: datetime | None


class SafetyApprovalOut(CamelModel):
    approver_id: UUID
    approver: str
    at: datetime
    ppe: list[str]


class SafetyEventView(SafetyEventOut):
    """One event with what it is for, who approved it and what it still needs."""

    intent: str | None
    command_id: UUID | None
    payload: dict[str, Any] | None = Field(
        description="The held command's arguments: what an approval lets it do."
    )
    payload_digest: str | None = Field(
        description="`sha256:<hex>` of the arguments' canonical JSON, as the signed "
        "approval payload's `args` (docs/safety-keys.md); a client computes it itself."
    )
    device_external_id: str | None
    device_name: str | None
    zone_name: str | None
    initiator_name: str | None
    requirements: dict[str, Any] | None
    missing: list[str]
    approvals: list[SafetyApprovalOut]


class SafetyApprove(StrictInput):
    nonce: Annotated[
        str, StringConstraints(min_length=16, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")
    ]
    signature: Annotated[str, StringConstraints(min_length=1, max_length=16384)] = Field(
        description="Base64 raw Ed25519 signature, or the armored output of "
        "`ssh-keygen -Y sign -n kittylab`, over the event's canonical approval payload."
    )
    signed_payload: Annotated[str, StringConstraints(max_length=4096)] | None = Field(
        None, description="The exact payload text signed; lets a mismatch be named precisely."
    )
    key_id: UUID | None = Field(None, description="Which registered key signed (raw signatures).")
    ppe: list[Annotated[str, StringConstraints(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=32, description="PPE items the approver confirms."
    )


class SafetyDeny(StrictInput):
    reason: Annotated[str, StringConstraints(min_length=1, max_length=2000, pattern=r"^[^\x00]*$")]


class NotificationOut(CamelModel):
    id: UUID
    channel: NotificationChannel
    recipient: str
    payload: dict[str, Any]
    status: NotificationStatus
    related_job_id: UUID | None
    related_safety_event_id: UUID | None
    related_decision_id: UUID | None
    requested_by: UUID | None
    metadata: dict[str, Any] = Field(validation_alias="metadata_")
    created_at: datetime
    sent_at: datetime | None


class NotificationCreate(StrictInput):
    channel: NotificationChannel
    recipient: Annotated[
        str, StringConstraints(min_length=1, max_length=512, pattern=r"^[^\x00]*$")
    ]
    title: Text200
    body: Text2000
    idempotency_key: Text200 | None = None


class Health(CamelModel):
    status: str
    checks: dict[str, str] = {}


# --- lab administration -----------------------------------------------------------------


class LabApplyRequest(StrictInput):
    manifest: Annotated[
        str, StringConstraints(min_length=1, max_length=512 * 1024, pattern=r"^[^\x00]*$")
    ] = Field(description="The lab manifest as YAML text (see examples/lab.yaml).")
    dry_run: bool = False


class TallyOut(CamelModel):
    created: int
    updated: int
    unchanged: int
    retired: int


class WeakeningOut(CamelModel):
    kind: str = Field(description="zone.hazard_lowered, policy.loosened, device.moved, …")
    subject: str = Field(description="The zone, `zone/intent`, device or person it is about.")
    change: str = Field(description="The change in words.")


class LabApplyReport(CamelModel):
    dry_run: bool
    changed: bool
    tallies: dict[str, TallyOut]
    warnings: list[str]
    held: bool = Field(
        False, description="The manifest weakens safety: sent for real it is held (202)."
    )
    weakening: list[WeakeningOut] = Field(
        default_factory=list, description="Each change that weakens safety (issue 13)."
    )


class LabApplyHeld(CamelModel):
    """202: the manifest weakens safety and waits for a second person with the safety role
    (problem-details shaped: ``type``, ``title``, ``status``, ``detail``)."""

    type: str
    title: str
    status: int
    detail: str
    event_id: UUID
    change_hash: str
    lab_revision: str
    expires_at: datetime
    weakening: list[WeakeningOut]
    tallies: dict[str, TallyOut]
    approve_with: str


# --- lockout/tagout ---------------------------------------------------------------------

# A reason someone must give: surrounding blanks are dropped, so "  " is refused as empty.
LockReason = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=2000, pattern=r"^[^\x00]*$"),
]


class LockPlace(StrictInput):
    reason: LockReason = Field(description="Why the device is locked out (shown to everyone).")


class LockRemove(StrictInput):
    override_reason: LockReason | None = Field(
        default=None,
        description="Only to remove someone else's lock: the safety role's override reason.",
    )


class LockOut(CamelModel):
    id: UUID
    device_id: UUID
    device_external_id: str
    owner_id: UUID
    owner_name: str
    reason: str
    placed_at: datetime
    active: bool
    removed_at: datetime | None
    removed_by: UUID | None
    override_event_id: UUID | None


# --- approver keys (safety) -------------------------------------------------------------


class KeyCreate(StrictInput):
    name: Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[^\x00]*$")] = (
        Field(description="What the key is, e.g. 'yubikey' or 'laptop'.")
    )
    public_key: Annotated[
        str, StringConstraints(min_length=1, max_length=16_384, pattern=r"^[^\x00]*$")
    ] = Field(
        description="An OpenSSH public key line (ssh-ed25519, sk-ssh-ed25519@openssh.com, "
        "ecdsa-sha2-nistp256 …), a PEM Ed25519 public key, or 'ed25519:<base64>'."
    )
    challenge_id: UUID = Field(
        description="A challenge from POST /api/users/{id}/keys/challenge (single use)."
    )
    signature: Annotated[
        str, StringConstraints(min_length=1, max_length=16_384, pattern=r"^[^\x00]*$")
    ] = Field(
        description="Proof of possession: the key's signature of the enrolment message "
        "(docs/safety-keys.md), raw Ed25519 in base64 or 'ssh-keygen -Y sign -n "
        "kittylab-key-enrolment' output."
    )


class KeyChallengeOut(CamelModel):
    challenge_id: UUID
    challenge: str
    user_id: UUID
    expires_at: datetime
    ssh_namespace: str = Field(description="The namespace an SSH signature of it must use.")


class KeyOut(CamelModel):
    id: UUID
    user_id: UUID
    name: str
    kind: str | None = Field(description="ed25519, ed25519-sk, ecdsa-p256 …")
    fingerprint: str | None = Field(description="SHA256:…, as ssh-keygen -l prints it.")
    public_key: str
    hardware: bool
    created_at: datetime
    revoked_at: datetime | None
    awaiting_confirmation: bool = Field(
        False, description="Enrolled over the API and not yet confirmed: it signs nothing."
    )
    confirmed_by: UUID | None = None
    confirmed_at: datetime | None = None


# --- audit log (safety-audit) -----------------------------------------------------------


class AuditEntryOut(CamelModel):
    seq: int
    occurred_at: datetime
    actor_id: UUID | None = Field(description="Null for the system or a command-line operator.")
    actor_username: str | None
    action: str
    subject_type: str | None
    subject_id: str | None
    details: dict[str, Any]
    prev_hash: str
    entry_hash: str


class AuditBreakOut(CamelModel):
    seq: int = Field(description="The entry at fault; for `missing`, the first missing one.")
    kind: Literal["edited", "unlinked", "missing", "anchor"]
    problem: str


class AuditVerifyOut(CamelModel):
    intact: bool
    entries: int
    head: str = Field(description="The newest entry's hash: record it elsewhere with headSeq.")
    head_seq: int
    breaks: list[AuditBreakOut]


# --- presence sources: UniFi Access webhook, presence override --------------------------


class UnifiWebhookResult(CamelModel):
    """What a verified UniFi Access delivery did. ``recorded`` is false for deliveries
    that are accepted but say nothing about presence; ``reason`` says why."""

    outcome: str = Field(
        description="recorded, duplicate, not_door_access, access_denied, no_door, no_actor, "
        "unknown_door, ambiguous_door, unknown_actor or inactive_user."
    )
    recorded: bool
    reason: str
    event_id: str | None
    presence_id: UUID | None
    zone_id: UUID | None
    user_id: UUID | None


class PresenceOverride(StrictInput):
    zone_id: UUID
    user_id: UUID
    status: PresenceStatus
    reason: Annotated[str, StringConstraints(min_length=1, max_length=2000, pattern=r"^[^\x00]*$")]


class PresenceOverrideOut(CamelModel):
    presence: PresenceOut
    safety_event: SafetyEventOut


def stop_accepted(result: StopResult) -> StopAccepted:
    """The API's view of a ``safety.stop`` result."""
    return StopAccepted(
        zone_id=result.zone_id,
        commands=[StopCommandOut.model_validate(c) for c in result.commands],
        refusals=[StopRefusalOut.model_validate(r) for r in result.refusals],
    )
